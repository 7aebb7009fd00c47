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
from ..shipped_configs import packaged_configs
from .published import preset_file
from .earlier_outputs import OVERWRITE_FLAG
from .eval_all_options import build_parser, checked_datasets, checked_models
from .protocols import DEFAULT_METHOD, RECORD
from .eval_protocols import protocol_runs
from .summary_table import BENCHMARKS, write_summary  # noqa: F401 - eval_all.BENCHMARKS stays importable
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
    else None. Only such a run is shown beside its published numbers (the method's published.yaml); a method a
    distribution adds is found by its folder's presets/."""
    shipped = preset_file(model.stem)
    if data_config is not None or shipped is None or Path(model).resolve() != shipped.resolve():
        return None
    keys = [arg[2:].split("=", 1)[0] for arg in passthrough if arg.startswith("--")]
    return model.stem if all(key in VOLATILE for key in keys) else None


def benchmark_command(name: str, root: Path | None, model: Path, out_dir: Path, data_config: Path | None) -> list[str]:
    """`proxyclip test` on one benchmark (or the dataset of `data_config`) into `out_dir`, before the passed-through
    options."""
    data = ["--config", str(packaged_configs() / f"{name}.yaml")] if data_config is None else ["--data", str(data_config)]
    # the model replaces the benchmark config's model, and the CLI adds the method's own values (protocols.py), as it
    # does for `proxyclip test`
    return [sys.executable, "-m", "proxyclip.commands.cli", "test", *data, "--model", str(model),
            *(["--data.init_args.root", str(root)] if root is not None else []), "--model.output_dir", str(out_dir),
            "--trainer.default_root_dir", str(out_dir), "--trainer.logger", "false"]


def finished_status(out_dir: Path, digest: str, overwrite: bool) -> str | None:
    """skipped when `out_dir` holds the finished results of this config, kept when of another config and `overwrite`
    is False; None when the benchmark is to run."""
    run_file = out_dir / "run.json"
    old = json.loads(run_file.read_text()) if run_file.is_file() else {}
    # finished: metrics.json of a run that did not fail (without run.json, of a run eval_all did not start)
    finished = (out_dir / "metrics.json").is_file() and old.get("status", "ok") == "ok"
    if finished and old.get("config_hash") == digest:
        return "skipped"
    if finished and not overwrite:
        return (f"kept: {out_dir} holds the finished results of another config; add {OVERWRITE_FLAG} (eval_all's) to "
                "replace them, or choose another --output")
    return None


def run_test(name: str, cmd: list[str], out_dir: Path) -> tuple[str, float]:
    """(ok or failed with its line, seconds) of running `cmd`, announced first."""
    print(f"[eval_all] {name}: {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    code, log = run_streaming(cmd)
    status = "ok" if code == 0 and (out_dir / "metrics.json").is_file() else f"failed: {one_line(log)}"
    return status, time.perf_counter() - start


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
    cmd = benchmark_command(name, root, model, out_dir, data_config)
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
        finished = finished_status(out_dir, digest, overwrite)
        if finished is not None:
            return finished
        # what an earlier run left here is replaced: another config's results (eval_all's --overwrite), or no result
        cmd += [OVERWRITE_FLAG] if out_dir.is_dir() else []
        cmd += passthrough
        status, elapsed = run_test(name, cmd, out_dir)
        record.update(config_hash=digest, config=config, versions=versions(), weights=weights,
                      elapsed_s=elapsed, command=shlex.join(cmd))
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps({"status": status, **record}, indent=2, default=str))
    return status


def benchmark_root(name: str, custom: dict[str, Path], overrides: dict[str, str], data_root: str) -> Path | None:
    """Where the dataset's layout folder is: --root's path, else a benchmark's default under --data-root; None for a
    dataset config without --root (its root comes from its config)."""
    if name in custom:
        return Path(overrides[name]).expanduser().resolve() if name in overrides else None
    return Path(overrides.get(name) or Path(data_root) / default_root(name)).expanduser().resolve()


def evaluate_or_record(name: str, root: Path | None, model: Path, out_dir: Path, passthrough: list[str],
                       data_config: Path | None, overwrite: bool) -> str:
    """evaluate(), its unexpected error turned into a `failed` status written to run.json (one broken benchmark must
    not stop the others); a Ctrl-C is raised on."""
    try:
        return evaluate(name, root, model, out_dir, passthrough, data_config, overwrite)
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not stop the others
        status = f"failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "run.json").write_text(json.dumps({"status": status, "benchmark": name}, indent=2))
        return status


def write_summaries(runs: list[tuple[str, Path, list[str]]], output: Path, models: list[Path]) -> None:
    """Each protocol's table in its folder, printed with the line that says where it is."""
    for protocol, folder, _ in runs:
        folder.mkdir(parents=True, exist_ok=True)
        title = f"[eval_all] the {protocol} protocol\n" if folder != output or len(runs) > 1 else ""
        print(title + write_summary(folder, [model.stem for model in models], protocol)
              + f"\n[eval_all] summary written to {folder}/ (summary.md, summary.csv, summary.json)")


def status_groups(statuses: dict[str, str], one_setting: bool) -> list[list[str]]:
    """The runs that failed, were missing, unsupported and kept, by their key (by their benchmark alone when one
    setting ran)."""
    groups = [[n for n, s in statuses.items() if s.startswith(prefix)] for prefix in ("failed", "missing", "unsupported", "kept")]
    if one_setting:                       # one setting: name the benchmarks alone
        groups = [[n.split(" / ")[1] for n in group] for group in groups]
    return groups


def final_line(statuses: dict[str, str], one_setting: bool, allow_missing: bool) -> tuple[str, int]:
    """(the closing line: how many benchmarks have numbers and which did not, the exit code): 1 when one failed or
    was kept, or was missing without --allow-missing."""
    failed, missing, unsupported, kept = status_groups(statuses, one_setting)
    counted = len([s for s in statuses.values() if not s.startswith("unsupported")])
    done = counted - len(failed) - len(missing) - len(kept)
    code = 1 if failed or kept or (missing and not allow_missing) else 0
    return (f"[eval_all] {done} of {counted} benchmarks have numbers"
            + (f"; failed: {', '.join(failed)}" if failed else "") + (f"; missing: {', '.join(missing)}" if missing else "")
            + (" (allowed by --allow-missing)" if missing and allow_missing and not failed and not kept else "")
            + (f"; kept (another config's results, not replaced): {', '.join(kept)}" if kept else "")
            + (f"; not defined by their method: {', '.join(unsupported)}" if unsupported else "")
            + f"; exit code {code}"), code


def main(argv: list[str] | None = None) -> int:
    """Entry point of `proxyclip-eval-all` (`python -m proxyclip.eval_all`); returns the exit code (1 when a benchmark failed)."""
    parser = build_parser(__doc__.split("\n\n")[0])
    args, passthrough = parser.parse_known_args(argv)
    names, custom, overrides = checked_datasets(parser, args)
    models = checked_models(parser, args, custom)
    output = Path(args.output).expanduser().resolve()
    statuses: dict[str, str] = {}
    runs = protocol_runs(args.protocol, output)
    for (protocol, folder, asks), model in [(run, model) for run in runs for model in models]:
        for name in names:
            key = f"{model.stem} / {name}" + (f" ({protocol})" if len(runs) > 1 else "")
            root = benchmark_root(name, custom, overrides, args.data_root)
            try:
                status = evaluate_or_record(name, root, model, folder / model.stem / name, [*asks, *passthrough],
                                            custom.get(name), args.overwrite)
            except KeyboardInterrupt:
                where = name if len(models) == 1 else f"{model.stem} / {name}"
                print(f"[eval_all] interrupted at {where}; run the same command again to resume "
                      "(finished benchmarks are kept and skipped)", file=sys.stderr, flush=True)
                return 130
            statuses[key] = status
            print(f"[eval_all] {key}: {status}", flush=True)
    write_summaries(runs, output, models)
    line, code = final_line(statuses, len(models) == 1, args.allow_missing)
    print(line, flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
