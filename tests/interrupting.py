"""Running a command as a terminal's job and pressing Ctrl-C once a marker shows the phase it is in."""
import os
import re
import signal
import subprocess
import time

from conftest import REPO_ROOT

BEFORE_THE_RUN = "interrupted (Ctrl-C) before the run started: nothing was written"
DURING_TEST = ("interrupted (Ctrl-C) during test: no results were written (metrics.json and the rest come only when "
               "every image has been counted)")
TORCH_IMPORTED = re.compile(r"\|\s*torch\s*$", re.M)   # -X importtime's line once `import torch` has finished


def default_ctrl_c():
    """A job started in the background of a shell inherits SIGINT ignored (and Python then keeps ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Started:
    """A command in its own process group (as a terminal's job), its output going to files (no pipe can fill)."""

    def __init__(self, cmd, tmp_path, env=None, cwd=None):
        self.out, self.err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(cmd, cwd=cwd or tmp_path, stdout=out, stderr=err, start_new_session=True,
                                         preexec_fn=default_ctrl_c,
                                         env=env or {**os.environ, "PYTHONPATH": str(REPO_ROOT)})

    def wait_for(self, ready, timeout=600):
        """Poll `ready()` until it returns something true; the process must still be running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = ready()
            if found:
                return found
            assert self.proc.poll() is None, f"ended early ({self.proc.returncode}): {self.err.read_text()[-3000:]}"
            time.sleep(0.02)
        raise AssertionError(f"no marker after {timeout} s: {self.err.read_text()[-3000:]}")

    def ctrl_c(self, start=0):
        """(exit code, the lines it printed to stderr from byte `start` on) after Ctrl-C."""
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=300)
        return self.proc.returncode, self.lines(start)

    def lines(self, start=0):
        """stderr without the import-time profile and progress bars (lines refreshed by a carriage return)."""
        text = self.err.read_bytes()[start:].decode(errors="replace")   # read_text() would end a line at each CR
        return [line for line in text.split("\n")
                if line.strip() and not line.startswith("import time:") and "\r" not in line]


def during_imports(cmd, tmp_path, env, cwd=None):
    """Ctrl-C once `import torch` has finished (Lightning and the rest are still loading): (exit code, lines)."""
    started = Started(cmd, tmp_path, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, cwd=cwd)
    started.wait_for(lambda: TORCH_IMPORTED.search(started.err.read_text()))   # Lightning and the rest still load
    return started.ctrl_c()
