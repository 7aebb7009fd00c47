"""The text side (docs/method.md §4): queries -> template-averaged CLIP text embeddings."""
from __future__ import annotations

from typing import Callable, Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

TEMPLATES: tuple[Callable[[str], str], ...] = tuple(open_clip.OPENAI_IMAGENET_TEMPLATES)  # the 80 OpenAI prompts


def _prompt_ends(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor | None:
    """[N] position of each prompt's pooled token (end of text), or None where truncation is not exact.

    Only a causal text transformer pooled at the end-of-text token qualifies: its output there depends on
    the tokens up to it and on nothing after.
    """
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    if not all(hasattr(model, name) for name in needed) or getattr(model, "attn_mask", None) is None:
        return None
    pool = getattr(model, "text_pool_type", "argmax")
    if pool == "argmax":
        return tokens.argmax(dim=-1)                                     # EOT has the highest token id
    if pool == "eos" and getattr(model, "text_eos_id", None) is not None:
        return (tokens == model.text_eos_id).int().argmax(dim=-1)
    return None


def encode_prompts(model: nn.Module, tokens: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """[N, context] tokens -> [N, D] text embeddings, as `model.encode_text(tokens)` computes them.

    CLIP's text tower is causal and pooled at the end-of-text token, so each prompt only needs its tokens up
    to that point: prompts are sorted by length and every batch runs up to its longest prompt instead of the
    full 77-token context (about a fifth of the tokens for the 80 templates). Same result up to rounding.
    """
    ends = _prompt_ends(model, tokens)
    if ends is None:
        return model.encode_text(tokens)
    out = None
    order = ends.argsort()
    cast = model.transformer.get_cast_dtype()
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        length = int(ends[index].max()) + 1
        part = tokens[index, :length]
        x = model.token_embedding(part).to(cast) + model.positional_embedding[:length].to(cast)
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
        x = x[torch.arange(len(index), device=x.device), ends[index]]     # [n, W] at each end-of-text token
        x = model.text_projection(x) if isinstance(model.text_projection, nn.Linear) else x @ model.text_projection
        out = x.new_empty(len(tokens), x.shape[-1]) if out is None else out
        out[index] = x
    return out


def distinct_queries(tokenizer: Callable, queries: Sequence[str],
                     templates: Sequence[Callable[[str], str]] = TEMPLATES) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(the prompt tokens [T, context] of each distinct query, in order of first appearance; per query, its row [Q]).

    Queries are the same when their prompts tokenize alike: the text encoder sees nothing else, so they are one
    text ("Bed" and "bed" too: CLIP's tokenizer lower-cases).
    """
    blocks: list[torch.Tensor] = []
    rows: dict[bytes, int] = {}
    by_text: dict[str, int] = {}
    inverse = []
    for query in queries:
        if query not in by_text:     # a repeated string is not tokenized again
            tokens = tokenizer([template(query) for template in templates])
            key = tokens.contiguous().numpy().tobytes()
            if key not in rows:
                rows[key] = len(blocks)
                blocks.append(tokens)
            by_text[query] = rows[key]
        inverse.append(by_text[query])
    return blocks, torch.tensor(inverse, dtype=torch.long)


@torch.no_grad()
def encode_queries(model: nn.Module, tokenizer: Callable, queries: Sequence[str],
                   templates: Sequence[Callable[[str], str]] = TEMPLATES, batch_size: int = 2560) -> torch.Tensor:
    """Embeddings [Q, D]: per query, encode every template, L2-normalise each, average, L2-normalise.

    Each distinct query is encoded once and its row copied to every position it holds. The originals encode
    each query on its own, so a name in two classes (SCLIP's COCO-Object: "bed" is a background synonym and
    class 60) gets two equal rows and an exact tie that argmax gives to the first class. Encoded twice in
    different batches, the two rows would differ by rounding and break the tie either way.
    Prompts are encoded in chunks of about `batch_size` (whole queries per chunk), so 847-class
    vocabularies fit in memory.
    """
    device = next(model.parameters()).device
    blocks, inverse = distinct_queries(tokenizer, queries, templates)
    per_chunk = max(1, batch_size // len(templates))
    out = []
    for start in range(0, len(blocks), per_chunk):
        chunk = blocks[start:start + per_chunk]
        tokens = torch.cat(chunk).to(device)
        emb = F.normalize(encode_prompts(model, tokens).float(), dim=-1)   # [q * T, D]
        emb = emb.view(len(chunk), len(templates), -1).mean(dim=1)         # [q, D]
        out.append(F.normalize(emb, dim=-1))
    return torch.cat(out)[inverse.to(device)]
