"""Each method's own per-benchmark values (configs/<method>/<benchmark>.yaml), added to a run that asks for the method.

A benchmark config (configs/voc21.yaml) carries ProxyCLIP's protocol. Every other method (`LAST_BLOCKS`) runs
the same benchmark with its own vocabulary, resize, crops and thresholds, which its repository sets per benchmark:

    proxyclip test --config configs/voc21.yaml --model configs/model/sclip_vitb16.yaml
    == ... --model configs/model/sclip_vitb16.yaml --config configs/sclip/voc21.yaml

The method and the benchmark are read from the parse of the command without the file, so every spelling counts the
same (`--model.segmentor.method sclip`, `--model.segmentor.init_args.method`, inline YAML, a model file, a whole
config). The method's file goes right after the last config argument (layers.py: the one order of precedence), so
the command-line values after the configs still win; the run's config records it as `method_protocol`, and a config that records it (a saved config.yaml) already
holds its values: it is not added twice. `--method_protocol` given by hand with another value is refused: the CLI
would replace it. Under `--protocol common` the file added is configs/common/<benchmark>.yaml, for every method
(common_protocol.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from datamodules import DATAMODULES

from ..errors import ProxyCLIPError
from ..method.last_block import LAST_BLOCKS, method_folder
from .command_line import get
from .common_protocol import COMMON, PROTOCOL, common_file, common_tokens, refuse_protocol
from .layers import LayeredLine
from ..shipped_configs import find_config, shown_name

DEFAULT_METHOD = "proxyclip"
RECORD = "method_protocol"   # the run's config key that records the file added
RECORD_HELP = ("Set by the CLI, not by hand: the protocol file it added (configs/<method>/<benchmark>.yaml, for every "
               "method but ProxyCLIP; under --protocol common configs/common/<benchmark>.yaml, for every method), "
               "recorded so that a saved config runs again as it ran (a config that records the file already holds its "
               "values).")
METHOD = "model.segmentor.init_args.method"


def method_protocol(method: str, benchmark: str | None) -> Path | None:
    """The method's own values for `benchmark`; None for ProxyCLIP (the benchmark config is its protocol) and for a
    benchmark the method's repository does not evaluate."""
    if method == DEFAULT_METHOD or benchmark is None:
        return None
    if method not in LAST_BLOCKS:
        return None
    own = method_folder(method) / "protocol" / f"{benchmark}.yaml"
    return own if own.is_file() else None


def protocol_name(path: Path) -> str:
    """The README name of a protocol file (configs/sclip/voc21.yaml, the shipped methods' protocol/ folders as the
    configs show them), found from any folder; another method's file by its path."""
    if path.parent.name == "protocol":
        return shown_name(path, Path("configs", path.parent.parent.name, path.name).as_posix())
    return Path("configs", path.parent.name, path.name).as_posix()


def benchmark_of(class_path: Any) -> str | None:
    """The benchmark whose DataModule `class_path` names, None for another dataset."""
    names = [name for name, cls in DATAMODULES.items() if class_path in (cls.__name__, f"datamodules.{cls.__name__}",
                                                                          f"{cls.__module__}.{cls.__name__}")]
    return names[0] if names else None


def method_and_benchmark(config: Any) -> tuple[str, str | None]:
    """(method, benchmark name or None) of a subcommand's parsed configuration."""
    return str(get(config, METHOD) or DEFAULT_METHOD), benchmark_of(get(config, "data.class_path"))


def _same(given: Any, own: Path) -> bool:
    return given is not None and find_config(str(given)).resolve() == own.resolve()


def _recorded(line: LayeredLine, own: Path, chosen: tuple[str, str | None]) -> bool:
    """Whether a config file records `own` (a run's saved config.yaml) and holds its values: no argument after it
    chose another method or benchmark (which would have replaced some of them)."""
    layers = line.layers
    records = [i for i, layer in enumerate(layers) if layer.is_file and layer.sets(RECORD)]
    if not records or not _same(layers[records[-1]].get(RECORD), own):
        return False
    method, benchmark = chosen
    for layer in layers[records[-1] + 1:]:
        if layer.sets(METHOD) and str(layer.get(METHOD) or DEFAULT_METHOD) != method:
            return False
        if layer.sets("data.class_path") and benchmark_of(layer.get("data.class_path")) != benchmark:
            return False
    return True


def add_method_protocol(line: LayeredLine, config: Any) -> tuple[list[str], str | None, str | None]:
    """(the protocol layers to add after the config files: `--config <the method's protocol file>`, under `common` its
    post-processing off; the value `method_protocol` must record; the one line to print), for `config`, the parse of
    `line` without them."""
    method, benchmark = method_and_benchmark(config)
    refuse_protocol(line.subcommand, config, benchmark, get(config, RECORD))
    common = get(config, PROTOCOL) == COMMON
    if line.subcommand != "test" or (method == DEFAULT_METHOD and not common):
        return [], None, None
    own = common_file(benchmark) if common else method_protocol(method, benchmark)
    if own is None:
        what = f"no {benchmark} protocol" if benchmark else f"no protocol for {get(config, 'data.class_path')}"
        return [], None, (f"note: {method} defines {what}; the data config's values (for a benchmark, ProxyCLIP's crop, "
                          "stride, vocabulary and thresholds) are used.")
    note = (f"the common {benchmark} protocol for {method}" if common else f"{method}'s own {benchmark} values") + \
        f": --config {own}"
    if _recorded(line, own, (method, benchmark)):      # a saved config.yaml already holds the file's values
        return [], protocol_name(own), note
    return ["--config", str(own), *(common_tokens(method) if common else [])], protocol_name(own), note


def refuse_record_by_hand(line: LayeredLine, record: str | None) -> None:
    """A `--method_protocol` flag that says other than `record`, the file the CLI added for this run's method and
    benchmark, is refused: it would be replaced (a config file that records it, a saved config.yaml, is read as such)."""
    for layer in line.layers:
        if not layer.is_file and layer.sets(RECORD) and layer.get(RECORD) != record:
            raise ProxyCLIPError(
                f"{layer.text}: --{RECORD} is set by the CLI, not by hand; it records the method's own "
                f"benchmark values that the CLI adds (configs/<method>/<benchmark>.yaml), and this run's is "
                f"{record or 'none'}. Leave it out; to run other values, give them after the configs (e.g. "
                f"--data.init_args.prob_thd 0.3) or in a config file of your own (--config FILE).")
