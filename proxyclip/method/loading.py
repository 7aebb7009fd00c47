"""Loading weights: local checkpoint files, key checks, and a clear error when a download is impossible."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import logging
import os
import re
import socket
import urllib.error
import warnings
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple

import torch
from torch import nn

from ..errors import ProxyCLIPError

EXAMPLE_CONFIG = "configs/model/default.yaml"   # named where the config of the run is not known (the library)
# The way forward without any weights at all (every shipped preset is downloaded weights; these are not).
TRY_WITHOUT_WEIGHTS = ("To try the pipeline without any weights: `python main.py predict --config configs/demo.yaml "
                       "--model configs/model/tiny_random.yaml` (tiny random models, ProxyCLIP's; "
                       "configs/model/tiny_<method>.yaml for the other methods) runs end to end, but its labels are "
                       "meaningless.")


class Remedy(NamedTuple):
    """How to get one kind of weights onto a machine without network: the paragraph's parts that differ by kind."""

    example: str    # what `<command> download` is given where the run's config is not known
    command: str    # the weights command, as the user of this kind runs it
    caches: str     # the caches that `download` fills, to copy
    local: str      # how to give the weights as local files instead
    extra: str = ""  # a last sentence (another way forward), or ""


#: CLIP and the VFMs of a model config (the library's default kind)
MODEL_WEIGHTS = Remedy(
    EXAMPLE_CONFIG, "python -m proxyclip.weights", "~/.cache/huggingface, ~/.cache/torch/hub/checkpoints",
    "point the config at local checkpoint files: `model.segmentor.clip_pretrained: /path/to/open_clip_model.bin` for "
    "CLIP, `model.segmentor.vfm_pretrained: /path/to/vfm.pth` for the VFM (on the command line: "
    "`--model.segmentor.clip_pretrained /path/to/open_clip_model.bin`)", TRY_WITHOUT_WEIGHTS)


def network_hint(config: str | None = None, remedy: Remedy = MODEL_WEIGHTS) -> str:
    """How to get weights onto a machine without network, for the model config `config` (else the remedy's example)."""
    named = config or remedy.example
    which = "" if config or not remedy.example.endswith(".yaml") else " (or the model config you use)"
    return ("No network is reachable (or HF_HUB_OFFLINE=1 is set) and the weights are not in the local cache. "
            "(On a machine without internet, set HF_HUB_OFFLINE=1 so that cached weights load without waiting for the "
            f"network.) On a machine with internet access run `{remedy.command} download {named}`{which} and "
            f"copy its caches ({remedy.caches}) to this machine (`{remedy.command} list {named}` shows what it needs "
            f"and what is cached), or {remedy.local}." + (f" {remedy.extra}" if remedy.extra else ""))


class WeightsUnavailable(ProxyCLIPError):
    """Pretrained weights could not be fetched: no network (or HF_HUB_OFFLINE=1) and nothing cached. `config` is the
    model config of the run where the caller knows it; `naming(config)` gives the same error for another. `remedy`:
    how to get this kind of weights (MODEL_WEIGHTS: CLIP's and the VFM's; SAM 2's is sam2_masks.sam2_remedy)."""

    def __init__(self, what: str, config: str | None = None, remedy: Remedy = MODEL_WEIGHTS) -> None:
        self.what, self.config, self.remedy = what, config, remedy
        super().__init__(f"Cannot fetch the pretrained weights of {what}. {network_hint(config, remedy)}")

    def naming(self, config: str | os.PathLike) -> "WeightsUnavailable":
        return WeightsUnavailable(self.what, str(config), self.remedy)


def is_local_path(value: object) -> bool:
    """True when `value` looks like a file path rather than a library's pretrained tag."""
    return isinstance(value, (str, os.PathLike)) and (
        os.sep in str(value) or str(value).endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))
    )


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, computed once per process and file version (path, size, mtime): checkpoints are gigabytes."""
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    return _sha256(str(resolved), stat.st_size, stat.st_mtime_ns)


def load_state_dict_file(path: str | os.PathLike, prefix: str = "") -> dict[str, torch.Tensor]:
    """Read a checkpoint (`.safetensors` or a torch file, loaded with `weights_only=True`).

    Unwraps the usual containers (`state_dict`, `model`, `module`) and keeps only keys under `prefix`
    (stripped), e.g. `prefix="image_encoder."` for a full SAM checkpoint.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ProxyCLIPError(f"Checkpoint file not found: '{path}'. Check the path in your config (absolute, or relative to the working directory).")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code objects, ...
        raise ProxyCLIPError(
            f"Could not read checkpoint '{path}': {exc}. It must be a PyTorch state dict readable with "
            "torch.load(weights_only=True) or a .safetensors file."
        ) from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ProxyCLIPError(f"Checkpoint '{path}' holds a {type(state).__name__}, not a state dict of tensors.")
    if prefix and any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def _summarise(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def load_state_dict_checked(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, what: str) -> None:
    """`module.load_state_dict(state, strict=True)`, refusing a checkpoint that does not fit with a summary."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {_summarise(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_summarise(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches (checkpoint vs model): {_summarise(mismatched)}")
        raise ProxyCLIPError(
            f"Checkpoint '{source}' does not fit the {what} architecture: " + "; ".join(parts) + ". "
            "Choose the model name that matches the checkpoint (or the checkpoint that matches the model)."
        )
    module.load_state_dict(state, strict=True)


def _network_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the weights could not be fetched": no connection, or offline mode (the
    user's HF_HUB_OFFLINE=1) with nothing in the cache. Each library's own types; those not installed are skipped."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError, socket.gaierror, urllib.error.URLError]
    for module, names in (("huggingface_hub.errors", ("LocalEntryNotFoundError", "OfflineModeIsEnabled")),
                          ("httpx", ("TransportError",)), ("requests.exceptions", ("ConnectionError", "Timeout")),
                          ("urllib3.exceptions", ("HTTPError",))):
        try:
            imported = importlib.import_module(module)
        except ImportError:
            continue
        found += [getattr(imported, name) for name in names if hasattr(imported, name)]
    return tuple(found)


def _is_network_error(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from or while handling, is a network failure
    (open_clip re-raises download failures as RuntimeError, keeping the original as the context)."""
    errors, seen = _network_errors(), set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, errors):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def download_guard(what: str, remedy: Remedy = MODEL_WEIGHTS) -> Iterator[None]:
    """Fetch (or read from cache) the weights of `what`; a failure for want of network becomes a
    WeightsUnavailable that says how to get them (`remedy`). The user's HF_HUB_OFFLINE setting is the libraries' own."""
    try:
        yield
    except ProxyCLIPError:
        raise
    except Exception as exc:
        if _is_network_error(exc):
            raise WeightsUnavailable(what, remedy=remedy) from exc
        raise


def _library_message(exc: BaseException, limit: int = 400) -> str:
    """The library's error on one line (torch lists every missing key on lines of its own), cut at `limit`."""
    text = " ".join(str(exc).split()).rstrip(" .")
    return text if len(text) <= limit else text[:limit - 3] + "..."


# What open_clip and timm say (as warnings or log records) when weights and architecture may disagree, or when no
# weights were loaded although some were asked for. The libraries' own strict loads (open_clip's load_checkpoint,
# timm's load_pretrained, torch's load_state_dict) make the real disagreements raise; these words are only a second look,
# for a path a library loads non-strictly (e.g. timm adapting a classifier), and their wording may change.
_DISAGREEMENT = re.compile(r"mismatch|no pretrained|initiali[sz]ed (randomly|partially)|random init|missing keys|"
                           r"unexpected keys|cannot load weights|could not find/download|no clip weights|"
                           r"using a default|invalid file path", re.IGNORECASE)
_RANDOM_INIT = re.compile(r"no pretrained weights loaded|initiali[sz]ed randomly", re.IGNORECASE)


class WeightsDisagreementWarning(UserWarning):
    """A dependency said, in its own words, that weights and architecture may disagree, and loaded them anyway."""


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def weights_must_match(what: str, fix: str, random_init: bool = False, loads: bool = True) -> Iterator[None]:
    """Run a dependency's strict loading of weights (open_clip's `load_checkpoint(strict=True)`, timm's
    `load_pretrained(strict=True)`): the error it raises when weights and architecture disagree becomes a
    ProxyCLIPError naming `what` and the `fix`. `loads=False` for a block that only builds an architecture: what it
    raises is the architecture's own error, passed on unchanged (only its messages are judged).

    A network failure is passed on unchanged (`download_guard` explains it). What the libraries only say, as a
    warning or a log line, about weights that may not fit is passed on as one WeightsDisagreementWarning: their
    wording is no contract, so it never fails a run. `random_init`: random weights were asked for, so
    "initialised randomly" is expected and dropped. Other messages are passed on unchanged; when the block fails,
    its messages are dropped (the error explains the failure; open_clip's own "ERROR: failed to download" line
    before it is noise).
    """
    collect = _Collect()
    root = logging.getLogger()
    saved, root.handlers = root.handlers, [collect]   # held back from the usual handlers until judged below
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    except ProxyCLIPError:
        raise
    except (RuntimeError, AssertionError) as exc:
        # RuntimeError: torch's strict load_state_dict; AssertionError: open_clip's position-table resizing of a
        # checkpoint of another width
        if not loads or _is_network_error(exc):
            raise
        raise ProxyCLIPError(f"The weights of {what} were refused by the library that loads them: "
                             f"{_library_message(exc)}. Loaded anyway, every number would be off. {fix}") from exc
    finally:
        root.handlers = saved
    messages = [(str(w.message), w) for w in caught] + [(r.getMessage(), r) for r in collect.records]
    messages = [(text, item) for text, item in messages if not (random_init and _RANDOM_INIT.search(text))]
    disagreements = [text for text, _ in messages if _DISAGREEMENT.search(text)]
    if disagreements:
        warnings.warn(f"The weights and the architecture of {what} may disagree, in the words of the library that "
                      "loaded them: " + " / ".join(disagreements) + f" If they do, every number is off. {fix}",
                      WeightsDisagreementWarning, stacklevel=3)
    for text, item in messages:
        if text in disagreements:
            continue
        if isinstance(item, logging.LogRecord):
            logging.getLogger(item.name).handle(item)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
