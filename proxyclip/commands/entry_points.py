"""Where the commands start: `proxyclip` (and main.py), `proxyclip-eval-all`, `proxyclip-weights`, `proxyclip-masks`.

A light module (the standard library only): each command's own module, which imports torch and Lightning for
seconds, is imported inside the guard, so that Ctrl-C at any moment ends with one line on stderr and exit code
130, never a traceback. Under DDP every process meets Ctrl-C; only rank 0 says so.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading

INTERRUPTED = "interrupted (Ctrl-C)"


def launch_rank() -> int:
    """This process's global rank as its launcher set it (Lightning's DDP, torchrun, SLURM), 0 when launched alone."""
    for variable in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return 0


def interrupted_line(phase: str, kept: str) -> str:
    """The one line of an interrupted run: what was interrupted, what is kept on disk."""
    return f"{INTERRUPTED} {phase}: {kept}"


BEFORE_THE_RUN = interrupted_line("before the run started", "nothing was written")   # imports, parsing, building


def say_interrupted(line: str) -> int:
    """Print `line` once (rank 0) and return the exit code of an interrupted command."""
    if launch_rank() == 0:
        print(line, file=sys.stderr, flush=True)
    return 130


@contextlib.contextmanager
def ctrl_c_remembered():
    """Yields a list that a Ctrl-C meanwhile appends to (and still raises KeyboardInterrupt). While modules import,
    the KeyboardInterrupt can be swallowed: by a library's bare `except:` around an optional import, or when it
    lands in importlib's weakref callback, where Python prints it and goes on. The list keeps the key press."""
    pressed: list[int] = []
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield pressed                         # Ctrl-C ignored (a background job) or handled by someone else: theirs
        return

    def remember(signum, frame):
        pressed.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, remember)
    try:
        yield pressed
    finally:
        if signal.getsignal(signal.SIGINT) is remember:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _run(module: str, line: str) -> int:
    try:
        with ctrl_c_remembered() as pressed:
            command = importlib.import_module(module)
        if pressed:                           # pressed during the imports, and the KeyboardInterrupt was swallowed
            raise KeyboardInterrupt
        code = command.main()
    except KeyboardInterrupt as exc:
        return say_interrupted(getattr(exc, "line", line))
    return code if isinstance(code, int) else 0


def proxyclip() -> int:
    """`proxyclip test|predict ...` and `python main.py ...`."""
    return _run("proxyclip.commands.cli", BEFORE_THE_RUN)


def eval_all() -> int:
    """`proxyclip-eval-all ...` (its loop says itself which benchmark was interrupted)."""
    return _run("proxyclip.commands.eval_all", "[eval_all] interrupted; run the same command again to resume "
                                               "(finished benchmarks are kept and skipped)")


def weights() -> int:
    """`proxyclip-weights list|download CONFIG`."""
    return _run("proxyclip.commands.weights", f"{INTERRUPTED}: weights downloaded completely stay in their cache; run "
                                              "the same command again for the rest")


def masks() -> int:
    """`proxyclip-masks --config BENCHMARK | --images ... --output FOLDER`."""
    return _run("proxyclip.commands.masks", f"{INTERRUPTED}: the masks written so far are kept; run the same command "
                                            "again for the rest")
