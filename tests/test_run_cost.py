"""The cost beside the accuracy: metrics.json's peak memory, eval_all's cost columns (issue 22, part 3)."""
import csv
import json
import resource

from conftest import TINY_CONFIG
from fake_datasets import write_voc
from proxyclip.commands.summary_table import write_summary


def test_the_timing_records_the_peak_memory_of_the_process_on_a_cpu(tmp_path, capsys):
    from proxyclip.commands.cli import cli_main

    root = write_voc(tmp_path / "data", n=2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cli_main(["test", "--config", "configs/voc21.yaml", "--model", str(TINY_CONFIG), "--data.init_args.root", str(root),
              "--model.output_dir", str(tmp_path / "out"), "--trainer.logger", "false", "--trainer.accelerator", "cpu",
              "--model.num_panels", "0"])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    timing = json.loads((tmp_path / "out" / "metrics.json").read_text())["timing"]
    # this process ran the test: its high-water mark at the loop's end, between the marks before and after the run
    assert isinstance(timing["peak_memory_bytes"], int) and before <= timing["peak_memory_bytes"] <= after
    assert timing["peak_memory_kind"] == "cpu peak RSS of the process" and timing["device_name"]
    assert "peak_memory_bytes" in timing["scope"]
    assert (f"peak memory {timing['peak_memory_bytes'] / 1e9:.2f} GB, cpu peak RSS of the process)"
            in capsys.readouterr().out)


def finished(folder, miou, timing, host="host-a"):
    """A finished benchmark folder as eval_all leaves it (run.json beside metrics.json)."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": "ok", "host": host}))
    (folder / "metrics.json").write_text(json.dumps({"mIoU": miou, **({"timing": timing} if timing else {})}))


def test_folders_without_the_peak_memory_still_summarise_and_other_hosts_are_named(tmp_path):
    old = {"images": 4, "test_loop_s": 2.0, "images_per_s": 2.0}     # before the peak memory was recorded
    finished(tmp_path / "older" / "voc21", 40.0, old)
    finished(tmp_path / "older" / "voc20", 70.0, {"images": 2, "test_loop_s": 2.0})
    finished(tmp_path / "oldest" / "voc21", 30.0, None)                 # before timing was recorded at all
    finished(tmp_path / "newer" / "voc21", 50.0, {**old, "peak_memory_bytes": 3 * 10**9, "device_name": "NVIDIA H200",
                                                  "peak_memory_kind": "cuda max_memory_allocated during the test loop"},
             host="host-b")
    markdown = write_summary(tmp_path, ["older", "oldest", "newer"])
    rows = {row["setting"]: row for row in json.loads((tmp_path / "summary.json").read_text())["rows"]}
    assert rows["older"]["cost"] == {
        "benchmarks": {"voc20": {"images": 2, "test_loop_s": 2.0, "images_per_s": 1.0, "peak_memory_bytes": None},
                       "voc21": {"images": 4, "test_loop_s": 2.0, "images_per_s": 2.0, "peak_memory_bytes": None}},
        "images": 6, "test_loop_s": 4.0, "images_per_s": 1.5, "peak_memory_bytes": None, "peak_memory_kind": None}
    assert rows["oldest"]["cost"] is None
    assert rows["newer"]["cost"]["peak_memory_bytes"] == 3 * 10**9
    assert "| 1.50 | 4.0 | - |" in markdown and "| 2.00 | 2.0 | 3.00 |" in markdown
    assert next(line for line in markdown.splitlines() if line.startswith("| oldest |")).endswith("| - | - | - |")
    assert "NVIDIA H200 on host-b" in markdown and "unknown device on host-a" in markdown
    assert "different hosts or devices, whose costs are not comparable" in markdown
    assert "the settings finished different benchmarks" in markdown                # older: voc20 and voc21, newer: voc21
    with open(tmp_path / "summary.csv") as f:
        table = {row["setting"]: row for row in csv.DictReader(f)}
    assert (table["older"]["images_per_s"], table["older"]["peak_memory_gb"]) == ("1.5", "")
    assert table["newer"]["peak_memory_gb"] == "3.0" and table["oldest"]["test_loop_s"] == ""
