"""A disk cache for query embeddings: the text tower runs once per (CLIP model and weights, queries, templates).

Encoding a vocabulary is 80 prompts per query through CLIP's text tower (about 80 s for 20 classes with
ViT-B-16 on two CPU cores), and it gives the same numbers every time. Each result is kept as a small
`.pt` file (the [Q, D] fp32 embeddings and the key that made them) named by the key's sha256.

The weights' fingerprint (part of the key): the pretrained tag for library weights, the checkpoint file's sha256 for local files
(memoised by path, size and mtime), and for random weights a hash of the text tower's actual parameters,
so two different random models never share an entry. Writes are atomic (temp file + os.replace); an
entry that cannot be read or does not match is recomputed and rewritten, never fatal.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ..vocabulary import query_key
from .clip_encoder import clip_activation, model_identity
from .text import TEMPLATES, encode_queries
from .loading import file_sha256, is_local_path

FORMAT_VERSION = 2


def default_cache_dir() -> Path:
    """`$PROXYCLIP_CACHE_DIR/text` when that variable is set, else `~/.cache/proxyclip/text`."""
    root = os.environ.get("PROXYCLIP_CACHE_DIR")
    return Path(root).expanduser() / "text" if root else Path.home() / ".cache" / "proxyclip" / "text"


def text_tower_digest(model: nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of every parameter and buffer outside `visual`."""
    digest = hashlib.sha256()
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        if name.startswith("visual.") or name.startswith("logit_"):  # the image tower and the CLIP loss scale
            continue
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy())     # buffer protocol: no extra copy
    return digest.hexdigest()


def weights_fingerprint(model: nn.Module, pretrained: str | os.PathLike | None) -> str:
    """A fingerprint of the text tower's loaded weights, for the cache key: tag, checkpoint sha256, or parameter hash
    (random init)."""
    if pretrained is None:
        return "random:" + text_tower_digest(model)
    if is_local_path(pretrained):
        return "file:" + file_sha256(pretrained)
    return "tag:" + str(pretrained)


def cache_key(model: nn.Module, model_name: str | dict, pretrained: str | os.PathLike | None, queries: Sequence[str],
              templates: Sequence[Callable[[str], str]] = TEMPLATES) -> dict:
    """Everything the embeddings depend on, as a JSON-able dict (its sha256 names the file)."""
    arch = model_identity(model_name)                              # a config file or inline config: its content
    text_params = (p for name, p in model.named_parameters() if not name.startswith("visual."))
    dtype = str(next(text_params, next(model.parameters())).dtype)   # a half-precision text tower gives other numbers
    # the activation is not in the weights: the same tag built with GELU instead of QuickGELU gives other numbers
    key = {"version": FORMAT_VERSION, "model": arch, "weights": weights_fingerprint(model, pretrained), "dtype": dtype,
           "activation": clip_activation(model), "queries": list(queries),
           "templates": [template("{}") for template in templates]}
    if len({query_key(query) for query in queries}) < len(queries):
        # A repeated query is now encoded once (text.py). An entry written before that holds its rows from two
        # batches, apart by rounding, so such a vocabulary gets a new key. Without a repeat the numbers are the
        # same as before: those entries stay valid and are not recomputed. (Names that only tokenize alike, such as
        # two cut at the same 77th token, are not seen here; no packaged vocabulary has any.)
        key["encoded_once"] = True
    return key


def _key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def load_entry(path: Path, key: dict) -> torch.Tensor | None:
    """The cached [Q, D] embeddings at `path` if they exist, are readable and were made from `key`."""
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        embeddings = entry["embeddings"]
        if entry["key"] != key or embeddings.ndim != 2 or embeddings.shape[0] != len(key["queries"]):
            raise ValueError("the entry was made for other inputs")
        return embeddings.float()
    except Exception as exc:  # truncated, corrupt or foreign file: recompute, never fail
        warnings.warn(f"Ignoring the unreadable text-embedding cache entry {path} ({exc!r}); recomputing it.")
        return None


def save_entry(path: Path, key: dict, embeddings: torch.Tensor) -> None:
    """Write atomically: another process never sees a half-written file. A read-only folder only warns."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save({"key": key, "embeddings": embeddings.detach().float().cpu()}, stream)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        warnings.warn(f"Could not write the text-embedding cache entry {path} ({exc}); continuing without it.")


def cached_encode_queries(model: nn.Module, tokenizer: Callable, queries: Sequence[str], model_name: str | dict,
                          pretrained: str | os.PathLike | None, cache_dir: str | os.PathLike | None = None,
                          templates: Sequence[Callable[[str], str]] = TEMPLATES) -> torch.Tensor:
    """`encode_queries(model, tokenizer, queries)` [Q, D], read from / written to the cache folder.

    cache_dir: the folder (default `default_cache_dir()`). Returns embeddings on the model's device.
    """
    device = next(model.parameters()).device
    key = cache_key(model, model_name, pretrained, queries, templates)
    path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = path / f"{_key_digest(key)}.pt"
    embeddings = load_entry(path, key)
    if embeddings is None:
        embeddings = encode_queries(model, tokenizer, queries, templates)  # chunked: large vocabularies fit
        save_entry(path, key, embeddings)
    return embeddings.to(device)
