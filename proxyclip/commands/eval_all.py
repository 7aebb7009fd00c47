"""Evaluate model configs on several benchmarks, resume finished ones, and write the paper-style table
(summary_table.py).

    proxyclip-eval-all --model configs/model/vitb16_dino_vitb8.yaml --datasets all \\
        --data-root /data [--output outputs/eval_all] [--root ade20k=/elsewhere/ADEChallengeData2016] [--trainer.devices 8 ...]

Each benchmark runs `proxyclip test` (= main.py test) in its own process (so Lightning can launch DDP per benchmark), into
`<output>/<setting>/<benchmark>/` (`<setting>` = the model config's stem), with a `run.json` beside the
results: the hash of the resolved config, which decides whether a later call skips the benchmark, and what
is needed to trust the number (config, package versions, where the weights came from, time, command, host, date). The finished
results of another config are kept (not run, status `kept`) unless `--overwrite` is given.
Unknown arguments are passed through to `main.py test`, after `--model`, so
`--model.segmentor.method_kwargs '{beta: 1.0, gamma: 3.0}'` works. `--protocol common|both` runs the common protocol
into `<output>/common/` with its own table (eval_protocols.py, docs/protocols.md).
"""
from __future__ import annotations

import argparse
import codecs
import contextlib
import copy
import datetime
import hashlib
import io
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from .cli import cli_main
from .command_line import get
from ..config_files import config_from_text, config_section
from ..shipped_configs import find_config, packaged_configs
from .common_protocol import no_common_protocol
from .earlier_outputs import OVERWRITE_FLAG
from .protocols import DEFAULT_METHOD, RECORD
from .eval_protocols import CHOICES, HELP as PROTOCOL_HELP, protocol_runs, refuse_common_setting
from .summary_table import BENCHMARKS, write_summary
from .weights import weights_provenance

# Resolved-config keys that say where results go or how the work is spread, never what is computed: the hash
# ignores them, so a resumed run on another output folder or GPU count still skips finished benchmarks
# (DDP counts are identical to one process: tests/test_cli.py).
VOLATILE = ("model.output_dir", "trainer.default_root_dir", "trainer.logger", "trainer.enable_progress_bar",
            "trainer.enable_model_summary", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
            "data.init_args.num_workers", "data.init_args.pin_memory", "data.init_args.batch_size",
            "model.segmentor.init_args.crop_batch_size", "model.segmentor.init_args.text_cache",
            "model.segmentor.init_args.text_cache_dir", "prediction_writer", "result_writer", "verbose", "overwrite")
PACKAGES = ("torch", "lightning", "open_clip_torch", "timm", "torchmetrics", "proxyclip")


def default_root(name: str) -> str:
    """The benchmark's layout folder: its data config's `root` without the leading `data/`."""
    root = str(config_section(packaged_configs() / f"{name}.yaml", "data")["init_args"]["root"])
    return root[len("data/"):] if root.startswith("data/") else root


def stable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config without the VOLATILE keys."""
    config = copy.deepcopy(config)
    for dotted in VOLATILE:
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return config


def config_hash(config: dict[str, Any], weights: dict[str, str]) -> str:
    """sha256 of the stable config and the weights' provenance (a replaced local checkpoint changes its sha256)."""
    text = json.dumps({"config": stable_config(config), "weights": weights}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def one_line(text: str) -> str:
    """The line that explains a failure: main.py's `error: ...`, else the last line (a traceback's exception)."""
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line[len("error:"):].strip() for line in lines if line.startswith("error:")]
    return (errors or lines or ["no output"])[-1]


def run_streaming(cmd: list[str]) -> tuple[int, str]:
    """Run `cmd` with stdout shared (Lightning's progress bar stays visible) and stderr echoed live and kept.

    The child runs in its own session, so a terminal's Ctrl-C reaches this process alone: it stops the child and
    the processes it started (SIGTERM, SIGKILL after 10 s), silences what they still print, and is raised on; the
    caller prints the one line."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, start_new_session=True)
    tail: list[str] = []
    stopping = threading.Event()

    def pump() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := proc.stderr.read1(65536):  # type: ignore[union-attr]
            text = decoder.decode(chunk)
            if not stopping.is_set():
                sys.stderr.write(text)
                sys.stderr.flush()
            tail.append(text)
            if len(tail) > 400:
                del tail[:200]

    thread = threading.Thread(target=pump, daemon=True)
    try:                                            # from the child's first moment: no Ctrl-C leaves it running
        thread.start()
        code = proc.wait()
    except KeyboardInterrupt:
        stopping.set()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    thread.join()
    return code, "".join(tail)


def resolved_config(cli_args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `proxyclip <cli_args> --print_config`, run in this process: parsing only,
    nothing is built, and no interpreter has to start."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli_main([*cli_args, "--print_config"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    if code == 130:                                 # Ctrl-C while parsing: the loop's own line says where
        raise KeyboardInterrupt
    return code, out.getvalue(), err.getvalue()


def versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:  # proxyclip run from a checkout without `pip install`
            found[package] = __import__(package).__version__ if package == "proxyclip" else "not installed"
    return found


def shipped_preset(model: Path, passthrough: Sequence[str], data_config: Path | None = None) -> str | None:
    """The shipped preset's name (configs/model/<name>.yaml) when the run is that preset on a shipped benchmark as it
    is: `model` is the shipped file and no passed-through option changes what is computed (only VOLATILE ones);
    else None. Only such a run is shown beside its published numbers (proxyclip/published)."""
    shipped = packaged_configs() / "model" / f"{model.stem}.yaml"
    if data_config is not None or not shipped.is_file() or Path(model).resolve() != shipped.resolve():
        return None
    keys = [arg[2:].split("=", 1)[0] for arg in passthrough if arg.startswith("--")]
    return model.stem if all(key in VOLATILE for key in keys) else None


def evaluate(name: str, root: Path | None, model: Path, out_dir: Path, passthrough: list[str],
             data_config: Path | None = None, overwrite: bool = False) -> str:
    """Evaluate one benchmark (or the dataset of `data_config`, its root from that config when `root` is None)
    unless its results for this exact config exist; returns ok/skipped/missing/failed, unsupported when the method
    the command settles defines no protocol for the benchmark, or kept when the folder holds another config's
    finished results and `overwrite` is False (they are left as they are)."""
    run_file = out_dir / "run.json"
    record: dict[str, Any] = {"benchmark": name, "setting": out_dir.parent.name,
                              "preset": shipped_preset(model, passthrough, data_config), "host": platform.node(),
                              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    data = ["--config", str(packaged_configs() / f"{name}.yaml")] if data_config is None else ["--data", str(data_config)]
    # the model replaces the benchmark config's model, and the CLI adds the method's own values (protocols.py), as it
    # does for `proxyclip test`
    cmd = [sys.executable, "-m", "proxyclip.commands.cli", "test", *data, "--model", str(model),
           *(["--data.init_args.root", str(root)] if root is not None else []), "--model.output_dir", str(out_dir),
           "--trainer.default_root_dir", str(out_dir), "--trainer.logger", "false"]
    code, printed, errors = resolved_config([*cmd[3:], *passthrough])
    config = config_from_text(printed, "printed by --print_config") if code == 0 else {}
    method = get(config, "model.segmentor.init_args.method") or DEFAULT_METHOD
    if code != 0:
        status = f"failed: {one_line(errors)}"
    elif data_config is None and method != DEFAULT_METHOD and config.get(RECORD) is None:
        status = f"unsupported: {method} defines no {name} protocol"
    elif root is not None and not root.is_dir():
        status = f"missing: {root}"
    else:
        weights = weights_provenance(config["model"]["segmentor"]["init_args"])
        digest = config_hash(config, weights)
        old = json.loads(run_file.read_text()) if run_file.is_file() else {}
        # finished: metrics.json of a run that did not fail (without run.json, of a run eval_all did not start)
        finished = (out_dir / "metrics.json").is_file() and old.get("status", "ok") == "ok"
        if finished and old.get("config_hash") == digest:
            return "skipped"
        if finished and not overwrite:
            return (f"kept: {out_dir} holds the finished results of another config; add {OVERWRITE_FLAG} (eval_all's) to "
                    "replace them, or choose another --output")
        # what an earlier run left here is replaced: another config's results (eval_all's --overwrite), or no result
        cmd += [OVERWRITE_FLAG] if out_dir.is_dir() else []
        cmd += passthrough
        print(f"[eval_all] {name}: {shlex.join(cmd)}", flush=True)
        start = time.perf_counter()
        code, log = run_streaming(cmd)
        status = "ok" if code == 0 and (out_dir / "metrics.json").is_file() else f"failed: {one_line(log)}"
        record.update(config_hash=digest, config=config, versions=versions(), weights=weights,
                      elapsed_s=time.perf_counter() - start, command=shlex.join(cmd))
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps({"status": status, **record}, indent=2, default=str))
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of `proxyclip-eval-all` (`python -m proxyclip.eval_all`); returns the exit code (1 when a benchmark failed)."""
    parser = argparse.ArgumentParser(prog="proxyclip-eval-all", allow_abbrev=False,
                                     description=__doc__.split("\n\n")[0],
                                     epilog="Other arguments (e.g. --trainer.devices 8) are passed to `main.py test`.")
    parser.add_argument("--model", nargs="+", default=["configs/model/default.yaml"],
                        help="model configs, one setting (a row of the table) each, named by the file's stem; another "
                             "method's (e.g. configs/model/sclip_vitb16.yaml) runs each benchmark with that method's own "
                             "values (configs/<method>/<benchmark>.yaml)")
    parser.add_argument("--datasets", nargs="+", default=["all"],
                        help=f"benchmarks, or all: {' '.join(BENCHMARKS)}; or dataset configs (path/to/my_dataset.yaml, "
                             "README 'Add a dataset'), named by the file's stem, their root from the config or --root")
    parser.add_argument("--data-root", default="data", help="folder holding the datasets' layout folders (e.g. VOCdevkit/VOC2012)")
    parser.add_argument("--root", action="append", nargs="+", default=[], metavar="NAME=PATH",
                        help="benchmarks' roots instead of the defaults: one or more NAME=PATH (the option may be repeated)")
    parser.add_argument("--output", default="outputs/eval_all", help="results folder: <output>/<setting>/<benchmark>/")
    parser.add_argument("--allow-missing", action="store_true",
                        help="exit 0 although some requested benchmarks have no dataset folder (they show as missing)")
    parser.add_argument(OVERWRITE_FLAG, action="store_true",
                        help="run a benchmark whose folder holds the finished results of another config (another model "
                             "file or other options), replacing them; without it such a benchmark is not run and shows "
                             "as kept (results of this same config are skipped either way, and an earlier failed run is "
                             "always run again)")
    parser.add_argument("--protocol", choices=CHOICES, default="original", help=PROTOCOL_HELP)
    args, passthrough = parser.parse_known_args(argv)
    args.root = [pair for pairs in args.root for pair in pairs]   # --root a=X b=Y, --root a=X --root b=Y: the same
    names = list(BENCHMARKS) if args.datasets == ["all"] else args.datasets
    custom = {Path(n).stem: Path(n).expanduser().resolve() for n in names if n.endswith((".yaml", ".yml"))}
    names = [Path(n).stem if n.endswith((".yaml", ".yml")) else n for n in names]
    overrides = dict(item.split("=", 1) for item in args.root if "=" in item)
    unknown = [n for n in [*names, *overrides] if n not in BENCHMARKS and n not in custom] + [i for i in args.root if "=" not in i]
    if unknown:
        parser.error(f"unknown benchmark or bad --root: {', '.join(unknown)}; benchmarks are {', '.join(BENCHMARKS)}, "
                     "or give a dataset config (path/to/my_dataset.yaml)")
    clashes = [f"{path} does not exist" for path in custom.values() if not path.is_file()]
    clashes += [f"{path} would share the column {name} with the benchmark" for name, path in custom.items() if name in BENCHMARKS]
    if clashes or len(set(names)) < len(names):
        parser.error("; ".join(clashes) or f"a dataset is named twice in --datasets: {' '.join(names)}")
    models = [find_config(m).resolve() for m in args.model]
    for given, model in zip(args.model, models):
        if not model.is_file():
            parser.error(f"model config '{given}' does not exist")
    if refuse_common_setting(models):
        parser.error(refuse_common_setting(models))
    if args.protocol != "original" and custom:       # as `proxyclip test --protocol common` refuses it, before any run
        parser.error(no_common_protocol(", ".join(f"{name} ({path})" for name, path in custom.items()), args.protocol))
    output = Path(args.output).expanduser().resolve()
    statuses: dict[str, str] = {}
    runs = protocol_runs(args.protocol, output)
    for (protocol, folder, asks), model in [(run, model) for run in runs for model in models]:
        for name in names:
            key = f"{model.stem} / {name}" + (f" ({protocol})" if len(runs) > 1 else "")
            if name in custom:      # its root from its config, unless --root names it
                root = Path(overrides[name]).expanduser().resolve() if name in overrides else None
            else:
                root = Path(overrides.get(name) or Path(args.data_root) / default_root(name)).expanduser().resolve()
            try:
                status = evaluate(name, root, model, folder / model.stem / name, [*asks, *passthrough],
                                  custom.get(name), args.overwrite)
            except KeyboardInterrupt:
                where = name if len(models) == 1 else f"{model.stem} / {name}"
                print(f"[eval_all] interrupted at {where}; run the same command again to resume "
                      "(finished benchmarks are kept and skipped)", file=sys.stderr, flush=True)
                return 130
            except Exception as exc:  # noqa: BLE001 - one broken benchmark must not stop the others
                status = f"failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                (folder / model.stem / name).mkdir(parents=True, exist_ok=True)
                (folder / model.stem / name / "run.json").write_text(json.dumps({"status": status, "benchmark": name}, indent=2))
            statuses[key] = status
            print(f"[eval_all] {key}: {status}", flush=True)
    for protocol, folder, _ in runs:
        folder.mkdir(parents=True, exist_ok=True)
        title = f"[eval_all] the {protocol} protocol\n" if folder != output or len(runs) > 1 else ""
        print(title + write_summary(folder, [model.stem for model in models], protocol)
              + f"\n[eval_all] summary written to {folder}/ (summary.md, summary.csv, summary.json)")
    failed = [n for n, s in statuses.items() if s.startswith("failed")]
    missing = [n for n, s in statuses.items() if s.startswith("missing")]
    unsupported = [n for n, s in statuses.items() if s.startswith("unsupported")]
    kept = [n for n, s in statuses.items() if s.startswith("kept")]
    if len(models) == 1:                       # one setting: name the benchmarks alone
        failed, missing, unsupported, kept = ([n.split(" / ")[1] for n in group] for group in (failed, missing, unsupported, kept))
    statuses = {n: s for n, s in statuses.items() if not s.startswith("unsupported")}
    done = len(statuses) - len(failed) - len(missing) - len(kept)
    code = 1 if failed or kept or (missing and not args.allow_missing) else 0
    print(f"[eval_all] {done} of {len(statuses)} benchmarks have numbers"
          + (f"; failed: {', '.join(failed)}" if failed else "") + (f"; missing: {', '.join(missing)}" if missing else "")
          + (" (allowed by --allow-missing)" if missing and args.allow_missing and not failed and not kept else "")
          + (f"; kept (another config's results, not replaced): {', '.join(kept)}" if kept else "")
          + (f"; not defined by their method: {', '.join(unsupported)}" if unsupported else "")
          + f"; exit code {code}", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
