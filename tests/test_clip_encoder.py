"""Building CLIP: from a model-config JSON, a local checkpoint (refused when it does not fit), offline errors."""
import json
import logging

import pytest
import torch

from proxyclip import ProxyCLIPError
from proxyclip.method.clip_encoder import build_clip, clip_activation
from conftest import TINY_CLIP, write_tiny_clip_json

TINY_JSON = TINY_CLIP   # the inline form; test_model_config_json_file covers the file form


def test_local_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model, tokenizer = build_clip(TINY_JSON, None)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    loaded, _ = build_clip(TINY_JSON, str(path), quick_gelu=False)
    tokens = tokenizer(["a photo of a cat."])
    torch.testing.assert_close(loaded.encode_text(tokens), model.encode_text(tokens))
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_mismatched_checkpoint_is_refused(tmp_path):
    cfg = json.loads(json.dumps(TINY_CLIP))
    cfg["vision_cfg"]["layers"] = 3
    deeper_json = tmp_path / "tiny_clip_deeper.json"
    deeper_json.write_text(json.dumps(cfg))
    deeper, _ = build_clip(str(deeper_json), None)
    path = tmp_path / "deeper.pt"
    torch.save(deeper.state_dict(), path)
    with pytest.raises(ProxyCLIPError, match=r"refused by the library.*Unexpected key\(s\).*resblocks\.2.*Use the model name"):
        build_clip(TINY_JSON, str(path), quick_gelu=False)


@pytest.mark.parametrize("spoil, library_says", [
    (lambda state: state.pop("ln_final.weight"), r'Missing key\(s\) in state_dict: "ln_final.weight"'),
    (lambda state: state.update(text_projection=torch.zeros(3, 3)), "size mismatch for text_projection"),
])
def test_a_checkpoint_file_that_does_not_fit_is_refused_by_open_clip(spoil, library_says, tmp_path):
    """open_clip loads a file given as `pretrained` strictly (require_pretrained): torch's error, in our words."""
    model, _ = build_clip(TINY_JSON, None)
    state = model.state_dict()
    spoil(state)
    path = tmp_path / "spoilt.pt"
    torch.save(state, path)
    with pytest.raises(ProxyCLIPError, match=f"CLIP .* from the checkpoint '{path}' were refused .*{library_says}") as info:
        build_clip(TINY_JSON, str(path), quick_gelu=False)
    assert isinstance(info.value.__cause__, RuntimeError)        # raised by the library, not found in its log
    assert "(clip_model)" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["position tables only", "the tiny model's"])
def test_a_tag_whose_weights_do_not_fit_is_refused_by_open_clip(kind, monkeypatch, tmp_path):
    """A pretrained tag is loaded strictly too: a file in the Hugging Face cache under the tag's name that is not
    ViT-B-16's is refused, not loaded partly. Position tables only: everything else is missing (torch's strict
    load); the tiny model's: its text width is not ViT-B-16's (open_clip's own check)."""
    from huggingface_hub import constants

    from conftest import put_in_hub_cache

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    if kind == "position tables only":
        state = {"positional_embedding": torch.zeros(77, 512), "visual.positional_embedding": torch.zeros(197, 768)}
        library_says = r'Missing key\(s\) in state_dict: "text_projection"'
    else:
        state, library_says = build_clip(TINY_JSON, None)[0].state_dict(), "text pos_embed width changed"
    put_in_hub_cache(tmp_path / "hub", "timm/vit_base_patch16_clip_224.openai", "open_clip_pytorch_model.bin", state)
    with pytest.raises(ProxyCLIPError, match=rf"CLIP ViT-B-16 \(openai\) were refused .*{library_says}.*The file "
                                             rf".*open_clip_pytorch_model.bin is not the tag's weights .*delete it"):
        build_clip("ViT-B-16", "openai")


def test_an_architecture_that_cannot_be_built_is_its_own_error_not_the_weights():
    """What goes wrong while building the architecture (random weights asked for) is open_clip's error as it is."""
    bad = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 100, "head_width": 30, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    with pytest.raises(Exception) as info:
        build_clip(bad, None, quick_gelu=False)
    assert not isinstance(info.value, ProxyCLIPError) and "refused" not in str(info.value)


def test_unknown_tag_and_missing_files():
    with pytest.raises(ProxyCLIPError, match="openai"):
        build_clip("ViT-B-16", "opneai")
    with pytest.raises(ProxyCLIPError, match="not found"):
        build_clip(TINY_JSON, "/nonexistent/clip.bin", quick_gelu=False)
    with pytest.raises(ProxyCLIPError, match="does not exist"):
        build_clip("/nonexistent/model.json", None)


def test_offline_download_fails_at_once_with_the_fix(monkeypatch, tmp_path):
    """Offline (the user's HF_HUB_OFFLINE) and nothing cached: one attempt per file name, no retry loop, our message."""
    import open_clip
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)   # never download, even where a network exists
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # and an empty cache
    calls = []
    real = open_clip.pretrained.hf_hub_download
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", lambda *a, **k: calls.append(k.get("filename")) or real(*a, **k))
    with pytest.raises(ProxyCLIPError, match="clip_pretrained") as info:
        build_clip("ViT-B-16", "openai")
    assert "Cannot fetch the pretrained weights of CLIP ViT-B-16 (openai)" in str(info.value)
    assert 1 <= len(calls) == len(set(calls)) <= 2       # the .safetensors name, then the .bin: each tried once


def test_the_activation_follows_the_weights(tmp_path):
    from proxyclip.method.clip_encoder import _resolve_model_name, resolve_quick_gelu

    assert resolve_quick_gelu("ViT-B-16", "openai", None) is True            # OpenAI trained with QuickGELU
    assert resolve_quick_gelu("ViT-L-14", "openai", True) is True
    assert resolve_quick_gelu("ViT-H-14", "laion2b_s32b_b79k", None) is False  # LAION's ViT-H-14: GELU
    with pytest.raises(ProxyCLIPError, match="trained with QuickGELU. Set clip_quick_gelu to true or null"):
        resolve_quick_gelu("ViT-B-16", "openai", False)
    with pytest.raises(ProxyCLIPError, match="clip_quick_gelu: true for OpenAI"):
        resolve_quick_gelu("ViT-B-16", str(tmp_path / "clip.bin"), None)    # a file does not say
    assert resolve_quick_gelu("ViT-B-16", str(tmp_path / "clip.bin"), False) is False
    assert resolve_quick_gelu("ViT-B-16-quickgelu", str(tmp_path / "clip.bin"), None) is True  # the config declares it
    assert resolve_quick_gelu(_resolve_model_name(TINY_CLIP), None, None) is False   # random: the model config's own


def test_a_dependency_saying_weights_and_architecture_disagree_is_a_warning():
    """The libraries' words are a second look only (their flags raise): one warning that names the fix, no error."""
    import warnings

    from proxyclip.method.loading import WeightsDisagreementWarning, weights_must_match

    with pytest.warns(WeightsDisagreementWarning, match=r"may disagree.*QuickGELU mismatch .* Set clip_quick_gelu"):
        with weights_must_match("CLIP ViT-B-16 (openai)", "Set clip_quick_gelu."):
            warnings.warn("QuickGELU mismatch between final model config (quick_gelu=False) and pretrained tag 'openai' (quick_gelu=True).")
    with pytest.warns(WeightsDisagreementWarning, match="No pretrained weights exist"):
        with weights_must_match("DINO", "Fix it."):
            logging.getLogger("timm.models._builder").warning("No pretrained weights exist for this model. Using random initialization.")
    with pytest.raises(ProxyCLIPError, match=r"weights of DINO were refused .*Missing key\(s\) in state_dict.* Fix it\.$"):
        with weights_must_match("DINO", "Fix it."):                  # what a strict load raises
            torch.nn.Linear(2, 2).load_state_dict({"weight": torch.zeros(2, 2)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # random weights asked for: expected, not said
        with weights_must_match("CLIP", "Fix it.", random_init=True):
            logging.getLogger().warning("No pretrained weights loaded for model 'ViT-B-16'. Model initialized randomly.")
    with pytest.warns(UserWarning, match="unrelated"):                # anything else passes through unchanged
        with weights_must_match("CLIP", "Fix it."):
            warnings.warn("an unrelated message")


def test_a_local_checkpoint_needs_the_activation_stated(tmp_path):
    model, _ = build_clip(TINY_JSON, None)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ProxyCLIPError, match="does not say which activation"):
        build_clip(TINY_JSON, str(path))
    quick, _ = build_clip(TINY_JSON, str(path), quick_gelu=True)
    assert clip_activation(quick) == "QuickGELU" and clip_activation(model) == "GELU"


def test_model_config_json_file_equals_the_inline_config(tmp_path):
    """clip_model as a JSON file and as the same config inline build the same architecture."""
    torch.manual_seed(0)
    from_file, _ = build_clip(write_tiny_clip_json(tmp_path), None)
    torch.manual_seed(0)
    inline, _ = build_clip(TINY_CLIP, None)
    assert all(torch.equal(a, b) for a, b in zip(from_file.state_dict().values(), inline.state_dict().values()))
