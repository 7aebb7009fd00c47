"""Ctrl-C during `test` or `predict`: one line that says what was interrupted and what is kept, exit code 130.

Lightning catches the KeyboardInterrupt of its loops itself (trainer/call.py `_call_and_handle_interrupt`): it
tears the run down, stops the DDP workers it started and calls `sys.exit(1)`. `run_interruptibly` turns that
exit back into a `RunInterrupted` (a KeyboardInterrupt) that carries the line; `cli_main` prints it on rank 0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from lightning.pytorch import Trainer

from ..shell.prediction_writer import PredictionWriter
from .entry_points import interrupted_line


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C that Lightning handled; `line` says what is kept."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


def _removed(removed: Sequence[Path], subcommand: str) -> str:
    """What --overwrite removed when the run started, or nothing."""
    if not removed:
        return ""
    what = "results" if subcommand == "test" else "outputs for these inputs"
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in removed[:6]) + (" ..." if len(removed) > 6 else "")
    return f"; the earlier run's {what} in {removed[0].parent}/ ({shown}) were removed when this run started (--overwrite)"


def kept_line(trainer: Trainer, subcommand: str, names: Sequence[str], removed: Sequence[Path] = (),
              new_folder: bool = False) -> str:
    """What an interrupted run leaves: `test` nothing (results come at the end; its panels are removed), `predict`
    the complete outputs of the images it finished (each written whole or not at all); and what `removed`, the earlier
    run's files that --overwrite removed, no longer holds. `new_folder`: the run writes into a new version_N folder,
    so running it again needs no --overwrite."""
    gone = _removed(removed, subcommand)
    if subcommand == "test":
        return interrupted_line("during test", "no results were written (metrics.json and the rest come only when every "
                                               "image has been counted)" + gone)
    writer = next((c for c in trainer.callbacks if isinstance(c, PredictionWriter)), None)
    done = writer.complete_outputs(names) if writer is not None else 0
    if not done:
        return interrupted_line("during predict", "no outputs were written" + gone)
    again = ("the same command again segments every image into a new version folder" if new_folder else
             "add --overwrite to the same command to redo them")
    return interrupted_line("during predict", f"the outputs of {done} of {len(names)} images are kept in {writer.location}/ "
                                              f"(each image's files complete){gone}; {again}")


def run_interruptibly(run: Callable[..., Any], trainer: Trainer, subcommand: str, names: Sequence[str],
                      kwargs: dict[str, Any], removed: Sequence[Path] = (), new_folder: bool = False) -> Any:
    """`run(**kwargs)` (the trainer's test or predict); Lightning's exit after Ctrl-C becomes a RunInterrupted (the
    last three arguments are kept_line's)."""
    try:
        return run(**kwargs)
    except SystemExit as exc:
        if trainer.interrupted and isinstance(exc.__context__, KeyboardInterrupt):
            raise RunInterrupted(kept_line(trainer, subcommand, names, removed, new_folder)) from None
        raise
