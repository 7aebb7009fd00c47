"""`--protocol original|common` (docs/protocols.md): under common, every method's run of a benchmark records the same
vocabulary, resize, window and thresholds; the original protocol is unchanged; eval_all writes both tables, and no
published number stands beside a common-protocol cell."""
import json

import pytest
import yaml
from PIL import Image

from conftest import REPO_ROOT, TINY_CONFIG
from fake_datasets import write_voc
from proxyclip.commands.eval_all import BENCHMARKS as ALL_BENCHMARKS, main as eval_all
from test_corrclip import tiny_corrclip_preset, write_masks
from test_side_by_side import tiny_preset
from test_trident import TINY_SAM

BENCHMARKS = ("voc21", "voc20")            # one background benchmark, one without
SHARED = ("names_file", "vocabulary_file", "class_names", "scale", "mode", "crop_size", "stride", "prob_thd",
          "area_thd", "pamr_steps")


def with_kwargs(path, **kwargs):
    """The preset at `path` with more method_kwargs (tiny SAM, the region masks): they stay the run's own options."""
    spec = yaml.safe_load(path.read_text())
    spec["segmentor"]["method_kwargs"] = {**(spec["segmentor"].get("method_kwargs") or {}), **kwargs}
    path.write_text(yaml.safe_dump(spec))
    return path


def presets(tmp_path, root):
    write_masks(root, tmp_path / "masks")
    return [TINY_CONFIG, tiny_preset("sclip"), tiny_preset("cass"), tiny_preset("trident"),
            with_kwargs(tiny_corrclip_preset(tmp_path), instance_mask_path=str(tmp_path / "masks"))]


def run_eval_all(tmp_path, models, *more):
    return eval_all(["--model", *map(str, models), "--datasets", *BENCHMARKS, "--data-root", str(tmp_path / "data"),
                     "--output", str(tmp_path / "out"), "--trainer.enable_progress_bar", "false", *more])


@pytest.mark.subprocess
def test_common_protocol_is_the_same_for_every_method(tmp_path):
    root = write_voc(tmp_path / "data", n=1)
    models = presets(tmp_path, root)
    assert run_eval_all(tmp_path, models, "--protocol", "common") == 0
    assert not (tmp_path / "out" / "tiny_random").exists()               # the original protocol's folders: untouched
    for bench in BENCHMARKS:
        records = {m.stem: json.loads((tmp_path / "out" / "common" / m.stem / bench / "metrics.json").read_text())
                   for m in models}
        stated = yaml.safe_load((REPO_ROOT / "configs" / "common" / f"{bench}.yaml").read_text())["data"]["init_args"]
        for setting, metrics in records.items():
            protocol = metrics["protocol"]
            assert protocol["name"] == "common" and protocol["files"] == [f"configs/common/{bench}.yaml"], setting
            values = protocol["values"]
            assert values["scale"] == stated["scale"] and values["prob_thd"] == stated["prob_thd"], setting
            assert (values["mode"], values["crop_size"], values["stride"]) == ("slide", 224, 112), setting
            assert values["area_thd"] is None and values["pamr_steps"] == 0, setting
            assert all(v is False for v in values["post_processing"].values()), setting
        first = records["tiny_random"]["protocol"]["values"]
        assert first["class_names"][0] == ("background" if bench == "voc21" else "aeroplane")
        assert not any("; " in name for name in first["class_names"])    # no synonyms
        for setting, metrics in records.items():
            assert {k: metrics["protocol"]["values"][k] for k in SHARED} == {k: first[k] for k in SHARED}, setting
        trident = records["tiny_trident"]
        assert trident["protocol"]["values"]["post_processing"] == {"sam_refinement": False}
        assert trident["method_options"]["sam_refinement"] is False and trident["method_options"]["sam_kwargs"] == TINY_SAM
        assert set(records["tiny_corrclip"]["protocol"]["exceptions"]) == {"region vote"}      # listed, the only one
        assert all(not m["protocol"]["exceptions"] for s, m in records.items() if s != "tiny_corrclip")
    summary = json.loads((tmp_path / "out" / "common" / "summary.json").read_text())
    assert [row["setting"] for row in summary["rows"]] == [m.stem for m in models]


@pytest.mark.subprocess
def test_original_protocol_is_unchanged_and_both_tables_are_written(tmp_path):
    write_voc(tmp_path / "data", n=1)
    sclip = tiny_preset("sclip")
    code = eval_all(["--model", str(TINY_CONFIG), str(sclip), "--datasets", "voc21", "--data-root", str(tmp_path / "data"),
                     "--output", str(tmp_path / "out"), "--protocol", "both", "--trainer.enable_progress_bar", "false"])
    assert code == 0
    for folder in (tmp_path / "out", tmp_path / "out" / "common"):     # each protocol: its table, pictures and panels
        assert {"summary.md", "summary.csv", "summary.json", "methods.png", "cost_vs_miou.png"} <= {
            p.name for p in folder.iterdir()}, folder
        (panel,) = (folder / "compare_panels" / "voc21").glob("*.png")
        assert Image.open(panel).size[0] > Image.open(next((folder / "tiny_sclip" / "voc21" / "panels").glob("*.png"))).size[0]
    original = json.loads((tmp_path / "out" / "tiny_sclip" / "voc21" / "metrics.json").read_text())["protocol"]
    common = json.loads((tmp_path / "out" / "common" / "tiny_sclip" / "voc21" / "metrics.json").read_text())["protocol"]
    assert original["name"] == "original" and original["files"] == ["configs/sclip/voc21.yaml"]
    assert original["values"]["names_file"] == "sclip/voc21" and original["values"]["area_thd"] == 0.1
    assert common["values"]["names_file"] == "common/voc21" and common["values"]["area_thd"] is None
    runs = [json.loads((folder / "tiny_sclip" / "voc21" / "run.json").read_text())
            for folder in (tmp_path / "out", tmp_path / "out" / "common")]
    assert runs[0]["config_hash"] != runs[1]["config_hash"]
    for folder in (tmp_path / "out", tmp_path / "out" / "common"):
        rows = json.loads((folder / "summary.json").read_text())["rows"]
        assert [row["setting"] for row in rows] == ["tiny_random", "tiny_sclip"]   # the original table skips common/
    common_md = (tmp_path / "out" / "common" / "summary.md").read_text()
    assert "every method under the common protocol" in common_md
    readme = (REPO_ROOT / "README.md").read_text()                     # its format example is what eval_all writes
    first, table = common_md.split("\n\n")[:2]
    assert first in readme and table.splitlines()[0].split(" | VOC21 | ")[1] in readme
    assert common_md.split("\n\n")[2].split(". Measured on")[0] in readme
    assert "each method under its own protocol" in (tmp_path / "out" / "summary.md").read_text()


def test_a_common_run_is_never_beside_a_published_number(tmp_path):
    """The shipped preset run as it is has published numbers in the original table, never in the common one."""
    from proxyclip.commands.summary_table import write_summary

    for folder, protocol in ((tmp_path / "sclip_vitb16" / "voc21", "original"),
                             (tmp_path / "common" / "sclip_vitb16" / "voc21", "common")):
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"mIoU": 50.0}))
        (folder / "run.json").write_text(json.dumps({"status": "ok", "preset": "sclip_vitb16",
                                                     "config": {"protocol": protocol}}))
    write_summary(tmp_path)
    write_summary(tmp_path / "common")
    original = json.loads((tmp_path / "summary.json").read_text())["rows"]
    common = json.loads((tmp_path / "common" / "summary.json").read_text())["rows"]
    assert original[0]["published"]["voc21"]["mIoU"] > 0
    assert common[0]["published"] == {} and "published" not in (tmp_path / "common" / "summary.md").read_text()


def test_a_model_named_common_is_refused(tmp_path, capsys):
    model = tmp_path / "common.yaml"
    model.write_text(TINY_CONFIG.read_text())
    with pytest.raises(SystemExit):
        eval_all(["--model", str(model), "--datasets", "voc21", "--output", str(tmp_path / "out")])
    assert "a setting named 'common'" in capsys.readouterr().err


# --- the command line ------------------------------------------------------------------------------------------------
def test_common_adds_one_file_for_every_method_and_later_values_still_win(tmp_path):
    from test_what_runs import resolved

    sclip = tiny_preset("sclip")
    config, lines = resolved(["test", "--protocol", "common", "--config", "configs/voc21.yaml", "--model", str(sclip),
                              "--data.init_args.prob_thd", "0.3"])
    common = REPO_ROOT / "proxyclip" / "configs" / "common" / "voc21.yaml"
    assert lines == [f"the common voc21 protocol for sclip: --config {common}"]
    assert (config["protocol"], config["method_protocol"]) == ("common", "configs/common/voc21.yaml")
    segmentor, data = config["model"]["segmentor"]["init_args"], config["data"]["init_args"]
    assert (segmentor["area_thd"], segmentor["mode"], data["names_file"], data["crop_size"]) == (None, "slide", "common/voc21", 224)
    assert data["prob_thd"] == 0.3                                     # given after the configs: it wins
    config, lines = resolved(["test", "--config", "configs/voc21.yaml", "--model", str(TINY_CONFIG), "--protocol", "common"])
    assert config["method_protocol"] == "configs/common/voc21.yaml" and config["data"]["init_args"]["crop_size"] == 224


def test_a_saved_common_config_runs_again_as_it_ran(tmp_path):
    from test_what_runs import resolved

    config, _ = resolved(["test", "--config", "configs/voc20.yaml", "--model", str(tiny_preset("trident")),
                          "--protocol", "common"])
    assert config["model"]["segmentor"]["init_args"]["method_kwargs"]["sam_refinement"] is False
    assert config["model"]["segmentor"]["init_args"]["method_kwargs"]["sam_kwargs"] == TINY_SAM   # the run's own kept
    (tmp_path / "saved.yaml").write_text(yaml.safe_dump(config))
    again, _ = resolved(["test", "--config", str(tmp_path / "saved.yaml")])
    assert again == config


@pytest.mark.parametrize("args, needles", [
    (["--protocol", "fair"], ["fair", "original", "common"]),
    (["--protocol", "original"], ["records a run of the common protocol", "--protocol common"]),
])
def test_a_protocol_that_cannot_run_as_given_is_refused(args, needles, tmp_path, capsys):
    from test_what_runs import refused, resolved

    config, _ = resolved(["test", "--config", "configs/voc21.yaml", "--model", str(TINY_CONFIG), "--protocol", "common"])
    (tmp_path / "saved.yaml").write_text(yaml.safe_dump(config))
    line = refused(["test", "--config", str(tmp_path / "saved.yaml"), *args], capsys)
    assert all(needle in line for needle in needles), line


def test_common_is_refused_for_a_dataset_of_your_own_and_for_predict(tmp_path, capsys, monkeypatch):
    from test_cli import write_my_dataset
    from test_what_runs import refused

    data, _ = write_my_dataset(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    line = refused(["test", "--data", str(data), "--model", str(TINY_CONFIG), "--protocol", "common"], capsys)
    assert "no common protocol for" in line and "voc21" in line and "--protocol original" in line
    line = refused(["predict", "--config", "configs/demo.yaml", "--model", str(TINY_CONFIG), "--protocol", "common"], capsys)
    assert "`predict` segments your own images" in line


def test_the_original_protocol_of_proxyclip_records_the_benchmark_configs_values(tmp_path):
    from test_what_runs import run_test

    protocol = run_test(write_voc(tmp_path / "data", n=1), tmp_path / "out")["protocol"]
    data = yaml.safe_load((REPO_ROOT / "configs" / "data" / "voc21.yaml").read_text())["init_args"]
    assert (protocol["name"], protocol["files"], protocol["exceptions"]) == ("original", [], {})
    values = protocol["values"]
    assert (values["names_file"], values["scale"], values["prob_thd"]) == (data["names_file"], data["scale"], data["prob_thd"])
    assert (values["mode"], values["crop_size"], values["stride"]) == ("slide", data["crop_size"], data["stride"])
    assert values["class_names"][0].startswith("sky; wall")              # ProxyCLIP's own background synonyms


def test_the_docs_table_is_the_common_files():
    """docs/protocols.md's table of the common values says what configs/common/ holds, benchmark by benchmark."""
    rows = [line.split("|")[1:-1] for line in (REPO_ROOT / "docs" / "protocols.md").read_text().splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in BENCHMARK_FILES]
    assert sorted(row[0].strip() for row in rows) == sorted(BENCHMARK_FILES) == sorted(ALL_BENCHMARKS)   # all ten
    for bench, vocabulary, short, prob_thd in (map(str.strip, row) for row in rows):
        data = yaml.safe_load(BENCHMARK_FILES[bench].read_text())["data"]["init_args"]
        assert vocabulary.startswith(f"`{data['names_file']}`"), bench
        assert (int(short), float(prob_thd)) == (data["scale"][1], data["prob_thd"]), bench
        assert (data["crop_size"], data["stride"]) == (224, 112), bench


BENCHMARK_FILES = {p.stem: p for p in (REPO_ROOT / "configs" / "common").glob("*.yaml")}
