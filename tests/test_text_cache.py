"""The text-embedding disk cache: hit on the second run, invalidated by vocabulary or weights, never fatal."""
import hashlib

import pytest
import torch

from proxyclip import build_segmentor
from proxyclip.method.text_cache import default_cache_dir, weights_fingerprint
from proxyclip.method.loading import file_sha256
from conftest import TINY_CONFIG, VOCAB


class CountingEncoder:
    """Counts the prompts the model's text tower encodes (a hook on its token embedding: every path passes there)."""

    def __init__(self, model):
        self.prompts = 0
        model.token_embedding.register_forward_hook(self.count)

    def count(self, module, args, output):
        self.prompts += args[0].shape[0]


@pytest.fixture
def seg(tmp_path):
    torch.manual_seed(0)
    return build_segmentor(TINY_CONFIG, class_names=VOCAB, text_cache_dir=str(tmp_path / "text")).eval()


def embed(seg, vocabulary):
    seg.set_vocabulary(vocabulary)   # forgets the in-memory embeddings: only the disk cache can spare the text tower
    return seg.text_embeddings()


def test_second_run_encodes_no_prompt(seg, tmp_path):
    counter = CountingEncoder(seg.clip)
    first = embed(seg, VOCAB)
    assert counter.prompts == len(seg.queries) * 80
    assert len(list((tmp_path / "text").glob("*.pt"))) == 1
    second = embed(seg, VOCAB)
    assert counter.prompts == len(seg.queries) * 80, "the cache was not used"
    assert torch.equal(first, second)
    assert not list((tmp_path / "text").glob("*.tmp")), "a temporary file was left behind"


def test_a_new_process_with_the_same_random_model_hits(seg, tmp_path):
    embed(seg, VOCAB)
    torch.manual_seed(0)             # the same random weights, built again
    again = build_segmentor(TINY_CONFIG, class_names=VOCAB, text_cache_dir=str(tmp_path / "text")).eval()
    counter = CountingEncoder(again.clip)
    torch.testing.assert_close(again.text_embeddings(), seg.text_embeddings(), atol=0, rtol=0)
    assert counter.prompts == 0


def test_vocabulary_change_invalidates(seg):
    counter = CountingEncoder(seg.clip)
    embed(seg, VOCAB)
    before = counter.prompts
    embed(seg, VOCAB + ["tree"])
    assert counter.prompts == before + (len(seg.queries)) * 80


def test_weight_change_invalidates(seg, tmp_path):
    counter = CountingEncoder(seg.clip)
    first = embed(seg, VOCAB)
    with torch.no_grad():
        seg.clip.text_projection.add_(0.1 * torch.randn_like(seg.clip.text_projection))  # other text weights
    before = counter.prompts
    second = embed(seg, VOCAB)
    assert counter.prompts == before + len(seg.queries) * 80
    assert not torch.allclose(first, second)
    torch.manual_seed(1)
    other = build_segmentor(TINY_CONFIG, class_names=VOCAB, text_cache_dir=str(tmp_path / "text"))
    assert weights_fingerprint(other.clip, None) != weights_fingerprint(seg.clip, None)


def test_unreadable_entry_is_recomputed(seg, tmp_path):
    reference = embed(seg, VOCAB)
    (entry,) = (tmp_path / "text").glob("*.pt")
    entry.write_bytes(b"not a torch file")
    counter = CountingEncoder(seg.clip)
    with pytest.warns(UserWarning, match="unreadable"):
        again = embed(seg, VOCAB)
    assert counter.prompts > 0 and torch.equal(again, reference)
    assert torch.load(entry, weights_only=True)["embeddings"].shape == reference.shape  # rewritten, readable


def test_cache_off_and_folder_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PROXYCLIP_CACHE_DIR", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "text"
    torch.manual_seed(0)
    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB)
    seg.text_embeddings()
    assert len(list((tmp_path / "root" / "text").glob("*.pt"))) == 1
    off = build_segmentor(TINY_CONFIG, class_names=["tree"], text_cache=False)
    off.text_embeddings()
    assert len(list((tmp_path / "root" / "text").glob("*.pt"))) == 1


def test_weights_fingerprint_of_tags_and_files(tmp_path, seg):
    assert weights_fingerprint(seg.clip, "openai") == "tag:openai"
    path = tmp_path / "clip.pt"
    path.write_bytes(b"weights v1")
    assert weights_fingerprint(seg.clip, str(path)) == "file:" + hashlib.sha256(b"weights v1").hexdigest()
    path.write_bytes(b"weights v2, longer")   # size (and mtime) change: the memo is not reused
    assert file_sha256(path) == hashlib.sha256(b"weights v2, longer").hexdigest()


def test_another_activation_does_not_reuse_the_cache(seg, tmp_path):
    """The same checkpoint file built with QuickGELU and with GELU: the activation is not in the weights, so
    the cache must keep the two apart (a GELU entry served to a QuickGELU model changes every number)."""
    checkpoint = tmp_path / "tiny_clip.pt"
    torch.save(seg.clip.state_dict(), checkpoint)
    results = {}
    for quick_gelu in (True, False):
        other = build_segmentor(TINY_CONFIG, class_names=VOCAB, clip_pretrained=str(checkpoint), clip_quick_gelu=quick_gelu,
                                clip_mean=seg.clip_mean.flatten().tolist(), clip_std=seg.clip_std.flatten().tolist(),
                                text_cache_dir=str(tmp_path / "text")).eval()
        counter = CountingEncoder(other.clip)
        results[quick_gelu] = other.text_embeddings()
        assert counter.prompts == len(other.queries) * 80, f"quick_gelu={quick_gelu} was served another activation's entry"
    assert len(list((tmp_path / "text").glob("*.pt"))) == 2
    assert not torch.allclose(results[True], results[False])
