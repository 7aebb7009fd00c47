"""Each method's own per-benchmark values (configs/<method>/<benchmark>.yaml), added to a run that asks for the method.

A benchmark config (configs/voc21.yaml) carries ProxyCLIP's protocol. Another method (SCLIP, ClearCLIP, NACLIP) runs
the same benchmark with its own vocabulary, resize, crops and thresholds, which its repository sets per benchmark:

    python main.py test --config configs/voc21.yaml --model configs/model/sclip_vitb16.yaml
    == ... --model configs/model/sclip_vitb16.yaml --config configs/sclip/voc21.yaml

The method's file goes right after the model and the benchmark's config, so that later command-line values still win.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from datamodules import DATAMODULES

from .configs import config_section, find_config, packaged_configs
from .weights import load_model_spec

DEFAULT_METHOD = "proxyclip"
_METHOD_FLAG = "--model.segmentor.init_args.method"


def method_protocol(method: str, benchmark: str) -> Path | None:
    """The method's own values for `benchmark`; None for ProxyCLIP (the benchmark config is its protocol) and for a
    benchmark the method's repository does not evaluate."""
    if method == DEFAULT_METHOD:
        return None
    own = packaged_configs() / method / f"{benchmark}.yaml"
    return own if own.is_file() else None


def model_method(model: str | os.PathLike) -> str:
    """The `method` a model config (or a benchmark config that references one) runs."""
    return str(load_model_spec(model).get("method") or DEFAULT_METHOD)


def set_method(config: str | os.PathLike, key: str | None) -> str | None:
    """The method a config file sets explicitly (its `model` section's segmentor, or the file itself as a --model
    file for key None), None where it leaves it as it was (the CLI merges configs in order)."""
    model = config_section(find_config(config), key)
    segmentor = model.get("segmentor")
    if not isinstance(segmentor, dict):
        return None
    return (segmentor.get("init_args") if isinstance(segmentor.get("init_args"), dict) else segmentor).get("method")


def config_benchmark(config: str | os.PathLike, key: str | None = "data") -> str | None:
    """The benchmark a config file's data section (the file itself for key None) selects by its class_path, if any."""
    data = config_section(find_config(config), key)
    class_path = data.get("class_path")
    names = [name for name, cls in DATAMODULES.items() if class_path in (cls.__name__, f"datamodules.{cls.__name__}",
                                                                          f"{cls.__module__}.{cls.__name__}")]
    return names[0] if names else None


def _values(argv: Sequence[str], flag: str) -> list[tuple[int, str]]:
    """(index after the value, value) of each `flag VALUE` or `flag=VALUE` in argv."""
    found = []
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            found.append((i + 2, argv[i + 1]))
        elif arg.startswith(flag + "="):
            found.append((i + 1, arg.split("=", 1)[1]))
    return found


def add_method_protocol(argv: Sequence[str]) -> tuple[list[str], str | None]:
    """argv with `--config configs/<method>/<benchmark>.yaml` added when the run's method is not ProxyCLIP, and a
    one-line note saying what was added (or that the method has no protocol for the benchmark); argv unchanged else."""
    argv = list(argv)
    if not argv or argv[0] != "test":
        return argv, None
    methods, benchmarks = [], []      # (index after the argument, value, from --config), in argv order
    for end, value in _values(argv, "--config"):
        methods.append((end, set_method(value, "model"), True))
        benchmarks.append((end, config_benchmark(value, "data")))
    for end, value in _values(argv, "--model"):
        methods.append((end, set_method(value, None) if value.endswith((".yaml", ".yml", ".json")) else None, False))
    for end, value in _values(argv, "--data"):
        benchmarks.append((end, config_benchmark(value, None) if value.endswith((".yaml", ".yml")) else None))
    methods += [(end, value, False) for end, value in _values(argv, _METHOD_FLAG)]
    methods = sorted(m for m in methods if m[1])
    benchmarks = sorted(b for b in benchmarks if b[1])
    method_end, method, whole_config = methods[-1] if methods else (0, DEFAULT_METHOD, True)
    # a whole config that names its method (e.g. a run's saved config.yaml) already holds that method's values
    if method == DEFAULT_METHOD or whole_config or not benchmarks:
        return argv, None
    benchmark_end, benchmark = benchmarks[-1]
    own = method_protocol(method, benchmark)
    if own is None:
        return argv, (f"note: {method} defines no {benchmark} protocol; the benchmark config's values (ProxyCLIP's crop, "
                      "stride, vocabulary and thresholds) are used.")
    if any(find_config(value).resolve() == own.resolve() for _, value in _values(argv, "--config")):
        return argv, None                                # given explicitly (eval_all does)
    at = max(method_end, benchmark_end)
    return argv[:at] + ["--config", str(own)] + argv[at:], f"{method}'s own {benchmark} values: --config {own}"


if __name__ == "__main__":     # print the expanded command line: python -m proxyclip.commands.protocols test ...
    print(" ".join(add_method_protocol(sys.argv[1:])[0]))
