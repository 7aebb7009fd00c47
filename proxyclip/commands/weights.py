"""`python -m proxyclip.weights list|download CONFIG`: what a model config's weights are, whether they are
cached, and fetching them ahead of time (to prepare a cluster that has no internet access).

`list` names each source (open_clip's Hugging Face repo and file or URL, timm's `hf_hub_id` / URL, SAM's
URL, a local file with its sha256) and says whether it is in the local cache; `download` fetches them by
building the models through `build_clip` / `build_vfm`, so the same code path (and `download_guard`'s
offline message) as an evaluation is used. The checkpoints a method loads beyond those two it declares itself
(`LastBlock.weights`, `MethodWeights`: a whole SAM, a SAM 2), and those it offers by name alone
(`LastBlock.named_weights`) may be given instead of a config (`list sam2_hiera_l`); this module names no method.
`weights_provenance` is what `eval_all` records in `run.json`.
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
import yaml
from huggingface_hub import constants as hub_constants, try_to_load_from_cache
from timm.models import get_pretrained_cfg

from ..config_files import model_config
from ..errors import ProxyCLIPError
from ..method.builder import segmentor_spec
from ..method.clip_encoder import build_clip
from ..method.last_block import LAST_BLOCKS
from ..method.last_block.method_weights import MethodWeights
from ..method.loading import WeightsUnavailable, file_sha256, is_local_path
from ..method.method_options import method_option_types, method_vfm
from ..method.segmentor import TrainingFreeSegmentor
from ..method.vfm import build_vfm
from ..method.vfm.registry import get_vfm_entry

_CLIP_KEY, _VFM_KEY = "model.segmentor.clip_pretrained", "model.segmentor.vfm_pretrained"


@dataclass
class WeightSource:
    """Where one component's weights come from; `kind` is random, file, hf-hub, url or unknown."""

    component: str                 # "CLIP", "VFM" or a method's own ("SAM", "SAM2": MethodWeights.component)
    key: str                       # the config key that chooses the weights
    value: Any                     # its value
    model: str                     # what is built, e.g. "ViT-B-16" or "dino_vitb8 (timm vit_base_patch8_224.dino)"
    kind: str
    location: str = ""             # hub repo, URL or file path
    files: tuple[str, ...] = ()    # hub file names, in the order the library tries them
    fallback: str = ""             # where the original file is also published (a URL)
    cached: str = ""               # the local copy, when there is one
    cache_dir: str = ""            # where the library keeps its downloads
    provenance: str = ""           # what run.json records: tag, URL, "sha256:..." or "random"
    declared: MethodWeights | None = None   # a method's own checkpoint: how to download it

    @property
    def present(self) -> bool:
        """Nothing needs downloading: random, an existing local file, or already cached."""
        return self.kind == "random" or bool(self.cached)


def load_model_spec(config: str | os.PathLike) -> dict[str, Any]:
    """The segmentor's arguments (defaults filled in) from a model YAML, a benchmark YAML that references
    one (`model: model/default.yaml`) or a resolved config; the file is read by `proxyclip.config_files`."""
    _, data = model_config(config)
    defaults = {name: p.default for name, p in inspect.signature(TrainingFreeSegmentor.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return with_method_vfm({**defaults, **{k: v for k, v in segmentor_spec(data).items() if k != "class_path"}})


def with_method_vfm(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` with the VFM its method builds: an unset `vfm` / `vfm_pretrained` are the method's defaults."""
    vfm, pretrained = method_vfm(str(spec.get("method") or "proxyclip"), spec.get("vfm"), spec.get("vfm_pretrained"))
    return {**spec, "vfm": vfm, "vfm_pretrained": pretrained}


def model_config_name(config: Any) -> str | None:
    """The model config file of a parsed CLI config, as `proxyclip-weights` takes it: as the user typed it (`--model X`),
    else its path (relative to the working folder where it lies below it); None when the model is not from a file."""
    path = getattr(getattr(config, "model", None), "__path__", None)
    if path is None:
        return None
    if Path(str(path.cwd)).resolve() == Path.cwd().resolve():
        return str(path.relative)
    absolute = Path(str(path.absolute))
    return str(absolute.relative_to(Path.cwd())) if absolute.is_relative_to(Path.cwd()) else str(absolute)


def _hub_cached(repo: str, files: tuple[str, ...]) -> str:
    repo, _, revision = repo.partition("@")  # timm writes a revision as repo@rev
    for name in files:
        found = try_to_load_from_cache(repo, name, revision=revision or None)
        if isinstance(found, str):
            return found
    return ""


def _safe_first(name: str, default_bin: str, default_safe: str) -> tuple[str, ...]:
    """The names the libraries try, in their order: the .safetensors twin first, then the file itself."""
    if not name:
        return default_safe, default_bin
    return ((name[:-4] + ".safetensors",) if name.endswith((".bin", ".pth")) else ()) + (name,)


def _local(component: str, key: str, value: Any, model: str) -> WeightSource:
    path = Path(str(value)).expanduser()
    exists = path.is_file()
    return WeightSource(component, key, value, model, "file", str(path), cached=str(path) if exists else "",
                        provenance=f"sha256:{file_sha256(path)}" if exists else f"missing file {path}")


def torch_hub_target(url: str) -> Path:
    """Where torch.hub keeps the download of `url` (`load_state_dict_from_url`'s cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def clip_source(spec: dict[str, Any]) -> WeightSource:
    """The CLIP weights of a segmentor spec (open_clip's pretrained config for a tag)."""
    name, tag = spec["clip_model"], spec["clip_pretrained"]
    model = "an inline model config" if isinstance(name, dict) else Path(name).stem if name.endswith(".json") else name
    if tag is None:
        return WeightSource("CLIP", _CLIP_KEY, tag, model, "random", provenance="random")
    if is_local_path(tag):
        return _local("CLIP", _CLIP_KEY, tag, model)
    cfg = open_clip.get_pretrained_cfg(model, tag) or {}
    source = WeightSource("CLIP", _CLIP_KEY, tag, model, "unknown", provenance=f"open_clip {model}/{tag}")
    if cfg.get("file"):
        source.kind, source.location = "file", cfg["file"]
        source.cached = cfg["file"] if Path(cfg["file"]).is_file() else ""
    elif cfg.get("hf_hub"):  # open_clip prefers the hub whenever huggingface_hub is installed (a dependency of timm)
        repo, filename = os.path.split(cfg["hf_hub"])
        source.kind, source.location, source.fallback = "hf-hub", repo, cfg.get("url", "")
        source.files = _safe_first(filename, "open_clip_pytorch_model.bin", "open_clip_model.safetensors")
        source.cached, source.cache_dir = _hub_cached(repo, source.files), str(hub_constants.HF_HUB_CACHE)
    elif cfg.get("url"):
        target = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])  # open_clip's URL cache
        source.kind, source.location, source.cached = "url", cfg["url"], str(target) if target.is_file() else ""
        source.cache_dir = str(target.parent)
    return source


def vfm_source(spec: dict[str, Any]) -> WeightSource:
    """The VFM weights of a segmentor spec (timm's pretrained config, or SAM's URL)."""
    name, pretrained = str(spec["vfm"]), spec["vfm_pretrained"]
    entry = get_vfm_entry(name)
    timm_name = entry.timm_name
    model = f"{name} (timm {timm_name})" if timm_name else name
    if not pretrained:
        return WeightSource("VFM", _VFM_KEY, pretrained, model, "random", provenance="random")
    if isinstance(pretrained, str):
        return _local("VFM", _VFM_KEY, pretrained, model)
    source = WeightSource("VFM", _VFM_KEY, pretrained, model, "unknown", provenance=name)
    if entry.weights_url:
        url = entry.weights_url
        target = torch_hub_target(url)
        source.kind, source.location, source.provenance = "url", url, url
        source.cached, source.cache_dir = str(target) if target.is_file() else "", str(target.parent)
    elif timm_name:
        cfg = get_pretrained_cfg(timm_name)
        source.provenance = f"timm {timm_name}"
        if cfg is not None and cfg.hf_hub_id:  # timm, like open_clip, prefers the hub to the URL
            source.kind, source.location, source.fallback = "hf-hub", cfg.hf_hub_id, cfg.url or ""
            source.files = _safe_first(cfg.hf_hub_filename or "", "pytorch_model.bin", "model.safetensors")
            source.cached, source.cache_dir = _hub_cached(cfg.hf_hub_id, source.files), str(hub_constants.HF_HUB_CACHE)
        elif cfg is not None and cfg.url:
            target = torch_hub_target(cfg.url)
            source.kind, source.location, source.cached = "url", cfg.url, str(target) if target.is_file() else ""
            source.cache_dir = str(target.parent)
    return source


def method_source(declared: MethodWeights) -> WeightSource:
    """A checkpoint a method declares (`LastBlock.weights`): its official URL into torch.hub's cache, a local file,
    random, or unknown where the method knows no such model."""
    component, key, checkpoint, model = declared.component, declared.key, declared.checkpoint, declared.model
    if declared.url is None:
        return WeightSource(component, key, checkpoint, model, "unknown", provenance=model, declared=declared)
    if not checkpoint:
        return WeightSource(component, key, checkpoint, model, "random", provenance="random", declared=declared)
    if isinstance(checkpoint, str):
        return _local(component, key, checkpoint, model)
    target = torch_hub_target(declared.url)
    return WeightSource(component, key, checkpoint, model, "url", declared.url,
                        cached=str(target) if target.is_file() else "", cache_dir=str(target.parent),
                        provenance=declared.url, declared=declared)


def method_options(spec: dict[str, Any]) -> dict[str, Any]:
    """The method's options of a segmentor spec: its `method_kwargs` over the defaults of its last block."""
    kwargs = spec.get("method_kwargs") or {}
    options = {name: default for name, (_, default) in method_option_types(str(spec.get("method"))).items()}
    return {**options, **(kwargs if isinstance(kwargs, dict) else {})}


def named_sources() -> dict[str, WeightSource]:
    """name -> the checkpoints every method offers by name alone (`LastBlock.named_weights`), e.g. sam2_hiera_l."""
    return {w.name: method_source(w) for block in LAST_BLOCKS.values() for w in block.named_weights() if w.name}


def weight_sources(spec: dict[str, Any]) -> list[WeightSource]:
    """CLIP's, the VFM's where the method builds one (`needs_vfm`), then those the method declares for its options
    (`LastBlock.weights`)."""
    method = str(spec.get("method") or "proxyclip")
    block = LAST_BLOCKS.get(method)
    spec = with_method_vfm(spec) if block is not None else spec
    uses_vfm = spec.get("vfm") is not None and (block is None or block.needs_vfm)
    declared = block.weights(method_options({**spec, "method": method})) if block is not None else []
    return [clip_source(spec), *([vfm_source(spec)] if uses_vfm else []), *map(method_source, declared)]


def weights_provenance(spec: dict[str, Any]) -> dict[str, str]:
    """Where each component's weights come from, as run.json records it: {"clip": ..., "vfm": ...} (no "vfm" for a
    method without one; a method's own checkpoints under their component lower-cased, e.g. "sam", "sam2"), each the
    tag / URL, the local file's sha256, or "random"."""
    return {s.component.lower(): s.provenance for s in weight_sources(spec)}


def describe(source: WeightSource) -> list[str]:
    """Human-readable lines for `list`."""
    head = f"{source.component} {source.model}: {source.key} = {yaml.safe_dump(source.value).splitlines()[0]}"
    if source.kind == "random":
        return [head, "  nothing to fetch (random initialisation)"]
    if source.kind == "file":
        status = f"exists, {source.provenance}" if source.cached else "MISSING: fix the path in the config"
        return [head, f"  local file: {source.location}", f"  status: {status}"]
    if source.kind == "hf-hub":
        where = f"Hugging Face hub {source.location}, file {' or '.join(source.files)}"
    elif source.kind == "url":
        where = source.location
    else:
        where = "unknown (the library gives no download source for it)"
    lines = [head, f"  source: {where}"] + ([f"  also published at: {source.fallback}"] if source.fallback else [])
    status = f"cached at {source.cached}" if source.cached else f"NOT CACHED (looked in {source.cache_dir or 'the library cache'})"
    return lines + [f"  status: {status}"]


def fetch(source: WeightSource, spec: dict[str, Any]) -> str:
    """Make `source` available locally; returns what was done, raises ProxyCLIPError when impossible."""
    if source.kind == "random":
        return "nothing to fetch (random initialisation)"
    if source.kind == "file":
        if not source.cached:
            raise ProxyCLIPError(f"{source.component} checkpoint file not found: '{source.location}'. Fix `{source.key}` in the config.")
        return f"local file {source.location} ({source.provenance})"
    if source.declared is not None:   # a method's own: built by the method, as a run builds it (download and check)
        source.declared.download()
        again = method_source(source.declared)
        return f"cached at {again.cached}" if again.cached else "loaded (through torch.hub's cache)"
    if source.component == "CLIP":  # building loads the weights exactly as an evaluation will, and checks them
        build_clip(spec["clip_model"], spec["clip_pretrained"], spec.get("clip_quick_gelu"))
    else:
        build_vfm(spec["vfm"], True, spec.get("vfm_kwargs"))
    again = clip_source(spec) if source.component == "CLIP" else vfm_source(spec)
    return f"cached at {again.cached}" if again.cached else "loaded (through the library's cache)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m proxyclip.weights`; returns the exit code."""
    named = named_sources()
    args = argument_parser(named).parse_args(argv)
    try:
        if args.config in named:
            spec, sources = {}, [named[args.config]]
        else:
            spec = load_model_spec(args.config)
            sources = weight_sources(spec)
    except ProxyCLIPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Weights for {args.config}:")
    return list_sources(sources, args.config) if args.command == "list" else download_sources(sources, spec, args.config)


def argument_parser(named: dict[str, Any]) -> argparse.ArgumentParser:
    """proxyclip-weights' two arguments; the checkpoints the methods name (`named`) are listed in the help."""
    parser = argparse.ArgumentParser(prog="proxyclip-weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["list", "download"], help="list: show sources and cache state; download: fetch them")
    groups: dict[str, list[str]] = {}
    for name, source in named.items():
        groups.setdefault(source.component, []).append(name)
    by_name = "".join(f", or by name a {component} checkpoint ({', '.join(names)})" for component, names in groups.items())
    parser.add_argument("config", help=f"a model config (configs/model/*.yaml), a benchmark config (configs/*.yaml){by_name}")
    return parser


def list_sources(sources: list[Any], config: str) -> int:
    """`list`: each source and whether it is here; exit code 1 when some are not."""
    for source in sources:
        print("\n".join(describe(source)))
    missing = [s for s in sources if not s.present]
    if missing:
        print(f"{len(missing)} of {len(sources)} not available locally: run `python -m proxyclip.weights download {config}` "
              "on a machine with internet access and copy ~/.cache/huggingface and ~/.cache/torch/hub/checkpoints here, "
              f"or set {' and '.join(s.key for s in missing)} to local checkpoint files.")
    return 1 if missing else 0


def download_sources(sources: list[Any], spec: dict[str, Any], config: str) -> int:
    """`download`: every source fetched (each failure reported, then exit code 1)."""
    failed = 0
    for source in sources:
        try:
            print(f"{source.component} {source.model}: {fetch(source, spec)}")
        except WeightsUnavailable as exc:   # says how to prepare this very config elsewhere
            failed += 1
            print(f"{source.component} {source.model}: FAILED: {exc.naming(config)}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - report every component, then fail
            failed += 1
            print(f"{source.component} {source.model}: FAILED: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
