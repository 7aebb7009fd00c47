"""The house: wings that import only what they may, no import cycles, no repository lookups, an installable wheel."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from fake_datasets import WRITERS

LIBRARY = ("proxyclip", "datamodules")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, tops: tuple[str, ...] = LIBRARY) -> set[str]:
    """The modules under `tops` (the library's packages unless told) that `path` imports (anywhere in the file, under
    TYPE_CHECKING too), as absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}   # `from pkg import module`
    return {m for m in found if m.split(".")[0] in tops}


def library_modules() -> dict[str, Path]:
    return {module_name(p): p for top in LIBRARY for p in (REPO_ROOT / top).rglob("*.py")}


def benchmark_modules() -> dict[str, Path]:
    """benchmarks/'s scripts and their helpers, by module name (benchmarks.device_check, ...)."""
    return {module_name(p): p for p in (REPO_ROOT / "benchmarks").glob("*.py")}


def assert_no_import_cycles(modules: dict[str, Path], tops: tuple[str, ...]) -> None:
    """Fail on an import cycle among `modules` (their imports under `tops`)."""
    graph = {name: sorted(m for m in imports_of(path, tops) if m in modules and m != name) for name, path in modules.items()}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                if not all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(cycle, cycle[1:])):
                    pytest.fail("import cycle: " + " -> ".join(cycle))   # a package and its own submodule are not one
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name)


def test_no_import_cycles():
    assert_no_import_cycles(library_modules(), LIBRARY)


def test_no_import_cycles_among_the_benchmarks():
    # e.g. a check importing the script that runs it (device_check.py): the shared pieces live in a module both import
    assert benchmark_modules()
    assert_no_import_cycles(benchmark_modules(), ("benchmarks",))


def test_benchmarks_use_the_library_and_the_library_never_uses_them():
    for name, path in library_modules().items():
        assert not imports_of(path, ("benchmarks",)), name
    for name, path in benchmark_modules().items():
        # of this repository, only the library and the other benchmark modules: no tests, no main.py
        assert imports_of(path, ("tests", "conftest", "main")) == set(), name


def test_wings_import_only_what_they_may():
    for name, path in library_modules().items():
        imported = imports_of(path)
        if name.startswith("proxyclip.method"):
            assert not {m for m in imported if m.startswith(("proxyclip.shell", "proxyclip.commands", "datamodules"))}, name
        if name.startswith("proxyclip.shell"):
            assert not {m for m in imported if m.startswith(("proxyclip.commands", "datamodules"))}, name
        if name.startswith("datamodules"):
            assert not {m for m in imported if m.startswith("proxyclip")}, name


@pytest.mark.subprocess
def test_the_method_imports_neither_lightning_nor_jsonargparse():
    code = ("import sys, proxyclip.method.segmentor, proxyclip.method.builder, proxyclip.method.vfm; "
            "print(sorted(m for m in ('lightning', 'jsonargparse', 'pytorch_lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_no_repository_root_lookups_in_library_code():
    for path in library_modules().values():
        text = path.read_text()
        assert "parents[1]" not in text and "REPO_ROOT" not in text, path


@pytest.mark.subprocess
def test_an_installed_wheel_works_from_another_folder(installed, tmp_path):
    bin_dir, cwd, env = installed

    def run(*cmd, timeout=600):
        return subprocess.run([str(bin_dir / cmd[0]), *cmd[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)

    where = run("python", "-c", "import proxyclip, datamodules; print(proxyclip.__file__, datamodules.__file__)")
    assert where.returncode == 0 and str(REPO_ROOT) not in where.stdout, where.stdout + where.stderr
    data = tmp_path / "data"
    voc = WRITERS["voc21"](data, n=2)
    WRITERS["ade20k"](data, n=2)
    out = tmp_path / "out"
    shipped = Path(run("python", "-c", "from proxyclip.shipped_configs import packaged_configs as p; print(p())").stdout.strip())
    assert str(REPO_ROOT) not in str(shipped) and (shipped / "voc21.yaml").is_file()
    assert all((shipped / method / "voc21.yaml").is_file() for method in ("sclip", "clearclip", "naclip", "scclip", "cass", "resclip", "trident", "corrclip"))
    vocabulary = run("python", "-c", "from datamodules.vocabulary_files import resolve_names_file as r; print(r('sclip/voc21'))")
    assert vocabulary.returncode == 0 and str(REPO_ROOT) not in vocabulary.stdout, vocabulary.stdout + vocabulary.stderr
    resolved = run("proxyclip", "test", "--config", str(shipped / "voc21.yaml"), "--model",
                   str(shipped / "model/sclip_vitb16.yaml"), "--print_config")
    assert resolved.returncode == 0 and "names_file: sclip/voc21" in resolved.stdout, resolved.stderr[-3000:]
    test = run("proxyclip", "test", "--config", str(shipped / "voc21.yaml"),
               "--model", str(shipped / "model/tiny_random.yaml"), "--data.init_args.root", str(voc),
               "--model.output_dir", str(out), "--trainer.logger", "false", "--trainer.default_root_dir", str(out))
    assert test.returncode == 0, test.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["num_images"] == 2
    evaluated = run("proxyclip-eval-all", "--model", "configs/model/tiny_random.yaml", "--datasets", "voc21", "ade20k",
                    "--data-root", str(data), "--output", str(tmp_path / "eval_all"))
    assert evaluated.returncode == 0, evaluated.stdout[-2000:] + evaluated.stderr[-3000:]
    summary = json.loads((tmp_path / "eval_all" / "summary.json").read_text())
    assert summary["rows"][0]["setting"] == "tiny_random" and set(summary["rows"][0]["mIoU"]) == {"voc21", "ade20k"}
    listed = run("proxyclip-weights", "list", "configs/model/tiny_random.yaml")
    assert listed.returncode == 0 and listed.stdout.count("nothing to fetch") == 2, listed.stdout + listed.stderr
