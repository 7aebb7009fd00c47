"""Shared test helpers: paths, the tiny random model and its configs, images. Tests import these from here."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from proxyclip.method.onednn_linear import _AVAILABLE as ONEDNN_AVAILABLE, onednn_choice

REPO_ROOT = Path(__file__).resolve().parents[1]
# text-embedding cache of the test runs (also for main.py subprocesses): never the user's ~/.cache
os.environ.setdefault("PROXYCLIP_CACHE_DIR", tempfile.mkdtemp(prefix="proxyclip-test-cache-"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n 2` on 2 cores: one thread per worker (and its subprocesses) instead of 2 x 2 threads fighting for 2 cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
TINY_CONFIG = REPO_ROOT / "configs" / "model" / "tiny_random.yaml"
TINY_CLIP = yaml.safe_load(TINY_CONFIG.read_text())["segmentor"]["clip_model"]   # the tiny CLIP's open_clip config
VOCAB = ["sky; cloud", "person", "grass", "building; house; tower"]
TINY_VIT = dict(depth=1, embed_dim=32, num_heads=2)      # per VFM family below, through the same factories
TINY_VFM = {"dino": TINY_VIT, "dinov2": TINY_VIT, "dinov3": TINY_VIT, "mae": TINY_VIT,
            "sam": dict(depth=2, embed_dim=32, num_heads=2, global_attn_indexes=(1,), img_size=256, out_chans=32)}


FAST_TEST_TIMEOUT_S = 300   # a test outside `slow` that takes this long belongs in it (pyproject.toml: the tiers)

# The fp32 CPU linear path of onednn_linear="auto", which the tiny segmentor and the presets and CLI runs the tests
# build take: PROXYCLIP_ONEDNN_LINEAR=true (oneDNN) or false (PyTorch's own, MKL) sets it on any machine, subprocesses
# included; unset, this CPU's (oneDNN on non-Intel AVX-512, MKL elsewhere). The suite passes on either: two runs compared
# bit for bit are built the same way (`twin`). A bad value stops the run here, with its message.
LINEAR_PATH = onednn_choice()
# for a test that needs oneDNN's linear op itself (its kernels, its calls): skipped, with the reason, where it is missing
needs_onednn = pytest.mark.skipif(not ONEDNN_AVAILABLE, reason="oneDNN's fp32 linear op is not available: not an x86 "
                                  "CPU, or a torch build without mkldnn (proxyclip/method/onednn_linear.py: _probe)")


def pytest_report_header():
    return f"proxyclip fp32 CPU linears, onednn_linear=\"auto\": {LINEAR_PATH[1]}"


@pytest.hookimpl(tryfirst=True)     # before `-m` selects: a `subprocess` or `fullsize` test is `slow` too
def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("subprocess") or item.get_closest_marker("fullsize"):
            item.add_marker(pytest.mark.slow)
        elif not item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(FAST_TEST_TIMEOUT_S))


def starts_python(command) -> bool:
    """Whether `command` (Popen's args) runs a Python interpreter or a virtual environment's console script."""
    program = Path(str(command[0] if isinstance(command, (list, tuple)) else str(command).split()[0]))
    return program.name.startswith("python") or (program.parent.parent / "pyvenv.cfg").exists()


@pytest.fixture(autouse=True)
def subprocesses_are_marked(request, monkeypatch):
    """A test not marked `subprocess` that starts a Python process fails and says so: the development run
    (`-m "not slow"`) never waits on an interpreter starting up. (git and uname start in an instant.)"""
    if request.node.get_closest_marker("subprocess"):
        return
    real_init = subprocess.Popen.__init__

    def refuse_python(self, args, *rest, **kwargs):
        if starts_python(args):
            raise AssertionError(f"{request.node.nodeid} starts a Python process: mark it @pytest.mark.subprocess "
                                 "(the test tiers: pyproject.toml, tests/conftest.py)")
        real_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse_python)


def tiny_vfm_kwargs(name: str, **overrides) -> dict:
    """Tiny architecture arguments for the registered VFM `name` (its family's)."""
    return {**TINY_VFM[name.split("_")[0]], **overrides}


def random_image(h: int, w: int, seed: int) -> torch.Tensor:
    """[3, h, w] uint8 noise, the same for the same seed."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, h, w, generator=g) * 255).to(torch.uint8)


BORDER_IMAGES = [random_image(150, 260, 0), random_image(112, 112, 1), random_image(200, 130, 2)]  # crops of 3 shapes


def write_tiny_clip_json(folder: Path) -> str:
    """The tiny CLIP's config as a model-config JSON file (the file form users may give as clip_model)."""
    import json

    path = Path(folder) / "tiny_clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    return str(path)


def put_in_hub_cache(cache: Path, repo: str, filename: str, content: dict | bytes) -> Path:
    """`content` (a state dict, saved in the format the name says, or raw bytes) where huggingface_hub's cache `cache`
    keeps `filename` of `repo` (models--org--name/refs/main + snapshots/<commit>/file), so that a library asked for
    that repo's weights, offline, loads this file through its own code."""
    commit = "0" * 40
    folder = Path(cache) / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    path = folder / "snapshots" / commit / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif filename.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in content.items()}, str(path))
    else:
        torch.save(content, path)
    return path


def twin(seg, **options):
    """A tiny segmentor with `seg`'s weights, geometry and fp32 linear path, built with extra init options."""
    from proxyclip import build_segmentor

    options = {"onednn_linear": seg.onednn_linear, **options}   # the same kernels, so that the two compare bit for bit
    other = build_segmentor(TINY_CONFIG, class_names=VOCAB, crop_size=seg.crop_size, stride=seg.stride,
                            crop_batch_size=seg.crop_batch_size, **options).eval()
    other.load_state_dict(seg.state_dict())
    return other


@pytest.fixture(scope="session")
def tiny_segmentor():
    from proxyclip import build_segmentor

    torch.manual_seed(0)
    # onednn_linear "auto", as every segmentor the tests build from a preset or the CLI: all on one path, the one
    # PROXYCLIP_ONEDNN_LINEAR sets (see LINEAR_PATH), else this CPU's (test_onednn_linear tests the choice)
    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB, crop_size=112, stride=56, crop_batch_size=4, onednn_linear="auto")
    return seg.eval()


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """(the venv's bin folder, a working folder outside the checkout, the environment without PYTHONPATH): a fresh
    venv holding a non-editable install of the wheel built from this checkout, built once per session; the
    dependencies are the running interpreter's (a .pth file points at them), so nothing is downloaded."""
    work = tmp_path_factory.mktemp("wheel")
    dist, venv, source = work / "dist", work / "venv", work / "source"
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources, and tests running meanwhile
    # check that nothing appears in the checkout
    local = {".git", ".venv", ".ci-venv", "build", "outputs", "lightning_logs", ".pytest_cache", "data"}
    shutil.copytree(REPO_ROOT, source, ignore=lambda folder, names: [
        n for n in names if n == "__pycache__" or n.endswith(".egg-info") or (Path(folder) == REPO_ROOT and n in local)])
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(deps + "\n")
    wheel = next(dist.glob("proxyclip-*.whl"))
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return venv / "bin", elsewhere, env
