"""Building CLIP: from a model-config JSON, a local checkpoint (refused when it does not fit), offline errors."""
import json
import time

import pytest
import torch

from proxyclip import ProxyCLIPError
from proxyclip.clip_encoder import build_clip
from conftest import REPO_ROOT

TINY_JSON = str(REPO_ROOT / "configs/model/tiny_clip.json")


def test_local_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model, tokenizer = build_clip(TINY_JSON, None)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    loaded, _ = build_clip(TINY_JSON, str(path))
    tokens = tokenizer(["a photo of a cat."])
    torch.testing.assert_close(loaded.encode_text(tokens), model.encode_text(tokens))
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_mismatched_checkpoint_is_refused(tmp_path):
    cfg = json.loads((REPO_ROOT / "configs/model/tiny_clip.json").read_text())
    cfg["vision_cfg"]["layers"] = 3
    deeper_json = tmp_path / "tiny_clip_deeper.json"
    deeper_json.write_text(json.dumps(cfg))
    deeper, _ = build_clip(str(deeper_json), None)
    path = tmp_path / "deeper.pt"
    torch.save(deeper.state_dict(), path)
    with pytest.raises(ProxyCLIPError, match=r"does not fit.*unexpected keys.*resblocks\.2"):
        build_clip(TINY_JSON, str(path))


def test_unknown_tag_and_missing_files():
    with pytest.raises(ProxyCLIPError, match="openai"):
        build_clip("ViT-B-16", "opneai")
    with pytest.raises(ProxyCLIPError, match="not found"):
        build_clip(TINY_JSON, "/nonexistent/clip.bin")
    with pytest.raises(ProxyCLIPError, match="does not exist"):
        build_clip("/nonexistent/model.json", None)


def test_offline_download_fails_fast_with_the_fix(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)   # never download, even where a network exists
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # and an empty cache
    start = time.monotonic()
    with pytest.raises(ProxyCLIPError, match="clip_pretrained"):
        build_clip("ViT-B-16", "openai")
    assert time.monotonic() - start < 30
