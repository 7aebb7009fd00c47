"""The text side: prompts run only up to their end-of-text token give CLIP's full-context embeddings."""
import pytest
import torch

from proxyclip.method.clip_encoder import build_clip
from proxyclip.method.text import TEMPLATES, encode_prompts, encode_queries
from proxyclip.vocabulary import parse_vocabulary
from conftest import TINY_CLIP

QUERIES = ["sky", "dining table", "tvmonitor", "bag, traveling bag, travelling bag, grip, suitcase", "a"]


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    return build_clip(TINY_CLIP, None)


def full_context(model, tokenizer, queries):
    """docs/method.md §4 as the original computes it: every prompt at the full 77-token context."""
    out = []
    for query in queries:
        emb = model.encode_text(tokenizer([t(query) for t in TEMPLATES])).float()
        emb = torch.nn.functional.normalize(emb, dim=-1).mean(dim=0)
        out.append(torch.nn.functional.normalize(emb, dim=0))
    return torch.stack(out)


def test_truncated_prompts_equal_the_full_context(tiny_clip):
    model, tokenizer = tiny_clip
    tokens = tokenizer([t(q) for q in QUERIES for t in TEMPLATES])
    lengths = tokens.argmax(dim=-1) + 1
    assert lengths.max() < 40 < tokens.shape[1]                     # most of the context is padding
    with torch.no_grad():
        torch.testing.assert_close(encode_prompts(model, tokens, batch_size=64), model.encode_text(tokens), atol=1e-5, rtol=0)
        torch.testing.assert_close(encode_queries(model, tokenizer, QUERIES), full_context(model, tokenizer, QUERIES),
                                   atol=1e-5, rtol=0)


def test_truncation_runs_fewer_tokens(tiny_clip):
    model, tokenizer = tiny_clip
    tokens = tokenizer([t(q) for q in QUERIES for t in TEMPLATES])
    seen = []
    hook = model.transformer.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0].shape[:2]),
                                                      with_kwargs=True)
    try:
        with torch.no_grad():
            encode_prompts(model, tokens, batch_size=100)
    finally:
        hook.remove()
    assert sum(b for b, _ in seen) == len(tokens)
    assert sum(b * length for b, length in seen) < 0.4 * tokens.numel()


def test_vocabulary_lines_and_synonyms():
    queries, to_class = parse_vocabulary(["sky; cloud", "person", "chest of drawers, chest"])
    assert queries == ["sky", "cloud", "person", "chest of drawers, chest"] and to_class == [0, 0, 1, 2]
