"""The text side (METHOD §4): vocabulary lines -> queries -> template-averaged CLIP text embeddings."""
from __future__ import annotations

from typing import Callable, Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ProxyCLIPError

TEMPLATES: tuple[Callable[[str], str], ...] = tuple(open_clip.OPENAI_IMAGENET_TEMPLATES)  # the 80 OpenAI prompts


def parse_vocabulary(class_names: Sequence[str]) -> tuple[list[str], list[int]]:
    """One class per line, its names separated by "; " -> (queries, class index of each query).

    Lines are used verbatim (surrounding whitespace stripped, split only on "; "): a respelling would
    change the text embeddings and the numbers.
    """
    if isinstance(class_names, str):
        raise ProxyCLIPError(f"The vocabulary must be a list of class lines, got the string {class_names!r}.")
    lines = [str(line).strip() for line in class_names]
    if not lines:
        raise ProxyCLIPError("The vocabulary is empty: give at least one class name (one class per line, synonyms separated by '; ').")
    queries: list[str] = []
    query_to_class: list[int] = []
    for index, line in enumerate(lines):
        names = line.split("; ")
        if not line or any(not name.strip() for name in names):
            raise ProxyCLIPError(
                f"Class {index} of the vocabulary has an empty name ({line!r}). Every class needs at least one name; "
                "separate synonyms with '; ' and do not leave empty lines or trailing separators."
            )
        queries += names
        query_to_class += [index] * len(names)
    return queries, query_to_class


@torch.no_grad()
def encode_queries(model: nn.Module, tokenizer: Callable, queries: Sequence[str],
                   templates: Sequence[Callable[[str], str]] = TEMPLATES, batch_size: int = 2560) -> torch.Tensor:
    """Embeddings [Q, D]: per query, encode every template, L2-normalise each, average, L2-normalise.

    Prompts are encoded in chunks of about `batch_size` (whole queries per chunk), so 847-class
    vocabularies fit in memory.
    """
    device = next(model.parameters()).device
    per_chunk = max(1, batch_size // len(templates))
    out = []
    for start in range(0, len(queries), per_chunk):
        chunk = queries[start:start + per_chunk]
        tokens = tokenizer([template(q) for q in chunk for template in templates]).to(device)
        emb = F.normalize(model.encode_text(tokens).float(), dim=-1)       # [q * T, D]
        emb = emb.view(len(chunk), len(templates), -1).mean(dim=1)         # [q, D]
        out.append(F.normalize(emb, dim=-1))
    return torch.cat(out)
