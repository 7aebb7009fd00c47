"""`python -m proxyclip.eval_all`: several benchmarks, resume by config hash, the paper-style summary."""
import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, TINY_CONFIG
from fake_datasets import WRITERS
from proxyclip.commands.eval_all import config_hash, default_root
from proxyclip.commands.summary_table import AVERAGES, BENCHMARKS, summary_rows, write_summary


def run_eval_all(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "proxyclip.eval_all", "--model", str(TINY_CONFIG), "--data-root", str(tmp_path / "data"),
           "--output", str(tmp_path / "out"), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def read_json(path):
    return json.loads(path.read_text())


@pytest.mark.subprocess
def test_evaluate_all_resume_and_summary(tmp_path):
    for name in ("voc21", "cityscapes"):
        WRITERS[name](tmp_path / "data", n=3)
    out = tmp_path / "out"
    setting = out / "tiny_random"

    # a requested benchmark without its dataset: a run that could not produce every number fails, and says so last
    first = run_eval_all(tmp_path, "--datasets", "voc21", "cityscapes", "ade20k")
    assert first.returncode == 1, first.stderr[-3000:]
    assert first.stdout.strip().splitlines()[-1] == "[eval_all] 2 of 3 benchmarks have numbers; missing: ade20k; exit code 1"
    assert "Testing DataLoader 0" in first.stdout + first.stderr       # Lightning's progress bar is shown
    summary = read_json(out / "summary.json")
    assert summary["benchmarks"] == ["voc21", "cityscapes", "ade20k"]
    (row,) = summary["rows"]
    assert row["setting"] == "tiny_random"
    for name in ("voc21", "cityscapes"):
        assert row["mIoU"][name] == read_json(setting / name / "metrics.json")["mIoU"]   # full precision
    missing = f"missing: {tmp_path / 'data' / 'ADEChallengeData2016'}"
    assert row["mIoU"]["ade20k"] == missing
    assert row["avg8"] is row["avg_bg"] is row["avg_nobg"] is None                     # incomplete groups
    markdown = (out / "summary.md").read_text()
    assert f"| tiny_random | {row['mIoU']['voc21']:.2f} | {row['mIoU']['cityscapes']:.2f} | {missing} |" in markdown
    with open(out / "summary.csv") as f:
        (csv_row,) = list(csv.DictReader(f))
    assert float(csv_row["voc21"]) == row["mIoU"]["voc21"] and csv_row["ade20k"] == missing
    # the cost beside the accuracy: the finished benchmarks' images over their test loops, the largest peak memory
    timings = {name: read_json(setting / name / "metrics.json")["timing"] for name in ("voc21", "cityscapes")}
    cost = row["cost"]
    assert set(cost["benchmarks"]) == {"voc21", "cityscapes"} and cost["images"] == 6
    assert cost["test_loop_s"] == sum(t["test_loop_s"] for t in timings.values())
    assert cost["images_per_s"] == 6 / cost["test_loop_s"]
    assert cost["peak_memory_bytes"] == max(t["peak_memory_bytes"] for t in timings.values()) > 0
    assert cost["peak_memory_kind"] == "cpu peak RSS of the process"
    assert float(csv_row["images_per_s"]) == cost["images_per_s"] and float(csv_row["test_loop_s"]) == cost["test_loop_s"]
    assert float(csv_row["peak_memory_gb"]) == cost["peak_memory_bytes"] / 1e9
    assert markdown.splitlines()[2].endswith("| avg8 | avg_bg | avg_nobg | images/s | test loop (s) | peak memory (GB) |")
    assert (f"| {cost['images_per_s']:.2f} | {cost['test_loop_s']:.1f} | {cost['peak_memory_bytes'] / 1e9:.2f} |"
            in markdown)
    assert "cpu peak RSS of the process). Measured on " in markdown and "not comparable" not in markdown

    run = read_json(setting / "voc21" / "run.json")
    assert run["status"] == "ok" and len(run["config_hash"]) == 64
    assert run["config"]["data"]["init_args"]["root"] == str(tmp_path / "data" / "VOCdevkit" / "VOC2012")
    assert run["weights"] == {"clip": "random", "vfm": "random"}
    assert set(run["versions"]) == {"torch", "lightning", "open_clip_torch", "timm", "torchmetrics", "proxyclip"}
    # the command that ran: main.py's CLI as an installed module (main.py is not in a wheel)
    assert run["elapsed_s"] > 0 and "-m proxyclip.commands.cli test" in run["command"] and run["host"] and run["date"]
    assert read_json(setting / "ade20k" / "run.json")["status"] == missing

    # Again: nothing reruns, the summary is the same.
    mtimes = {name: (setting / name / "metrics.json").stat().st_mtime_ns for name in ("voc21", "cityscapes")}
    second = run_eval_all(tmp_path, "--datasets", "voc21", "cityscapes", "ade20k", "--allow-missing")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.strip().endswith("missing: ade20k (allowed by --allow-missing); exit code 0")
    assert "tiny_random / voc21: skipped" in second.stdout and "tiny_random / cityscapes: skipped" in second.stdout
    assert {name: (setting / name / "metrics.json").stat().st_mtime_ns for name in mtimes} == mtimes
    assert (out / "summary.md").read_text() == markdown

    # A changed model option (passed through, after --model) with --overwrite reruns that benchmark; a broken one fails alone.
    (tmp_path / "empty").mkdir()
    third = run_eval_all(tmp_path, "--datasets", "voc21", "voc20", "--root", f"voc20={tmp_path / 'empty'}",
                         "--model.segmentor.method_kwargs", "{beta: 1.0, gamma: 3.0}", "--overwrite")
    assert third.returncode == 1
    assert "tiny_random / voc21: ok" in third.stdout
    rerun = read_json(setting / "voc21" / "run.json")
    assert rerun["config_hash"] != run["config_hash"]
    assert rerun["config"]["model"]["segmentor"]["init_args"]["method_kwargs"] == {"beta": 1.0, "gamma": 3.0}
    rerun_metrics = read_json(setting / "voc21" / "metrics.json")
    assert rerun_metrics["config"]["model"]["segmentor"]["init_args"]["method_kwargs"] == {"beta": 1.0, "gamma": 3.0}
    assert (rerun_metrics["method"], rerun_metrics["method_options"]) == ("proxyclip", {"beta": 1.0, "gamma": 3.0})
    assert (setting / "cityscapes" / "metrics.json").stat().st_mtime_ns == mtimes["cityscapes"]
    failed = read_json(setting / "voc20" / "run.json")["status"]
    assert failed.startswith("failed: ") and "val.txt" in failed and "Traceback" not in failed
    row = read_json(out / "summary.json")["rows"][0]
    assert row["mIoU"]["voc20"] == failed and row["mIoU"]["ade20k"] == missing and isinstance(row["mIoU"]["cityscapes"], float)


def test_config_hash_ignores_only_where_results_go():
    config = {"model": {"output_dir": "/a", "segmentor": {"init_args": {"method_kwargs": {"beta": 1.2}, "text_cache_dir": "/x"}}},
              "trainer": {"devices": 1, "precision": None, "default_root_dir": "/a"}, "data": {"init_args": {"root": "/d"}}}
    weights = {"clip": "random", "vfm": "random"}
    moved = {"model": {"output_dir": "/b", "segmentor": {"init_args": {"method_kwargs": {"beta": 1.2}, "text_cache_dir": "/y"}}},
             "trainer": {"devices": 8, "precision": None, "default_root_dir": "/b"}, "data": {"init_args": {"root": "/d"}}}
    assert config_hash(config, weights) == config_hash(moved, weights)
    changed = json.loads(json.dumps(config))
    changed["model"]["segmentor"]["init_args"]["method_kwargs"]["beta"] = 1.0
    assert config_hash(changed, weights) != config_hash(config, weights)
    changed = json.loads(json.dumps(config))
    changed["trainer"]["precision"] = "bf16-mixed"
    assert config_hash(changed, weights) != config_hash(config, weights)
    assert config_hash(config, {"clip": "sha256:00", "vfm": "random"}) != config_hash(config, weights)


def test_averages_need_their_whole_group():
    complete = {name: float(i) for i, name in enumerate(BENCHMARKS)}
    table = {"a": complete, "b": {**complete, "ade20k": "missing: /x"}, "c": {"voc21": 1.0}}
    columns, rows = summary_rows(table)
    assert columns == list(BENCHMARKS)
    a, b, c = rows
    assert a["avg8"] == pytest.approx(sum(range(8)) / 8)
    assert a["avg_bg"] == pytest.approx(1.0) and a["avg_nobg"] == pytest.approx(sum(range(3, 8)) / 5)
    assert b["avg8"] is None and b["avg_nobg"] is None and b["avg_bg"] == pytest.approx(1.0)
    assert c["avg8"] is c["avg_bg"] is c["avg_nobg"] is None
    assert set(AVERAGES["avg8"]) == set(AVERAGES["avg_bg"]) | set(AVERAGES["avg_nobg"])


def test_averages_name_registered_benchmarks():
    """Each average lists benchmarks by name: every member is registered, none twice, and avg8 is the two groups."""
    from datamodules import DATAMODULES

    for name, members in AVERAGES.items():
        assert isinstance(members, tuple) and all(isinstance(m, str) for m in members), name
        assert set(members) <= set(DATAMODULES) and len(set(members)) == len(members), name
    assert AVERAGES["avg8"] == AVERAGES["avg_bg"] + AVERAGES["avg_nobg"]
    assert AVERAGES["avg_bg"] == ("voc21", "context60", "coco_object")
    assert AVERAGES["avg_nobg"] == ("voc20", "context59", "coco_stuff", "cityscapes", "ade20k")


def test_the_summary_averages_are_over_the_named_benchmarks(tmp_path):
    """summary.json / .csv / .md: the average columns are the named groups' means; the benchmarks outside every
    group (pc459, ade847: 1000 here) count in none."""
    values = {name: float(i + 1) for i, name in enumerate(AVERAGES["avg8"])} | {"pc459": 1000.0, "ade847": 1000.0}
    for name, miou in values.items():
        (tmp_path / "setting" / name).mkdir(parents=True)
        (tmp_path / "setting" / name / "metrics.json").write_text(json.dumps({"mIoU": miou}))
    markdown = write_summary(tmp_path)
    expected = {avg: sum(values[b] for b in members) / len(members) for avg, members in AVERAGES.items()}
    assert expected == {"avg8": 4.5, "avg_bg": 2.0, "avg_nobg": 6.0}
    summary = read_json(tmp_path / "summary.json")
    assert summary["averages"] == {avg: list(members) for avg, members in AVERAGES.items()}
    (row,) = summary["rows"]
    assert {avg: row[avg] for avg in AVERAGES} == pytest.approx(expected)
    with open(tmp_path / "summary.csv") as f:
        reader = csv.DictReader(f)
        (csv_row,) = list(reader)
    assert reader.fieldnames[-6:] == ["avg8", "avg_bg", "avg_nobg", "images_per_s", "test_loop_s", "peak_memory_gb"]
    assert {avg: float(csv_row[avg]) for avg in AVERAGES} == pytest.approx(expected)
    assert markdown.startswith("mIoU (%), single scale, each method under its own protocol (its repository's "
                               "per-benchmark values); avg8 over VOC21, Context60, COCO-Object, VOC20, Context59, "
                               "COCO-Stuff, Cityscapes, ADE20K.")
    # the table (no timing recorded: no cost), then the notes and the pictures
    assert markdown.split("\n\n")[1].rstrip().endswith("| 4.50 | 2.00 | 6.00 | - | - | - |")


def test_default_roots_match_the_dataset_layouts(tmp_path):
    for name in BENCHMARKS:
        assert WRITERS[name](tmp_path / name, n=1) == tmp_path / name / default_root(name)


@pytest.mark.parametrize("roots", [["--root", "voc21={a}", "voc20={b}"], ["--root", "voc21={a}", "--root", "voc20={b}"]])
def test_several_roots_per_option(roots, tmp_path, capsys):
    """`--root a=X b=Y` sets both roots (the second pair is not passed on to `main.py test`), as repeated --root does."""
    from proxyclip.commands.eval_all import main

    a, b = tmp_path / "absent_voc21", tmp_path / "absent_voc20"
    code = main(["--model", str(TINY_CONFIG), "--datasets", "voc21", "voc20", "--data-root", str(tmp_path / "data"),
                 "--output", str(tmp_path / "out"), *[r.format(a=a, b=b) for r in roots], "--model.num_panels", "0"])
    out = capsys.readouterr().out
    assert code == 1 and f"tiny_random / voc21: missing: {a}" in out and f"tiny_random / voc20: missing: {b}" in out
    assert read_json(tmp_path / "out" / "tiny_random" / "voc20" / "run.json")["status"] == f"missing: {b}"


def test_the_method_is_the_one_the_command_settles(tmp_path, capsys):
    """A method given as a passed-through option (not in the model file) decides as the CLI decides: SCLIP defines no
    PC459 protocol, so PC459 is unsupported, not run with ProxyCLIP's values (review 6)."""
    import yaml

    from conftest import TINY_CLIP
    from proxyclip.commands.eval_all import main

    model = tmp_path / "plain.yaml"
    model.write_text(yaml.safe_dump({"segmentor": {"clip_model": TINY_CLIP, "clip_pretrained": None}}))
    code = main(["--model", str(model), "--datasets", "voc21", "pc459", "--data-root", str(tmp_path / "data"),
                 "--output", str(tmp_path / "out"), "--model.segmentor.method", "sclip"])
    out = capsys.readouterr().out
    assert "plain / pc459: unsupported: sclip defines no pc459 protocol" in out
    assert f"plain / voc21: missing: {tmp_path / 'data' / 'VOCdevkit' / 'VOC2012'}" in out and code == 1


def finished_elsewhere(folder, status="ok", config_hash="0" * 64):
    """What an earlier run of another config left in a benchmark's folder."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"mIoU": 12.5}))
    (folder / "per_class.csv").write_text("earlier\n")
    (folder / "run.json").write_text(json.dumps({"status": status, "config_hash": config_hash}))
    return {name: (folder / name).read_text() for name in ("metrics.json", "per_class.csv", "run.json")}


@pytest.mark.subprocess
def test_finished_results_of_another_config_are_kept_unless_overwrite(tmp_path, capsys, monkeypatch):
    """eval_all never replaces another config's finished results silently: that benchmark is not run and its status
    says why; `--overwrite` (eval_all's own) replaces them (review 4)."""
    from proxyclip.commands.eval_all import main

    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    WRITERS["voc21"](tmp_path / "data", n=1)
    folder = tmp_path / "out" / "tiny_random" / "voc21"
    earlier = finished_elsewhere(folder)
    args = ["--model", str(TINY_CONFIG), "--datasets", "voc21", "--data-root", str(tmp_path / "data"),
            "--output", str(tmp_path / "out"), "--model.num_panels", "0"]
    assert main(args) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert (f"[eval_all] tiny_random / voc21: kept: {folder} holds the finished results of another config; add "
            "--overwrite (eval_all's) to replace them, or choose another --output") in lines
    assert lines[-1] == ("[eval_all] 0 of 1 benchmarks have numbers; kept (another config's results, not replaced): "
                         "voc21; exit code 1")
    assert {name: (folder / name).read_text() for name in earlier} == earlier
    assert main([*args, "--overwrite"]) == 0
    run = read_json(folder / "run.json")
    assert run["status"] == "ok" and read_json(folder / "metrics.json")["num_images"] == 1
    assert run["command"].endswith(" --overwrite --model.num_panels 0")   # what it replaced was named by --overwrite
    assert not (folder / "per_class.csv").read_text().startswith("earlier")


@pytest.mark.subprocess
def test_an_earlier_failed_run_is_run_again(tmp_path, capsys, monkeypatch):
    """A failed earlier run (its files are no result) is run again without eval_all's --overwrite."""
    from proxyclip.commands.eval_all import main

    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    WRITERS["voc21"](tmp_path / "data", n=1)
    folder = tmp_path / "out" / "tiny_random" / "voc21"
    finished_elsewhere(folder, status="failed: out of memory")
    assert main(["--model", str(TINY_CONFIG), "--datasets", "voc21", "--data-root", str(tmp_path / "data"),
                 "--output", str(tmp_path / "out"), "--model.num_panels", "0"]) == 0
    assert "tiny_random / voc21: ok" in capsys.readouterr().out
    assert read_json(folder / "run.json")["status"] == "ok" and read_json(folder / "metrics.json")["num_images"] == 1


@pytest.mark.parametrize("protocol", ["common", "both"])
def test_the_common_protocol_of_a_dataset_of_your_own_is_refused_before_any_run(protocol, tmp_path, capsys):
    """As `proxyclip test --protocol common --data my_dataset.yaml` refuses it (exit code 2, the same paragraph): no
    run, no folder, no empty table that exits 0."""
    from test_cli import write_my_dataset

    from proxyclip.commands.common_protocol import no_common_protocol
    from proxyclip.commands.eval_all import main

    data, _ = write_my_dataset(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["--model", str(TINY_CONFIG), "--datasets", "voc21", str(data), "--output", str(tmp_path / "out"),
              "--protocol", protocol])
    out, err = capsys.readouterr()
    assert info.value.code == 2 and "[eval_all]" not in out
    assert f"error: --protocol {protocol}: there is no common protocol for my_dataset ({data})" in err
    assert no_common_protocol(f"my_dataset ({data})", protocol) in " ".join(err.split())
    assert "run your own dataset with --protocol original" in err
    assert not (tmp_path / "out").exists()
