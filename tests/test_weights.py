"""`python -m proxyclip.weights list|download CONFIG`: sources, cache state, local files, the offline failure; VFM
weights that do not fit their architecture refused."""
import hashlib
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT, TINY_CONFIG, put_in_hub_cache, tiny_vfm_kwargs, write_tiny_clip_json
from proxyclip.commands.weights import load_model_spec, main, weights_provenance


def run_weights(tmp_path, *args, **env):
    """The command in a subprocess with empty, private caches (the machine's own caches must not matter)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch"),
           **env}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-m", "proxyclip.weights", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def write_model_config(path, **segmentor):
    lines = [f"  {key}: {'null' if value is None else value}" for key, value in segmentor.items()]
    path.write_text("segmentor:\n" + "\n".join(lines) + "\n")
    return path


@pytest.mark.subprocess
def test_list_random_weights_needs_nothing(tmp_path):
    result = run_weights(tmp_path, "list", str(TINY_CONFIG))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("nothing to fetch (random initialisation)") == 2


@pytest.mark.subprocess
def test_list_default_names_the_sources_and_the_cache_state(tmp_path):
    cached = put_in_hub_cache(tmp_path / "hf" / "hub", "timm/vit_base_patch8_224.dino", "model.safetensors", b"weights")
    result = run_weights(tmp_path, "list", "configs/model/default.yaml")
    assert result.returncode == 1, result.stderr[-2000:]      # CLIP is missing
    out = result.stdout
    clip, vfm = out.split("\nVFM ")
    assert "ViT-B-16" in clip and "openai" in clip and "timm/vit_base_patch16_clip_224.openai" in clip and "NOT CACHED" in clip
    assert "vit_base_patch8_224.dino" in vfm and f"cached at {cached}" in vfm
    assert "python -m proxyclip.weights download configs/model/default.yaml" in out


@pytest.mark.subprocess
def test_download_without_network_fails_fast_with_the_offline_message(tmp_path):
    # HF_HUB_OFFLINE=1: the same failure as without network, and never a real download where there is one.
    result = run_weights(tmp_path, "download", "configs/voc21.yaml", HF_HUB_OFFLINE="1")
    assert result.returncode == 1
    assert "Cannot fetch the pretrained weights of CLIP ViT-B-16 (openai)" in result.stderr
    assert "model.segmentor.clip_pretrained" in result.stderr and "python -m proxyclip.weights download" in result.stderr
    assert "Traceback" not in result.stderr
    assert "ERROR:root" not in result.stderr      # open_clip's own line before ours is noise once ours explains it


def test_local_checkpoints_show_their_sha256(tmp_path, capsys):
    checkpoint = tmp_path / "clip.pt"
    torch.save({"w": torch.arange(4.0)}, checkpoint)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    config = write_model_config(tmp_path / "local.yaml", clip_model="ViT-B-16", clip_pretrained=checkpoint,
                                vfm="dino_vitb8", vfm_pretrained="false")
    assert main(["list", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"local file: {checkpoint}" in out and f"sha256:{digest}" in out
    assert weights_provenance(load_model_spec(config)) == {"clip": f"sha256:{digest}", "vfm": "random"}

    gone = write_model_config(tmp_path / "gone.yaml", clip_model="ViT-B-16", clip_pretrained=tmp_path / "nope.pt",
                              vfm="dino_vitb8", vfm_pretrained="false")
    assert main(["list", str(gone)]) == 1
    assert "MISSING" in capsys.readouterr().out
    assert main(["download", str(gone)]) == 1
    assert "clip_pretrained" in capsys.readouterr().err


def test_sam_url_in_the_torch_hub_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = write_model_config(tmp_path / "sam.yaml", clip_model=write_tiny_clip_json(tmp_path), clip_pretrained=None,
                                vfm="sam_vit_b", vfm_pretrained="true")
    assert main(["list", str(config)]) == 1
    out = capsys.readouterr().out
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in out and "NOT CACHED" in out
    target = tmp_path / "torch" / "hub" / "checkpoints" / "sam_vit_b_01ec64.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"sam")
    assert main(["list", str(config)]) == 0
    assert f"cached at {target}" in capsys.readouterr().out


@pytest.mark.parametrize("config", ["configs/voc21.yaml", "configs/model/default.yaml"])
def test_benchmark_configs_resolve_their_model(config):
    spec = load_model_spec(config)
    assert (spec["clip_model"], spec["clip_pretrained"], spec["vfm"], spec["vfm_pretrained"]) == ("ViT-B-16", "openai", "dino_vitb8", True)
    assert weights_provenance(spec) == {"clip": "open_clip ViT-B-16/openai", "vfm": "timm vit_base_patch8_224.dino"}


def test_tiny_download_is_a_no_op(capsys):
    assert main(["download", str(TINY_CONFIG)]) == 0
    assert capsys.readouterr().out.count("nothing to fetch") == 2


def spoilt(state, how):
    """`state` with one key missing or one tensor of another shape."""
    state = dict(state)
    if how == "missing key":
        state.pop("blocks.0.attn.qkv.weight")
    else:
        state["blocks.0.mlp.fc1.bias"] = torch.zeros(3)
    return state


REFUSAL = {"missing key": r'Missing key\(s\) in state_dict: "blocks\.0\.attn\.qkv\.weight"',
           "wrong shape": r"size mismatch for blocks\.0\.mlp\.fc1\.bias"}


@pytest.mark.parametrize("how", list(REFUSAL))
def test_timm_refuses_pretrained_weights_that_do_not_fit(how, monkeypatch, tmp_path):
    """pretrained=True: timm's load_pretrained loads its weights (here a tiny file in the Hugging Face cache under the
    tag's name) with strict=True, so a missing key or a wrong shape raises in timm, and that is our error."""
    from huggingface_hub import constants

    from proxyclip import ProxyCLIPError
    from proxyclip.method.vfm import build_vfm

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    kwargs = tiny_vfm_kwargs("dino_vitb8")
    own = build_vfm("dino_vitb8", False, kwargs).model.state_dict()
    put_in_hub_cache(tmp_path / "hub", "timm/vit_base_patch8_224.dino", "model.safetensors", own)
    loaded = build_vfm("dino_vitb8", True, kwargs)                      # what fits loads, through the same path
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in own.items())
    put_in_hub_cache(tmp_path / "hub", "timm/vit_base_patch8_224.dino", "model.safetensors", spoilt(own, how))
    with pytest.raises(ProxyCLIPError, match=rf"weights of DINO \(vit_base_patch8_224\.dino\) were refused .*{REFUSAL[how]}.*drop those vfm_kwargs") as info:
        build_vfm("dino_vitb8", True, kwargs)
    assert isinstance(info.value.__cause__, RuntimeError)              # raised by timm, not read from its log


def test_vfm_kwargs_cannot_choose_the_weights_and_architecture_errors_are_their_own():
    """timm's pretrained_cfg (overlay) in vfm_kwargs could load other weights or none: refused. A vfm_kwargs value
    timm cannot build is timm's own error, not a refusal of the weights."""
    from proxyclip import ProxyCLIPError
    from proxyclip.method.vfm import build_vfm

    kwargs = tiny_vfm_kwargs("dino_vitb8")
    with pytest.raises(ProxyCLIPError, match=r"vfm_kwargs pretrained_cfg_overlay: the weights of .* are chosen by `vfm`"):
        build_vfm("dino_vitb8", True, {**kwargs, "pretrained_cfg_overlay": {"hf_hub_id": None}})
    with pytest.raises(Exception) as info:
        build_vfm("dino_vitb8", True, {**kwargs, "global_pool": "bogus"})
    assert not isinstance(info.value, ProxyCLIPError) and "refused" not in str(info.value)


@pytest.mark.parametrize("how", ["missing key", "wrong shape"])
def test_a_vfm_checkpoint_file_that_does_not_fit_is_refused(how, tmp_path):
    """A local file is loaded strictly too (load_state_dict_checked: the summary, then torch's strict load)."""
    from proxyclip import ProxyCLIPError
    from proxyclip.method.vfm import build_vfm

    kwargs = tiny_vfm_kwargs("dino_vitb8")
    path = tmp_path / "dino.pth"
    torch.save(spoilt(build_vfm("dino_vitb8", False, kwargs).model.state_dict(), how), path)
    says = {"missing key": r"missing keys: 1 \(blocks\.0\.attn\.qkv\.weight\)",
            "wrong shape": r"shape mismatches \(checkpoint vs model\): 1 \(blocks\.0\.mlp\.fc1\.bias \(3,\) vs \(128,\)\)"}[how]
    with pytest.raises(ProxyCLIPError, match=rf"Checkpoint '{path}' does not fit the DINO .*{says}"):
        build_vfm("dino_vitb8", str(path), kwargs)


def test_sam2_checkpoints_are_sources(tmp_path, monkeypatch, capsys):
    """`list sam2_hiera_l`: the SAM 2 checkpoint of CorrCLIP's region masks, Meta's URL into torch.hub's cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(["list", "sam2_hiera_l"]) == 1
    out = capsys.readouterr().out
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_large.pt" in out and "NOT CACHED" in out
    assert "download sam2_hiera_l" in out
    target = tmp_path / "torch" / "hub" / "checkpoints" / "sam2_hiera_large.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"sam2")
    assert main(["list", "sam2_hiera_l"]) == 0
    assert f"cached at {target}" in capsys.readouterr().out
    for name, file in (("sam2_hiera_t", "sam2_hiera_tiny.pt"), ("sam2_hiera_s", "sam2_hiera_small.pt"),
                       ("sam2_hiera_b+", "sam2_hiera_base_plus.pt")):
        assert main(["list", name]) == 1
        assert f"https://dl.fbaipublicfiles.com/segment_anything_2/072824/{file}" in capsys.readouterr().out


def test_a_method_that_runs_sam2_lists_its_checkpoint(tmp_path):
    """method_kwargs `mask_generator: sam2` adds SAM 2's checkpoint to the sources and to run.json: CorrCLIP declares
    it (`LastBlock.weights`); a method that runs no SAM 2 declares none."""
    from proxyclip.commands.weights import weight_sources

    tiny = load_model_spec(TINY_CONFIG)
    assert "sam2" not in weights_provenance({**tiny, "method_kwargs": {"mask_generator": "sam2"}})   # proxyclip's
    spec = {**tiny, "method": "corrclip"}
    assert "sam2" not in weights_provenance(spec)
    url = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_large.pt"
    assert weights_provenance({**spec, "method_kwargs": {"mask_generator": "sam2"}})["sam2"] == url
    small = weights_provenance({**spec, "method_kwargs": {"mask_generator": "sam2", "sam2_model": "sam2_hiera_s"}})
    assert small["sam2"] == url.replace("large", "small")
    checkpoint = tmp_path / "sam2.pt"
    checkpoint.write_bytes(b"sam2")
    local = weight_sources({**spec, "method_kwargs": {"mask_generator": "sam2", "sam2_checkpoint": str(checkpoint)}})[-1]
    assert (local.component, local.kind, local.key) == ("SAM2", "file", "model.segmentor.method_kwargs.sam2_checkpoint")
    assert local.provenance == f"sha256:{hashlib.sha256(b'sam2').hexdigest()}"
    assert weight_sources({**spec, "method_kwargs": {"instance_mask_path": "data/region_masks/voc"}})[-1].component != "SAM2"


def test_download_asks_the_method_for_its_own_checkpoint(tmp_path, monkeypatch):
    """A checkpoint a method declares (Trident's SAM) is downloaded by the method's own `download` (the model built as
    a run builds it), then found in torch.hub's cache; weights.py names no method."""
    from dataclasses import replace

    from proxyclip.commands.weights import fetch, method_source, weight_sources

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = load_model_spec(REPO_ROOT / "configs" / "model" / "trident_vitb16.yaml")
    declared = weight_sources(spec)[-1].declared
    assert (declared.component, declared.key) == ("SAM", "model.segmentor.method_kwargs.sam_checkpoint")
    target = tmp_path / "torch" / "hub" / "checkpoints" / "sam_vit_b_01ec64.pth"
    built = []

    def download():
        target.parent.mkdir(parents=True)
        target.write_bytes(b"sam")
        built.append(target)

    fake = replace(declared, download=download)
    source = method_source(fake)
    assert source.kind == "url" and not source.present
    assert fetch(source, spec) == f"cached at {target}" and len(built) == 1
    import proxyclip.commands.weights as weights

    text = open(weights.__file__).read().lower()
    assert not any(name in text for name in ("trident", "corrclip", "cass")), "weights.py names a method"
