"""Where a run writes, decided and checked before anything is built.

With `--model.output_dir DIR` (or, for `predict`, `--prediction_writer.output_dir DIR`) everything the run writes
goes below DIR: the results, and the logger's folder and config.yaml that would otherwise land in ./outputs/.
Without them, `--trainer.default_root_dir DIR` moves the default logger's folder (and with it the results) to DIR,
as Lightning users expect.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ProxyCLIPError
from .command_line import get

DEFAULT_ROOT = "outputs"   # where a run writes unless told: the CLI's default_root_dir and its CSVLogger's save_dir


def _logger_init_args(config: Any) -> Any:
    logger = get(config, "trainer.logger")
    return getattr(logger, "init_args", None) if logger not in (None, True, False) else None


def route_outputs(config: Any) -> None:
    """With an output folder chosen, put the trainer's default folder and the default logger's into it; else, with
    a default_root_dir of the user's, put the default logger's folder there."""
    chosen = get(config, "model.output_dir") or get(config, "prediction_writer.output_dir")
    root = get(config, "trainer.default_root_dir")
    if not chosen and (not root or root == DEFAULT_ROOT):
        return
    if chosen and root == DEFAULT_ROOT:
        config.trainer.default_root_dir = root = str(chosen)
    init_args = _logger_init_args(config)
    if init_args is not None and getattr(init_args, "save_dir", None) == DEFAULT_ROOT:
        init_args.save_dir = str(chosen or root)


def _log_dir(config: Any) -> Path | None:
    """The folder the run's log and default results go to when it is known before the run: the default root
    without a logger, a logger's folder of a version the user fixed; None for a new `version_N` folder."""
    logger = get(config, "trainer.logger")
    if logger in (None, False):
        return Path(get(config, "trainer.default_root_dir") or ".")
    init_args = _logger_init_args(config)
    version = getattr(init_args, "version", None) if init_args is not None else None
    if version is None or getattr(init_args, "save_dir", None) is None:
        return None
    name = getattr(init_args, "name", None) or ""
    return Path(init_args.save_dir) / name / (version if isinstance(version, str) else f"version_{version}")


def results_folder(config: Any) -> Path | None:
    """Where `test` writes its results when that is known before the run; None for a new `version_N` folder."""
    chosen = get(config, "model.output_dir")
    return Path(chosen) if chosen else _log_dir(config)


def predictions_folder(config: Any) -> Path | None:
    """Where `predict` writes when that is known before the run; None for a new `version_N` folder."""
    chosen = get(config, "prediction_writer.output_dir")
    log_dir = _log_dir(config)
    return Path(chosen) if chosen else None if log_dir is None else log_dir / "predictions"


def unusable_folder(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be (made into) a writable folder, or None. Its nearest existing folder is probed by
    creating and removing a file (permission bits do not tell: root may write anywhere, except where a file
    system refuses, e.g. /sys); nothing is left behind."""
    path = Path(path).expanduser().absolute()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder" + ("" if probe == path else f", so {path} cannot be created below it")
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    try:
        handle, name = tempfile.mkstemp(prefix=".proxyclip-write-test-", dir=probe)
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        return f"a file cannot be created in {probe} ({exc.strerror or exc})"
    return None


def check_output_locations(config: Any) -> None:
    """Every folder the run will write to must be usable; a ProxyCLIPError names the first that is not."""
    init_args = _logger_init_args(config)
    locations = {"--model.output_dir": get(config, "model.output_dir"),
                 "--prediction_writer.output_dir": get(config, "prediction_writer.output_dir"),
                 "--trainer.default_root_dir": get(config, "trainer.default_root_dir"),
                 "--trainer.logger.init_args.save_dir": getattr(init_args, "save_dir", None) if init_args is not None else None}
    for option, value in locations.items():
        if value:
            problem = unusable_folder(value)
            if problem:
                raise ProxyCLIPError(f"The output folder {value} ({option}) cannot be used: {problem}. Choose a folder "
                                     f"that can be created and written, e.g. {option} results/run1.")
