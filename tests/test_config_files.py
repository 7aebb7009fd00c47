"""Config files are read by `proxyclip.config_files` alone, and a broken one is named with its fix."""
import ast

import pytest

from conftest import REPO_ROOT, TINY_CONFIG, VOCAB
from proxyclip import ProxyCLIPError, build_segmentor
from proxyclip.commands.weights import load_model_spec
from proxyclip.config_files import config_from_text, config_section, model_config, read_config

def yaml_readers() -> set[str]:
    """The library's files that call yaml.safe_load / yaml.load."""
    found = set()
    for top in ("proxyclip", "datamodules"):
        for path in (REPO_ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Attribute) and node.attr in ("safe_load", "load", "full_load", "unsafe_load")
                        and isinstance(node.value, ast.Name) and node.value.id == "yaml"):
                    found.add(path.relative_to(REPO_ROOT).as_posix())
    return found


def test_config_files_is_the_one_reader():
    assert yaml_readers() == {"proxyclip/config_files.py"}


def test_a_broken_config_is_named_with_its_fix(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("segmentor:\n  beta: [1.2\n")
    with pytest.raises(ProxyCLIPError, match=f"The config {broken} is not valid YAML \\(line 3\\).*Fix the file"):
        read_config(broken)
    listed = tmp_path / "listed.yaml"
    listed.write_text("- beta\n- gamma\n")
    with pytest.raises(ProxyCLIPError, match=f"The config {listed} holds a list, not a mapping of options"):
        build_segmentor(listed, class_names=VOCAB)
    with pytest.raises(ProxyCLIPError, match="cannot be read"):
        read_config(tmp_path)                               # a folder
    with pytest.raises(ProxyCLIPError, match=r"Config '.*absent.yaml' does not exist .*Give a model config"):
        build_segmentor(tmp_path / "absent.yaml", class_names=VOCAB)
    assert config_from_text("", "an empty text") == {}
    # the commands' checks before the CLI parses leave the report to the CLI
    assert config_section(broken, None) == config_section(listed, None) == config_section(tmp_path / "absent.yaml", "model") == {}


def test_a_benchmark_config_names_its_model_for_every_reader(tmp_path):
    """`model: other.yaml` is followed relative to the benchmark config by the weights command; build_segmentor
    refuses a benchmark config, whose data values and protocol file only the CLI adds."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tiny.yaml").write_text(TINY_CONFIG.read_text().replace("beta: 1.2", "beta: 0.7"))
    bench = tmp_path / "bench.yaml"
    bench.write_text("model: model/tiny.yaml\ndata: data/voc21.yaml\n")
    path, data = model_config(bench)
    assert path == tmp_path / "model" / "tiny.yaml" and data["segmentor"]["method_kwargs"]["beta"] == 0.7
    assert config_section(bench, "model") == data
    assert load_model_spec(bench)["method_kwargs"]["beta"] == 0.7
    with pytest.raises(ProxyCLIPError, match=r"bench.yaml is a benchmark config: .* model/tiny.yaml, .*crop_size=224"):
        build_segmentor(bench, class_names=VOCAB)
    shipped = (REPO_ROOT / "proxyclip" / "configs" / "model" / "default.yaml").resolve()
    assert model_config("configs/voc21.yaml")[0].resolve() == shipped
