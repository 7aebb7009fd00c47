"""`--protocol common`: one protocol for every method, stated in one file per benchmark (configs/common/<benchmark>.yaml).

`--protocol original` (the default) runs each method with its own per-benchmark values (protocols.py). Under
`common` the CLI adds configs/common/<benchmark>.yaml for every method, ProxyCLIP included, where the original
protocol would add the method's own file, and then the method's options with its own post-processing switched off
(its last block's `post_processing_off`, e.g. Trident's SAM refinement), as one inline value that the CLI merges over
the method's options key by key (merged_options.py). Both come after the config files and before the command-line
values (layers.py), so command-line values still win. What a method keeps because it cannot run
without it is its `common_exceptions` (CorrCLIP's vote), listed in metrics.json. The run's config records the protocol
(`protocol`) and the file (`method_protocol`), so a saved config.yaml runs again as it ran.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ProxyCLIPError
from ..method.last_block import LAST_BLOCKS
from ..shipped_configs import packaged_configs
from .command_line import get, option

PROTOCOL = "protocol"                 # the run's config key: which protocol runs
PROTOCOLS = ("original", "common")
COMMON = "common"
PROTOCOL_HELP = ("original: each method's own per-benchmark values (configs/<method>/<benchmark>.yaml; ProxyCLIP's are "
                 "the benchmark config's). common: one protocol for every method (configs/common/<benchmark>.yaml: the "
                 "benchmark's standard vocabulary, one resize, one window, one prob_thd; the methods' own "
                 "post-processing off, exceptions listed in metrics.json; docs/protocols.md). `test` only.")
KWARGS = "model.segmentor.init_args.method_kwargs"


def common_file(benchmark: str | None) -> Path | None:
    """configs/common/<benchmark>.yaml, None for a dataset that is not one of the benchmarks."""
    path = packaged_configs() / COMMON / f"{benchmark}.yaml"
    return path if benchmark is not None and path.is_file() else None


def common_benchmarks() -> list[str]:
    return sorted(p.stem for p in (packaged_configs() / COMMON).glob("*.yaml"))


def refuse_protocol(subcommand: str | None, config: Any, benchmark: str | None, recorded: str | None) -> None:
    """`--protocol common` where it has no meaning: `predict` (your own images and vocabulary: no benchmark protocol),
    or a dataset that is not one of the benchmarks (no common file states its values); and a saved config of one
    protocol's run (`recorded`: its method_protocol) run under the other, whose values it already holds."""
    common = get(config, PROTOCOL) == COMMON
    if recorded and (Path(recorded).parent.name == COMMON) != common:
        ran = "common" if not common else "original"
        raise ProxyCLIPError(
            f"--protocol {get(config, PROTOCOL)}: this config records a run of the {ran} protocol (method_protocol: "
            f"{recorded}) and holds that protocol's values, which the other protocol's would only partly replace. Run "
            f"it with --protocol {ran}, or start from the benchmark config (--config configs/<benchmark>.yaml "
            f"--model ...) to run the {get(config, PROTOCOL)} protocol.")
    if not common:
        return
    if subcommand == "predict":
        raise ProxyCLIPError(
            "--protocol common is for `test` on a benchmark: `predict` segments your own images with your own "
            "vocabulary, window and thresholds, which no protocol fixes. Leave --protocol out (predict runs what its "
            "config and flags say), or evaluate a benchmark with `proxyclip test --protocol common`.")
    if common_file(benchmark) is None:
        raise ProxyCLIPError(no_common_protocol(benchmark or get(config, "data.class_path")))


def no_common_protocol(dataset: str, asked: str = COMMON) -> str:
    """The refusal of `--protocol <asked>` for a dataset that is not one of the benchmarks (`test`'s and eval_all's)."""
    return (f"--protocol {asked}: there is no common protocol for {dataset}; configs/common/ states one for each "
            f"benchmark ({', '.join(common_benchmarks())}). Evaluate one of them, or run your own dataset with "
            f"--protocol original (its config's values, as given).")


def common_tokens(method: str) -> list[str]:
    """The method's own post-processing off, as one inline value merged over its options (empty when it has none)."""
    off = LAST_BLOCKS.lookup(method).post_processing_off
    return [option(KWARGS, dict(off))] if off else []


def exceptions(method: str) -> dict[str, str]:
    """What the method keeps under the common protocol, {step: why}."""
    return dict(LAST_BLOCKS.lookup(method).common_exceptions)
