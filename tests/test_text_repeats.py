"""A query named by two classes is encoded once, so its rows are identical, as in the originals.

The originals encode one query at a time (SCLIP clip_segmentor.py:37-42, ProxyCLIP proxyclip_segmentor.py:89-94):
the same text gives the same embedding, and the two classes tie exactly. SCLIP's COCO-Object names "bed" as a
background synonym (line 1) and as class 60 (line 61); argmax keeps such a tie for class 0.
"""
import pytest
import torch
import torch.nn.functional as F

from datamodules.vocabulary_files import load_vocabulary, resolve_names_file
from proxyclip import build_segmentor
from proxyclip.method.clip_encoder import build_clip
from proxyclip.method.onednn_linear import swap_linears
from proxyclip.method.text import TEMPLATES, encode_queries
from proxyclip.method.text_cache import _key_digest, cache_key, save_entry
from proxyclip.vocabulary import parse_vocabulary, query_key
from conftest import TINY_CLIP, TINY_CONFIG, VOCAB
from test_text_cache import CountingEncoder

# "bed" in classes 0 and 3, "wall" in 0 and 4, and "Bed" (the same text to CLIP's tokenizer, which lower-cases); the
# long name makes batches of different lengths (encoded twice, the rows of "bed" differ on some CPUs)
REPEATS = ["background; bed; wall", "person", "chest of drawers, chest, bureau, dresser", "bed", "wall; Bed", "dining table"]
QUERIES = parse_vocabulary(REPEATS)[0]
DISTINCT = 6                                          # background, bed, wall, person, chest of drawers..., dining table


def tiny_clip(onednn=False):
    torch.manual_seed(0)
    model, tokenizer = build_clip(TINY_CLIP, None)
    return swap_linears(model, onednn=onednn), tokenizer


def one_query_at_a_time(model, tokenizer, queries):
    """As the originals: each query's 80 prompts through encode_text on their own, normalised, mean, normalised."""
    with torch.no_grad():
        rows = [F.normalize(F.normalize(model.encode_text(tokenizer([t(q) for t in TEMPLATES])).float(), dim=-1)
                            .mean(dim=0), dim=0) for q in queries]
    return torch.stack(rows)


def assert_repeats_identical(embeddings, queries):
    """Every query whose text CLIP reads alike has bit-identical rows."""
    groups = {}
    for index, query in enumerate(queries):
        groups.setdefault(query_key(query), []).append(index)
    repeated = [group for group in groups.values() if len(group) > 1]
    assert repeated, "the vocabulary repeats no query"
    for group in repeated:
        for index in group[1:]:
            assert torch.equal(embeddings[index], embeddings[group[0]]), [queries[i] for i in group]


@pytest.mark.parametrize("onednn", [False, True])
def test_a_repeated_query_gets_identical_rows(onednn):
    model, tokenizer = tiny_clip(onednn)
    for batch_size in (80, 160, 2560):               # 1, 2 and all queries per batch
        embeddings = encode_queries(model, tokenizer, QUERIES, batch_size=batch_size)
        assert embeddings.shape[0] == len(QUERIES)
        assert_repeats_identical(embeddings, QUERIES)


def test_equal_to_one_query_at_a_time():
    model, tokenizer = tiny_clip()
    reference = one_query_at_a_time(model, tokenizer, QUERIES)
    assert_repeats_identical(reference, QUERIES)      # the originals' exact tie
    torch.testing.assert_close(encode_queries(model, tokenizer, QUERIES), reference, atol=1e-5, rtol=0)


def test_each_distinct_query_is_encoded_once():
    model, tokenizer = tiny_clip()
    counter = CountingEncoder(model)
    encode_queries(model, tokenizer, QUERIES, batch_size=160)
    assert counter.prompts == DISTINCT * len(TEMPLATES) < len(QUERIES) * len(TEMPLATES)


def logits_of(text, features):
    """[Q, 1, P] cosine logits, one query row at a time: identical rows give identical logits on every CPU."""
    return torch.stack([(features * row).sum(dim=-1) for row in text])[:, None]


@pytest.mark.parametrize("onednn", [False, True])
def test_sclip_coco_object_keeps_the_tie_for_background(onednn, tmp_path):
    lines = load_vocabulary(resolve_names_file("sclip/coco_object"))
    assert "bed" in lines[0].split("; ") and lines[60] == "bed"
    torch.manual_seed(0)
    seg = build_segmentor(TINY_CONFIG, class_names=lines, onednn_linear=onednn, prob_thd=0.0,
                          text_cache_dir=str(tmp_path / "text")).eval()
    text = seg.text_embeddings()
    beds = [i for i, query in enumerate(seg.queries) if query == "bed"]
    assert seg.query_to_class[beds].tolist() == [0, 60]
    assert torch.equal(text[beds[0]], text[beds[1]])
    # a pixel that is exactly "bed" (and one that is "person"): classes 0 and 60 tie, and the first one wins
    probs = seg.class_probabilities(logits_of(text, text[[beds[1], seg.queries.index("person")]]))
    assert torch.equal(probs[0, 0, 0], probs[60, 0, 0]) and probs[0, 0, 0] == probs[:, 0, 0].max()
    assert seg.decide(probs).tolist() == [[0, 1]]


def test_the_cache_keeps_repeats_identical_and_skips_older_entries(tmp_path):
    def segmentor():
        torch.manual_seed(0)
        return build_segmentor(TINY_CONFIG, class_names=REPEATS, text_cache_dir=str(tmp_path)).eval()

    seg = segmentor()
    # an entry as written before repeats were encoded once: the key without the marker, rows apart by rounding
    old_key = cache_key(seg.clip, seg.clip_model_name, seg.clip_pretrained, seg.queries)
    assert old_key.pop("encoded_once") is True
    old_rows = one_query_at_a_time(seg.clip, seg.tokenizer, seg.queries)
    old_rows[QUERIES.index("bed", 2)] += 1e-7
    save_entry(tmp_path / f"{_key_digest(old_key)}.pt", old_key, old_rows)
    counter = CountingEncoder(seg.clip)
    first = seg.text_embeddings()
    assert counter.prompts == DISTINCT * len(TEMPLATES), "the older entry was read"
    assert_repeats_identical(first, QUERIES)
    again = segmentor()                                # the same random weights: a cache hit
    counter = CountingEncoder(again.clip)
    assert torch.equal(again.text_embeddings(), first) and counter.prompts == 0
    # a vocabulary without a repeat keeps its key: its entries give the numbers they gave before
    assert "encoded_once" not in cache_key(seg.clip, seg.clip_model_name, seg.clip_pretrained, parse_vocabulary(VOCAB)[0])
