"""`python -m proxyclip.weights list|download CONFIG`: what a model config's weights are, whether they are
cached, and fetching them ahead of time (to prepare a cluster that has no internet access).

`list` names each source (open_clip's Hugging Face repo and file or URL, timm's `hf_hub_id` / URL, SAM's
URL, a local file with its sha256) and says whether it is in the local cache; `download` fetches them by
building the models through `build_clip` / `build_vfm`, so the same code path (and `download_guard`'s
offline message) as an evaluation is used. A SAM 2 model name instead of a config (`list sam2_hiera_l`) does the
same for the SAM 2 checkpoint of CorrCLIP's region masks (`proxyclip-masks`, proxyclip/method/sam2_masks.py).
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
from ..method.loading import WeightsUnavailable, file_sha256, is_local_path
from ..method.method_options import method_option_types, method_vfm
from proxyclip.methods.corrclip.sam2_masks import DEFAULT_SAM2, SAM2_MODELS
from ..method.segmentor import TrainingFreeSegmentor
from ..method.vfm import build_vfm
from proxyclip.methods.trident.sam import build_sam
from ..method.vfm.registry import get_vfm_entry
from ..method.vfm.sam import SAM as SAM_VARIANTS

_CLIP_KEY, _VFM_KEY = "model.segmentor.clip_pretrained", "model.segmentor.vfm_pretrained"
_SAM_KEY = "model.segmentor.method_kwargs.sam_checkpoint"   # Trident's whole SAM


@dataclass
class WeightSource:
    """Where one component's weights come from; `kind` is random, file, hf-hub, url or unknown."""

    component: str                 # "CLIP", "VFM" or "SAM" (Trident's)
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
        target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)  # torch.hub's cache
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
            target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
            source.kind, source.location, source.cached = "url", cfg.url, str(target) if target.is_file() else ""
            source.cache_dir = str(target.parent)
    return source


def sam_options(spec: dict[str, Any]) -> tuple[str, Any] | None:
    """(variant, sam_checkpoint) of Trident's SAM, its defaults filled in; None for the other methods."""
    if str(spec.get("method")) != "trident":
        return None
    options = {name: default for name, (_, default) in method_option_types("trident").items()}
    options.update(spec.get("method_kwargs") or {})
    return str(options["sam"]), options["sam_checkpoint"]


def sam_source(spec: dict[str, Any]) -> WeightSource | None:
    """Trident's whole SAM (method_kwargs sam, sam_checkpoint): Meta's checkpoint URL, a local file or random."""
    found = sam_options(spec)
    if found is None:
        return None
    variant, checkpoint = found
    model = f"SAM {variant} (segment-anything: encoder, prompt encoder, mask decoder)"
    if not checkpoint:
        return WeightSource("SAM", _SAM_KEY, checkpoint, model, "random", provenance="random")
    if isinstance(checkpoint, str):
        return _local("SAM", _SAM_KEY, checkpoint, model)
    url = SAM_VARIANTS.variants[variant].url
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)  # torch.hub's cache
    return WeightSource("SAM", _SAM_KEY, checkpoint, model, "url", url, cached=str(target) if target.is_file() else "",
                        cache_dir=str(target.parent), provenance=url)


def sam2_source(name: str, checkpoint: bool | str | None = True, key: str = "proxyclip-masks --checkpoint") -> WeightSource:
    """The checkpoint of the SAM 2 model `name` (sam2_hiera_l, ...): Meta's URL into torch.hub's cache, as
    SAM2MaskGenerator loads it; a local file; or random."""
    model = f"{name} ({SAM2_MODELS[name].size})"
    if not checkpoint:
        return WeightSource("SAM2", key, checkpoint, model, "random", provenance="random")
    if isinstance(checkpoint, str):
        return _local("SAM2", key, checkpoint, model)
    url = SAM2_MODELS[name].url
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)  # torch.hub's cache
    return WeightSource("SAM2", key, checkpoint, model, "url", url, cached=str(target) if target.is_file() else "",
                        cache_dir=str(target.parent), provenance=url)


def method_sam2_sources(spec: dict[str, Any]) -> list[WeightSource]:
    """The SAM 2 checkpoint of a method that runs SAM 2 on each image itself: `method_kwargs` with `mask_generator:
    sam2`, `sam2_model` (default sam2_hiera_l) and `sam2_checkpoint` (null: Meta's), as CorrCLIP's; [] otherwise."""
    kwargs = spec.get("method_kwargs") or {}
    if not isinstance(kwargs, dict) or kwargs.get("mask_generator") != "sam2":
        return []
    name = str(kwargs.get("sam2_model") or DEFAULT_SAM2)
    key = "model.segmentor.method_kwargs.sam2_checkpoint"
    if name not in SAM2_MODELS:
        return [WeightSource("SAM2", key, kwargs.get("sam2_checkpoint"), name, "unknown", provenance=name)]
    return [sam2_source(name, kwargs.get("sam2_checkpoint", True), key)]


def weight_sources(spec: dict[str, Any]) -> list[WeightSource]:
    """CLIP's, the VFM's where the method builds one (ProxyCLIP, CASS, Trident and CorrCLIP; the others build
    none), Trident's SAM, and SAM 2's where the method runs it (`method_sam2_sources`)."""
    block = LAST_BLOCKS.get(str(spec.get("method") or "proxyclip"))
    spec = with_method_vfm(spec) if block is not None else spec
    uses_vfm = spec.get("vfm") is not None and (block is None or block.needs_vfm)
    sam = sam_source(spec)
    return [clip_source(spec), *([vfm_source(spec)] if uses_vfm else []), *([sam] if sam is not None else []),
            *method_sam2_sources(spec)]


def weights_provenance(spec: dict[str, Any]) -> dict[str, str]:
    """Where each component's weights come from, as run.json records it: {"clip": ..., "vfm": ...} (no "vfm" for a
    method without one; "sam" for Trident's SAM; "sam2" for one that runs SAM 2), each the tag / URL, the local
    file's sha256, or "random"."""
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
    if source.component == "CLIP":  # building loads the weights exactly as an evaluation will, and checks them
        build_clip(spec["clip_model"], spec["clip_pretrained"], spec.get("clip_quick_gelu"))
    elif source.component == "SAM":
        build_sam(*sam_options(spec))
    elif source.component == "SAM2":
        from proxyclip.methods.corrclip.sam2_masks import SAM2MaskGenerator

        name = source.model.split(" ")[0]
        SAM2MaskGenerator(name, True)
        again = sam2_source(name)
        return f"cached at {again.cached}" if again.cached else "loaded (through torch.hub's cache)"
    else:
        build_vfm(spec["vfm"], True, spec.get("vfm_kwargs"))
    again = {"CLIP": clip_source, "SAM": sam_source}.get(source.component, vfm_source)(spec)
    return f"cached at {again.cached}" if again.cached else "loaded (through the library's cache)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m proxyclip.weights`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="proxyclip-weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["list", "download"], help="list: show sources and cache state; download: fetch them")
    parser.add_argument("config", help="a model config (configs/model/*.yaml), a benchmark config (configs/*.yaml), or "
                                       f"a SAM 2 model for region masks ({', '.join(SAM2_MODELS)})")
    args = parser.parse_args(argv)
    try:
        if args.config in SAM2_MODELS:
            spec, sources = {}, [sam2_source(args.config)]
        else:
            spec = load_model_spec(args.config)
            sources = weight_sources(spec)
    except ProxyCLIPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Weights for {args.config}:")
    if args.command == "list":
        for source in sources:
            print("\n".join(describe(source)))
        missing = [s for s in sources if not s.present]
        if missing:
            print(f"{len(missing)} of {len(sources)} not available locally: run `python -m proxyclip.weights download {args.config}` "
                  "on a machine with internet access and copy ~/.cache/huggingface and ~/.cache/torch/hub/checkpoints here, "
                  f"or set {' and '.join(s.key for s in missing)} to local checkpoint files.")
        return 1 if missing else 0
    failed = 0
    for source in sources:
        try:
            print(f"{source.component} {source.model}: {fetch(source, spec)}")
        except WeightsUnavailable as exc:   # says how to prepare this very config elsewhere
            failed += 1
            print(f"{source.component} {source.model}: FAILED: {exc.naming(args.config)}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - report every component, then fail
            failed += 1
            print(f"{source.component} {source.model}: FAILED: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
