"""Each method's own per-benchmark values (configs/<method>/<benchmark>.yaml), added to a run that asks for the method.

A benchmark config (configs/voc21.yaml) carries ProxyCLIP's protocol. Every other method (`LAST_BLOCKS`) runs
the same benchmark with its own vocabulary, resize, crops and thresholds, which its repository sets per benchmark:

    proxyclip test --config configs/voc21.yaml --model configs/model/sclip_vitb16.yaml
    == ... --model configs/model/sclip_vitb16.yaml --config configs/sclip/voc21.yaml

The method and the benchmark are read from the parsed configuration, so every spelling counts the same
(`--model.segmentor.method sclip`, `--model.segmentor.init_args.method`, inline YAML, a model file, a whole config).
The method's file goes right after the last argument that changed either, so that later command-line values still
win; the run's config records it as `method_protocol`, and a config that records it (a saved config.yaml) already
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
from .command_line import Argument, CommandLine, get, spellings
from .common_protocol import COMMON, PROTOCOL, common_file, common_tokens, refuse_protocol
from ..shipped_configs import find_config, packaged_configs

DEFAULT_METHOD = "proxyclip"
RECORD = "method_protocol"   # the run's config key that records the file added
RECORD_HELP = ("Set by the CLI, not by hand: the protocol file it added (configs/<method>/<benchmark>.yaml, for every "
               "method but ProxyCLIP; under --protocol common configs/common/<benchmark>.yaml, for every method), "
               "recorded so that a saved config runs again as it ran (a config that records the file already holds its "
               "values).")
# the arguments that can change the parsed method or benchmark; any other leaves both as they were
CHOOSERS = spellings("model.segmentor.init_args.method") | spellings("data.class_path")


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
        shown = packaged_configs() / path.parent.parent.name / path.name
        if shown.is_file() and shown.resolve() == path.resolve():
            return Path("configs", path.parent.parent.name, path.name).as_posix()
        return str(path)
    return Path("configs", path.parent.name, path.name).as_posix()


def method_and_benchmark(config: Any) -> tuple[str, str | None]:
    """(method, benchmark name or None) of a subcommand's parsed configuration."""
    method = get(config, "model.segmentor.init_args.method") or DEFAULT_METHOD
    class_path = get(config, "data.class_path")
    names = [name for name, cls in DATAMODULES.items() if class_path in (cls.__name__, f"datamodules.{cls.__name__}",
                                                                          f"{cls.__module__}.{cls.__name__}")]
    return str(method), names[0] if names else None


def _same(given: Any, own: Path) -> bool:
    return given is not None and find_config(str(given)).resolve() == own.resolve()


def _last_chooser(line: CommandLine, final: tuple[str, str | None]) -> Argument | None:
    """The last argument that changed the parsed (method, benchmark); None when the defaults chose them."""
    for argument in reversed([a for a in line.arguments if a.key in CHOOSERS]):
        before = line.before(argument.start)
        if before is None or method_and_benchmark(before) != final:
            return argument
    return None


def add_method_protocol(line: CommandLine, config: Any) -> tuple[CommandLine, str | None, str | None]:
    """(the command line with the method's protocol file added where it belongs, the value `method_protocol` must
    record, the one line to print), for the parsed `config` of `line`'s subcommand."""
    method, benchmark = method_and_benchmark(config)
    refuse_protocol(line, config, benchmark, get(config, RECORD))
    common = get(config, PROTOCOL) == COMMON
    if line.subcommand != "test" or (method == DEFAULT_METHOD and not common):
        return line, None, None
    own = common_file(benchmark) if common else method_protocol(method, benchmark)
    if own is None:
        what = f"no {benchmark} protocol" if benchmark else f"no protocol for {get(config, 'data.class_path')}"
        return line, None, (f"note: {method} defines {what}; the data config's values (for a benchmark, ProxyCLIP's crop, "
                            "stride, vocabulary and thresholds) are used.")
    note = (f"the common {benchmark} protocol for {method}" if common else f"{method}'s own {benchmark} values") + \
        f": --config {own}"
    chooser = _last_chooser(line, (method, benchmark))
    at = chooser.end if chooser is not None else line.subcommand_at + 1
    # a whole config that records the file (a run's saved config.yaml) and chose the method itself holds its values
    recorded = chooser is not None and chooser.is_file and _same(get(line.before(chooser.end), RECORD), own) \
        and not _same(get(line.before(chooser.start), RECORD), own)
    if recorded:
        return line, protocol_name(own), note
    return line.inserted(at, ["--config", str(own), *(common_tokens(method) if common else [])]), \
        protocol_name(own), note


def refuse_record_by_hand(line: CommandLine, record: str | None) -> None:
    """A `--method_protocol` flag that says other than `record`, the file the CLI added for this run's method and
    benchmark, is refused: it would be replaced (a config file that records it, a saved config.yaml, is read as such)."""
    for argument in line.arguments:
        if argument.key in spellings(RECORD) and not argument.is_file:
            given = get(line.before(argument.end), RECORD)
            if given != record:
                raise ProxyCLIPError(
                    f"{line.text(argument)}: --{RECORD} is set by the CLI, not by hand; it records the method's own "
                    f"benchmark values that the CLI adds (configs/<method>/<benchmark>.yaml), and this run's is "
                    f"{record or 'none'}. Leave it out; to run other values, give them after the configs (e.g. "
                    f"--data.init_args.prob_thd 0.3) or in a config file of your own (--config FILE).")
