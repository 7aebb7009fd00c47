"""The test tiers (pyproject.toml, tests/conftest.py): `subprocess` and `fullsize` tests are `slow`, the rest have a
300 s limit, and a test outside `subprocess` that starts a Python process fails and asks for the marker."""
import re
import shutil
import subprocess
import sys

import pytest

from conftest import FAST_TEST_TIMEOUT_S, REPO_ROOT, starts_python


def test_every_subprocess_and_fullsize_test_is_slow_and_every_other_has_a_limit(request):
    assert request.node in request.session.items                 # the items selected (`-m` may leave the slow out)
    for item in request.session.items:
        heavy = item.get_closest_marker("subprocess") or item.get_closest_marker("fullsize")
        if heavy:
            assert item.get_closest_marker("slow"), item.nodeid
        elif not item.get_closest_marker("slow"):
            assert item.get_closest_marker("timeout").args == (FAST_TEST_TIMEOUT_S,), item.nodeid


def test_the_markers_are_registered_strictly_with_a_timeout(request):
    assert "--strict-markers" in request.config.getini("addopts")
    assert {line.split(":")[0] for line in request.config.getini("markers")} >= {"slow", "subprocess", "fullsize"}
    assert float(request.config.getini("timeout")) > FAST_TEST_TIMEOUT_S
    assert re.search(r'^test = \[[^\]]*"pytest-timeout>=', (REPO_ROOT / "pyproject.toml").read_text(), re.M)


def test_which_commands_start_python(tmp_path):
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    assert starts_python([sys.executable, "-c", "pass"]) and starts_python("python3 -c pass")
    assert starts_python([venv_bin / "proxyclip", "test"])                    # a console script of a virtual environment
    assert not starts_python(["git", "ls-files"]) and not starts_python(("uname", "-p"))


def test_an_unmarked_test_may_not_start_python_but_may_start_git():
    with pytest.raises(AssertionError, match=r"starts a Python process: mark it @pytest.mark.subprocess"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    if shutil.which("git"):
        assert subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.startswith("git version")


@pytest.mark.subprocess
def test_a_marked_test_may_start_python():
    assert subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True).stdout == "42\n"
