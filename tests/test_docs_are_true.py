"""What the docs and the configs' comments tell a user runs as told, and nothing points outside the repository."""
from __future__ import annotations

import importlib
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, TINY_CONFIG
from fake_datasets import WRITERS

CONFIGS = REPO_ROOT / "proxyclip" / "configs"     # configs/ is a link to it
USAGE = re.compile(r"^#\s*.*?python main\.py (?P<args>.+?)(?:\s{2,}.*)?$")


def usage_comments() -> list[tuple[str, list[str]]]:
    """(config file relative to the repository, the arguments) of every `# ... python main.py ...` comment line in
    configs/; THIS_FILE stands for the file itself; text after two spaces is a remark ("(adds this file)")."""
    found = []
    for path in sorted([*CONFIGS.glob("*.yaml"), *CONFIGS.glob("*/*.yaml")]):   # glob follows the methods' links
        for line in path.read_text().splitlines():
            match = USAGE.match(line)
            if match:
                name = f"configs/{path.relative_to(CONFIGS).as_posix()}"
                found.append((name, shlex.split(match.group("args").replace("THIS_FILE", name))))
    return found


def print_config(args: list[str]) -> tuple[int, str, str]:
    """`main.py <args> --print_config` in this process: parsed, never built (eval_all's own resolution)."""
    from proxyclip.commands.eval_all import resolved_config

    return resolved_config(args)


def contains(whole, part) -> bool:
    """Whether every value of `part` is in `whole` at the same place."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(key in whole and contains(whole[key], value) for key, value in part.items())
    return whole == part


def test_the_configs_carry_usage_comments():
    names = {name for name, _ in usage_comments()}
    presets = {f"configs/model/{p.name}" for p in (CONFIGS / "model").glob("*.yaml")}
    assert len(names & presets) >= 17 and "configs/demo.yaml" in names and "configs/sclip/voc21.yaml" in names


@pytest.mark.parametrize("name, args", usage_comments(), ids=lambda value: value if isinstance(value, str) else "")
def test_every_usage_comment_in_configs_runs(name, args, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)                      # the comments' paths start at the checkout, as the README's do
    code, printed, errors = print_config(args)
    assert code == 0, f"{name}: python main.py {shlex.join(args)}\n{errors[-2000:]}"
    resolved = yaml.safe_load(printed)
    own = yaml.safe_load((REPO_ROOT / name).read_text())
    if name.startswith("configs/model/"):             # the preset is the model that runs
        preset = dict(own["segmentor"])
        if resolved.get("method_protocol"):           # the method's benchmark values merge over the preset's, key by key
            protocol = yaml.safe_load((REPO_ROOT / resolved["method_protocol"]).read_text())
            given = ((protocol.get("model") or {}).get("segmentor") or {}).get("init_args", {}).get("method_kwargs")
            preset["method_kwargs"] = {**(preset.get("method_kwargs") or {}), **(given or {})} or None
        if "--model.segmentor.method_kwargs" in args:   # and the command line's over both
            typed = yaml.safe_load(args[args.index("--model.segmentor.method_kwargs") + 1])
            preset["method_kwargs"] = {**(preset.get("method_kwargs") or {}), **typed}
        assert contains(resolved["model"]["segmentor"]["init_args"], preset), name
        assert resolved["model"]["segmentor"]["init_args"].get("method_kwargs") == preset.get("method_kwargs"), name
    elif "model" in own and isinstance(own["model"], dict):   # a method's own values, added on top
        assert contains(resolved, own), name


PACKAGES = ("proxyclip", "datamodules")
REFERENCE = re.compile(r"(?<![\w/.-])((?:proxyclip|datamodules)(?:\.\w+)+)(?=\(\)|`)")


def tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.split()
        files = [REPO_ROOT / name for name in listed]
    except (OSError, subprocess.CalledProcessError):  # a copy without git: every file below the checkout
        files = [p for p in REPO_ROOT.rglob("*") if ".git" not in p.parts]
    return [p for p in files if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".toml", ".txt", ".cfg")]


def test_nothing_points_outside_the_repository():
    this = Path(__file__).resolve()
    outside = re.compile(r"/work/|shared/METHOD|shared/class_names|\.\./\.\./")
    hits = [f"{p.relative_to(REPO_ROOT)}:{n}: {line.strip()}" for p in tracked_text_files() if p.resolve() != this
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if outside.search(line)]
    assert not hits, "\n".join(hits)


def test_dotted_names_in_messages_and_docs_exist():
    """`proxyclip.method.vfm.list_vfms()` and the like, quoted in code or docs, name something that can be imported."""
    missing = []
    for path in tracked_text_files():
        if "tests" in path.relative_to(REPO_ROOT).parts:
            continue
        for dotted in set(REFERENCE.findall(path.read_text(errors="replace"))):
            parts = dotted.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    target = importlib.import_module(".".join(parts[:cut]))
                    break
                except ImportError:
                    continue
            try:
                for attribute in parts[cut:]:
                    target = getattr(target, attribute)
            except AttributeError:
                missing.append(f"{path.relative_to(REPO_ROOT)}: {dotted}")
    assert not missing, missing


def test_the_demo_writes_where_the_docs_say(tmp_path, monkeypatch):
    """The README's quick start, from a fresh folder (the tiny model for the default's weights): the files land in
    outputs/demo/version_0/predictions/, the folder that README.md and configs/demo.yaml name."""
    from proxyclip.commands.cli import cli_main

    documented = "outputs/demo/version_0/predictions/"
    assert documented in (REPO_ROOT / "README.md").read_text()
    assert "outputs/demo/version_N/predictions/" in (CONFIGS / "demo.yaml").read_text()
    monkeypatch.chdir(tmp_path)
    assets = REPO_ROOT / "datamodules" / "assets"
    cli_main(["predict", "--config", str(CONFIGS / "demo.yaml"), "--model", str(TINY_CONFIG),
              "--data.init_args.inputs", str(assets / "astronaut.jpg"),
              "--data.init_args.vocabulary", str(assets / "astronaut_vocabulary.txt")])
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*") if p.suffix in (".png", ".json"))
    assert written == [documented + name for name in ("astronaut_labels.png", "astronaut_legend.json", "astronaut_overlay.png")]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No download, whatever the network, and empty caches."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def test_the_weights_message_names_the_model_config(offline, tmp_path, capsys):
    from proxyclip import build_segmentor
    from proxyclip.commands.cli import cli_main
    from proxyclip.commands.weights import main as weights_main
    from proxyclip.errors import ProxyCLIPError

    root = WRITERS["voc21"](tmp_path / "data", n=1)
    model = "configs/model/vitb16_dinov2_vitb14_reg.yaml"
    with pytest.raises(SystemExit):
        cli_main(["test", "--config", str(CONFIGS / "voc21.yaml"), "--model", model, "--data.init_args.root", str(root),
                  "--model.output_dir", str(tmp_path / "out"), "--trainer.logger", "false"])
    err = capsys.readouterr().err
    assert "Cannot fetch the pretrained weights" in err and "CONFIG" not in err
    assert f"`python -m proxyclip.weights download {model}`" in err and f"`python -m proxyclip.weights list {model}`" in err

    assert weights_main(["download", "configs/voc21.yaml"]) == 1
    err = capsys.readouterr().err
    assert "`python -m proxyclip.weights download configs/voc21.yaml`" in err and "CONFIG" not in err

    with pytest.raises(ProxyCLIPError) as info:
        build_segmentor(REPO_ROOT / model, class_names=["sky"])
    assert f"download {REPO_ROOT / model}`" in str(info.value)

    from proxyclip.method.clip_encoder import build_clip
    with pytest.raises(ProxyCLIPError) as info:        # nothing names a config here: a real one as the example
        build_clip("ViT-B-16", "openai")
    assert "`python -m proxyclip.weights download configs/model/default.yaml` (or the model config you use)" in str(info.value)
    assert (REPO_ROOT / "configs/model/default.yaml").is_file()


def test_offline_the_quick_start_names_a_way_to_try_without_weights(offline, tmp_path, monkeypatch, capsys):
    """Offline, the quick start stops with the weights paragraph, which ends with a command that needs no weights (tiny
    random models, meaningless labels); that command, as written there and in the README, runs from a fresh folder."""
    from proxyclip.commands.cli import cli_main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        cli_main(["predict", "--config", "configs/demo.yaml"])
    err = capsys.readouterr().err
    assert "Cannot fetch the pretrained weights" in err and "meaningless" in err
    command = re.search(r"`python main\.py (predict [^`]*)`", err).group(1)
    assert "--model configs/model/tiny_random.yaml" in command and "configs/model/tiny_<method>.yaml" in err
    assert f"python main.py {command}" in (REPO_ROOT / "README.md").read_text()
    cli_main(shlex.split(command))
    assert sorted(p.name for p in (tmp_path / "outputs/demo/version_0/predictions").iterdir()) == [
        "astronaut_labels.png", "astronaut_legend.json", "astronaut_overlay.png"]
