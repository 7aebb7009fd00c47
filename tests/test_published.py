"""The published numbers as data (proxyclip/methods/<method>/published.yaml, proxyclip/commands/published.py): every preset
has its published mIoU with a source, or is marked as having none with the reason; each number is the one printed
in the quoted source line."""
from __future__ import annotations

import csv
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from proxyclip.commands import published as pub

ROOT = Path(__file__).resolve().parents[1]
DATA = pub.load_published()
ROWS = [(method, row) for method, content in DATA.items() for row in content["rows"]]


def test_every_preset_is_covered_or_marked_none():
    presets = sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml"))
    assert len(presets) >= 29 and presets == pub.preset_names()
    assert pub.validate(DATA, presets) == []
    for preset in presets:
        assert pub.published_rows(preset) or pub.none_reason(preset), preset


def test_a_preset_neither_covered_nor_marked_fails(tmp_path):
    presets = pub.preset_names() + ["vitb16_new_vfm"]
    problems = pub.validate(DATA, presets)
    assert len(problems) == 1 and problems[0].startswith("vitb16_new_vfm: no published numbers and not marked none")
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump({
        "method": "extra", "repository": "someone/extra", "commit": "0" * 40, "rows": [],
        "none": [{"preset": "vitb16_new_vfm", "reason": "an extra the paper lacks"}]}))
    assert pub.validate({**DATA, **pub.load_published(tmp_path)}, presets) == []
    # ... but a reason is required, and a marked preset may not also have rows
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump({
        "method": "extra", "repository": "someone/extra", "commit": "0" * 40, "rows": [],
        "none": [{"preset": "vitb16_new_vfm", "reason": ""}, {"preset": "sclip_vitb16", "reason": "x"}]}))
    problems = pub.validate({**DATA, **pub.load_published(tmp_path)}, presets)
    assert any("without preset or reason" in p for p in problems)
    assert any(p.startswith("sclip_vitb16: has published rows") for p in problems)


def test_the_test_model_is_marked_none():
    assert "random" in pub.none_reason("tiny_random") and not pub.published_rows("tiny_random")


def test_the_benchmark_names_are_the_registrys():
    from datamodules import DATAMODULES
    assert pub.BENCHMARKS == tuple(DATAMODULES)


@pytest.mark.parametrize("method,row", ROWS, ids=[f"{m}-{r['preset']}-{r['benchmark']}-{r.get('setting', '')[:20]}"
                                                  for m, r in ROWS])
def test_each_row_names_its_source_and_prints_its_number(method, row):
    assert row["benchmark"] in pub.BENCHMARKS
    assert 0 <= row["miou"] <= 100
    assert re.match(r"^([\w./-]+\.md:\d+(-\d+)? |paper Table \d+)", row["source"]), row["source"]
    assert pub.number_in_quote(row["miou"], row["quote"]), (row["miou"], row["quote"])
    commit = DATA[method]["commit"]
    if row["source"].startswith("README.md:"):   # the README's line at the file's commit
        assert re.search(r" @([0-9a-f]{7,40})\b", row["source"]).group(1) == commit[:7]
    headers = DATA[method].get("headers") or {}
    if row["quote"].startswith("|") and headers:   # a markdown table row: the number sits under its column
        file, line = re.match(r"([\w./-]+):(\d+)", row["source"]).groups()
        above = [k for k in headers if k.split(":")[0] == file and int(k.split(":")[1]) < int(line)]
        header = headers[max(above, key=lambda k: int(k.split(":")[1]))]
        names = [c.strip() for c in header.strip().strip("|").split("|")]
        cells = [c.strip().strip("*") for c in row["quote"].strip().strip("|").split("|")]
        assert float(cells[names.index(row["column"])]) == row["miou"], (row["column"], row["quote"])


def test_a_quote_from_our_docs_is_that_line_verbatim():
    """A number transcribed in this repository's docs (from a README's image) is checked against the doc itself."""
    checked = 0
    for method, content in DATA.items():
        quoted = [(row["source"], row["quote"]) for row in content["rows"]] + list((content.get("headers") or {}).items())
        for source, quote in quoted:
            match = re.match(r"((?:docs|proxyclip/methods)/[\w./-]+\.md):(\d+)", source)
            if match:
                lines = (ROOT / match.group(1)).read_text().splitlines()
                assert lines[int(match.group(2)) - 1] == quote, (method, source)
                checked += 1
    # resclip, trident, clearclip rows and the two headers; the quoted rows (proxyclip 32, clearclip 3, cass 8) and
    # their headers (docs/published_quotations.md)
    assert checked >= 8 + 16 + 15 + 2 + 32 + 3 + 8 + 4


def test_spot_checks_against_the_readme_text():
    # SCLIP README.md:78 @b56bd30 "| PASCAL VOC (w. bg.)   | 59.63 |"; :74 "| COCO-Stuff164k        | 22.77 |"
    assert pub.published_value("sclip_vitb16", "voc21") == (59.63, "README.md:78 @b56bd30")
    assert pub.published_value("sclip_vitb16", "coco_stuff") == (22.77, "README.md:74 @b56bd30")
    # NACLIP README.md:84 @0cac3a6 "<td>19.05</td>" under <th>ADE20K</th> (README.md:71)
    assert pub.published_value("naclip_vitb16", "ade20k") == (19.05, "README.md:84 @0cac3a6")
    assert pub.published_value("naclip_vitb16", "voc20")[0] == 83.03
    # ResCLIP: proxyclip/methods/resclip/README.md transcribes the README's images; NACLIP + ResCLIP, ViT-B/16
    assert pub.published_value("resclip_vitb16", "coco_object")[0] == 35.0
    assert pub.published_value("resclip_vitb16", "cityscapes")[0] == 35.9
    # Trident and ClearCLIP: the READMEs' images, transcribed in proxyclip/methods/<method>/README.md "Published numbers"
    assert pub.published_value("trident_vith14", "cityscapes")[0] == 47.6
    source = pub.published_value("trident_vitb16", "voc21")[1]     # the line that transcribes the image's row
    line = int(source.split(" ")[0].removeprefix("proxyclip/methods/trident/README.md:"))
    assert (ROOT / "proxyclip/methods/trident/README.md").read_text().splitlines()[line - 1].startswith("| trident_vitb16 |")
    assert pub.published_value("clearclip_vitb16_laion2b", "ade20k")[0] == 18.9
    assert pub.published_value("clearclip_vitl14", "voc20")[0] == 80.0
    assert pub.published_value("clearclip_vitb16_laion2b", "voc21") is None  # the image has no VOC21 column
    # no number for the benchmarks the READMEs do not report
    assert pub.published_value("sclip_vitb16", "pc459") is None
    assert pub.published_value("naclip_vitb16", "ade847") is None


def test_a_third_partys_table_is_named_as_such():
    """Rows from another repository's README image (docs/published_quotations.md): `quoted_by`, and `reproduced`
    where that table marks the number as its own run; the source says which."""
    # Trident's image (docs/published_quotations.md:40, :44), ProxyCLIP's rows; the VFM assumed (note)
    value, source = pub.published_value("default", "voc21")
    assert value == 61.3 and source.startswith("docs/published_quotations.md:40 ")
    assert source.endswith("(as quoted by YuHengsss/Trident)")
    assert pub.published_value("vitb16_dino_vitb8", "ade20k")[0] == 20.2
    assert pub.published_value("vith14_dino_vitb8", "cityscapes")[0] == 42.0
    assert all("assumed DINO ViT-B/8" in r["note"] for r in pub.published_rows("vith14_dino_vitb8"))
    # ConceptBank's image (:97, :99, :85): ProxyCLIP + DINOv2-reg, CASS (its "*": reproduced), ClearCLIP's VOC21
    assert pub.published_value("vitb16_dinov2_vitb14_reg", "voc21")[0] == 58.6
    value, source = pub.published_value("cass_vitb16", "voc20")
    assert value == 87.8 and source.endswith("(as reproduced by PGSmall/ConceptBank)")
    value, source = pub.published_value("clearclip_vitb16", "voc21")
    assert value == 51.8 and source.endswith("(as quoted by PGSmall/ConceptBank)")
    own = pub.published_rows("clearclip_vitb16")[0]["source"]
    assert pub.published_value("clearclip_vitb16", "voc20") == (80.9, own)      # ClearCLIP's own image
    # no image has a row for these
    assert pub.published_value("vitl14_dino_vitb8", "voc21") is None and pub.none_reason("vitl14_dino_vitb8")
    assert pub.published_value("scclip_vitb16", "voc21") is None and pub.none_reason("scclip_vitb16")
    cass = pub.published_rows("cass_vitb16")
    assert len(cass) == 8 and all(r["reproduced"] for r in cass)


def test_validation_rejects_a_bad_quotation(tmp_path):
    good = {"preset": "sclip_vitb16", "clip": "ViT-B/16", "vfm": None, "benchmark": "voc21", "miou": 59.1,
            "source": "docs/published_quotations.md:36 (an image)", "quote": "| SCLIP | 59.1 |",
            "quoted_by": "YuHengsss/Trident"}
    bad = [({"quoted_by": "a/b"}, "is not another repository's"), ({"quoted_by": "Trident"}, "is not another"),
           ({"reproduced": "yes"}, "must be true or false"),
           ({"quoted_by": None, "reproduced": True}, "with quoted_by")]
    for change, message in [({}, None)] + bad:
        (tmp_path / "x.yaml").write_text(yaml.safe_dump({"method": "x", "repository": "a/b", "commit": "c",
                                                         "rows": [{**good, **change}], "none": []}))
        problems = pub.validate(pub.load_published(tmp_path), ["sclip_vitb16"])
        assert (problems == []) if message is None else any(message in p for p in problems), (change, problems)


def test_the_summary_names_a_quoted_number(tmp_path):
    from proxyclip.commands.summary_table import write_summary
    _result(tmp_path, "clearclip_vitb16", "voc21", 52.0, {"status": "ok", "preset": "clearclip_vitb16"})
    _result(tmp_path, "clearclip_vitb16", "voc20", 81.0, {"status": "ok", "preset": "clearclip_vitb16"})
    markdown = write_summary(tmp_path)
    assert "| clearclip_vitb16 | 52.00 (published 51.8, +0.20) | 81.00 (published 80.9, +0.10) |" in markdown
    assert "VOC21 docs/published_quotations.md:85 (ConceptBank's README image assets/cb_ns.png, README.md:261 " \
           "@3c890c7) (as quoted by PGSmall/ConceptBank); VOC20 proxyclip/methods/clearclip/README.md:630 " in markdown
    assert '"as quoted by" (their number in another repository\'s table)' in markdown
    (entry,) = json.loads((tmp_path / "summary.json").read_text())["rows"]
    assert entry["published"]["voc21"]["source"].endswith("(as quoted by PGSmall/ConceptBank)")
    assert "as quoted by" not in entry["published"]["voc20"]["source"]


def test_a_row_run_in_another_setting_is_never_the_presets_own_number():
    # CorrCLIP's README rows depend on the region masks (SAM2 32 / 8 points), which the preset leaves open
    assert pub.published_value("corrclip_vitb16", "voc21") is None
    sam2_32 = next(r["setting"] for r in pub.published_rows("corrclip_vitb16") if "32 points" in r["setting"])
    assert pub.published_value("corrclip_vitb16", "voc21", setting=sam2_32) == (74.8, "README.md:128 @103bc18")
    assert pub.published_value("corrclip_vitl14", "ade20k", setting=sam2_32)[0] == 30.7
    assert all(r.get("setting") for r in pub.published_rows("corrclip_vitl14"))
    assert "no OpenAI ViT-B/16 row" in pub.none_reason("corrclip_openai_vitb16")


def test_validation_rejects_bad_rows(tmp_path):
    good = {"preset": "sclip_vitb16", "clip": "ViT-B/16", "vfm": None, "benchmark": "voc21", "miou": 59.63,
            "source": "README.md:78 @b56bd30", "quote": "| PASCAL VOC (w. bg.)   | 59.63 |", "setting": "other"}
    bad = [({"benchmark": "voc"}, "unknown benchmark"), ({"miou": 159.63}, "not a number in 0-100"),
           ({"miou": 59.6}, "does not appear in its quote"), ({"source": "the README"}, "names neither"),
           ({"extra": 1}, "unknown ['extra']")]
    for change, message in bad:
        (tmp_path / "x.yaml").write_text(yaml.safe_dump({"method": "x", "repository": "a/b", "commit": "c",
                                                         "rows": [{**good, **change}], "none": []}))
        problems = pub.validate(pub.load_published(tmp_path), ["sclip_vitb16"])
        assert any(message in p for p in problems), (change, problems)
    (tmp_path / "x.yaml").write_text(yaml.safe_dump({"method": "x", "repository": "a/b", "commit": "c",
                                                     "rows": [good, good], "none": []}))
    assert any("given twice" in p for p in pub.validate(pub.load_published(tmp_path), ["sclip_vitb16"]))


def test_the_files_ship_with_the_package():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["proxyclip"]
    assert "methods/*/published.yaml" in patterns
    files = pub.published_files()       # every shipped method has its numbers in its folder
    assert sorted(DATA) == sorted(files) == sorted(p.parent.name for p in (ROOT / "proxyclip/methods").glob("*/published.yaml"))


# --- the summary: the published number beside the measured one (proxyclip/commands/eval_all.py) ---

def _result(output, setting, benchmark, miou, run):
    folder = output / setting / benchmark
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"mIoU": miou}))
    if run is not None:
        (folder / "run.json").write_text(json.dumps(run))


def test_the_summary_shows_the_published_number_beside_the_measured_one(tmp_path):
    from proxyclip.commands.summary_table import write_summary
    _result(tmp_path, "sclip_vitb16", "voc21", 59.7512, {"status": "ok", "preset": "sclip_vitb16"})
    _result(tmp_path, "sclip_vitb16", "ade20k", 16.0, {"status": "ok", "preset": "sclip_vitb16"})
    _result(tmp_path, "sclip_vitb16", "pc459", 10.0, {"status": "ok", "preset": "sclip_vitb16"})   # none published
    # the same name, but not the preset as it is (run.json without `preset`: changed options, or an older run)
    _result(tmp_path / "other", "sclip_vitb16", "voc21", 50.0, {"status": "ok", "preset": None})
    markdown = write_summary(tmp_path)
    assert "| sclip_vitb16 | 59.75 (published 59.63, +0.12) | 16.00 (published 16.45, -0.45) | 10.00 |" in markdown
    assert "- sclip_vitb16 (wangf3014/SCLIP, proxyclip/methods/sclip/published.yaml): VOC21 README.md:78 @b56bd30; " \
           "ADE20K README.md:70 @b56bd30" in markdown
    with open(tmp_path / "summary.csv") as f:
        reader = csv.DictReader(f)
        (row,) = list(reader)
    assert reader.fieldnames == ["setting", "voc21", "voc21_published", "voc21_difference", "ade20k", "ade20k_published",
                                 "ade20k_difference", "pc459", "avg8", "avg_bg", "avg_nobg", "images_per_s",
                                 "test_loop_s", "peak_memory_gb"]
    assert float(row["voc21"]) == 59.7512 and float(row["voc21_published"]) == 59.63      # measured kept, full precision
    assert float(row["voc21_difference"]) == pytest.approx(0.1212) and row["pc459"] == "10.0"
    (entry,) = json.loads((tmp_path / "summary.json").read_text())["rows"]
    assert entry["mIoU"]["voc21"] == 59.7512
    assert entry["published"]["voc21"] == {"mIoU": 59.63, "source": "README.md:78 @b56bd30",
                                           "difference": pytest.approx(0.1212)}

    other = write_summary(tmp_path / "other")
    assert "| sclip_vitb16 | 50.00 |" in other and "published" not in other
    with open(tmp_path / "other" / "summary.csv") as f:
        assert next(csv.reader(f)) == ["setting", "voc21", "avg8", "avg_bg", "avg_nobg", "images_per_s", "test_loop_s",
                                       "peak_memory_gb"]


def test_a_failed_run_or_a_setting_without_numbers_shows_none(tmp_path):
    from proxyclip.commands.summary_table import write_summary
    _result(tmp_path, "naclip_vitb16", "voc21", 64.0, {"status": "failed: boom", "preset": "naclip_vitb16"})
    _result(tmp_path, "vitl14_dino_vitb8", "voc21", 61.0, {"status": "ok", "preset": "vitl14_dino_vitb8"})  # none
    _result(tmp_path, "corrclip_vitb16", "voc21", 74.0, {"status": "ok", "preset": "corrclip_vitb16"})  # rows with a setting only
    markdown = write_summary(tmp_path)
    assert pub.none_reason("vitl14_dino_vitb8")
    assert "published" not in markdown and "| vitl14_dino_vitb8 | 61.00 |" in markdown
    assert "| corrclip_vitb16 | 74.00 |" in markdown


def test_only_a_shipped_preset_run_as_it_is_counts_as_the_preset(tmp_path):
    from proxyclip.commands.eval_all import shipped_preset
    from proxyclip.shipped_configs import packaged_configs
    preset = packaged_configs() / "model" / "sclip_vitb16.yaml"
    assert shipped_preset(preset, []) == "sclip_vitb16"
    assert shipped_preset(ROOT / "configs" / "model" / "sclip_vitb16.yaml", ["--trainer.devices", "8"]) == "sclip_vitb16"
    assert shipped_preset(preset, ["--model.segmentor.init_args.logit_scale=50"]) is None      # another setting
    assert shipped_preset(preset, ["--trainer.precision", "16-mixed"]) is None
    assert shipped_preset(preset, [], data_config=tmp_path / "my_dataset.yaml") is None
    copy = tmp_path / "sclip_vitb16.yaml"
    copy.write_text(preset.read_text() + "  logit_scale: 50\n")
    assert shipped_preset(copy, []) is None                                                  # a user's file of that name
