"""The lists of methods, presets and benchmarks in README.md, docs/*.md and the help come from the registries
(proxyclip/commands/listings.py): a generated block that differs from what the registries give fails here, naming the
command that rewrites it, and the README carries no test counts, which would be stale after the next test added."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxyclip.commands import listings
from proxyclip.method.last_block import LAST_BLOCKS

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_every_generated_block_is_what_the_registries_give():
    stale = {str(path.relative_to(REPO_ROOT)): names for path, names in listings.stale_blocks().items()}
    assert stale == {}, f"stale generated blocks {stale}: run `{listings.COMMAND}`"


def test_the_readme_and_the_docs_generate_their_lists():
    """Where each whole list lives: a hand-kept copy beside these would drift again."""
    blocks = {path.name: {m["name"] for m in listings.BLOCK.finditer(path.read_text())} for path in listings.documents()}
    assert {"methods", "presets", "datasets", "benchmark-names", "baseline-titles", "tiny-presets"} <= blocks["README.md"]
    assert {"benchmarks", "baseline-titles"} <= blocks["method.md"]
    assert {"common-values", "post-processing"} <= blocks["protocols.md"]


def _lists_every(names: list[str], text: str, separator: str) -> bool:
    """Whether `text` holds a run of `names` joined by `separator`, in any order, that names every one of them."""
    name = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    runs = re.finditer(rf"(?:{name})(?:(?:{separator})(?:{name}))+", text)
    return any(set(names) <= set(re.findall(name, run.group())) for run in runs)


@pytest.mark.parametrize("document", ["README.md", "docs/method.md", "docs/protocols.md"])
def test_no_hand_kept_enumeration_of_every_method_or_benchmark(document):
    """Every baseline's title (or every benchmark's name) in a row, outside a generated block, is a hand-kept list;
    prose that names a few as examples is fine."""
    text = listings.BLOCK.sub("", (REPO_ROOT / document).read_text())
    assert not _lists_every(listings.method_titles(baselines_only=True), text, r",\s*(?:and\s+)?|\s+and\s+"), \
        f"{document} lists every method by hand: use <!-- generated: baseline-titles --> (or method-titles)"
    assert not _lists_every(list(listings.DATAMODULES), text, r"`?\W+`?"), \
        f"{document} lists every benchmark by hand: use <!-- generated: benchmark-names -->"


def test_the_check_finds_a_hand_kept_list_in_any_order():
    titles = listings.method_titles(baselines_only=True)
    assert _lists_every(titles, f"the baselines ({', '.join(reversed(titles[:-1]))} and {titles[-1]})",
                        r",\s*(?:and\s+)?|\s+and\s+")
    assert not _lists_every(titles, f"for example {titles[0]} and {titles[1]}", r",\s*(?:and\s+)?|\s+and\s+")
    assert _lists_every(list(listings.DATAMODULES), "NAMES=(" + " ".join(reversed(listings.DATAMODULES)) + ")", r"`?\W+`?")


def test_the_readme_carries_no_test_counts():
    readme = (REPO_ROOT / "README.md").read_text()
    counts = re.findall(r"\b\d[\d,]*\s+(?:of the\s+[\d,]+\s+)?(?:tests?|in the fast tier)\b|\b\d[\d,]* passed\b", readme)
    assert counts == [], f"README.md carries test counts {counts}: they are stale after the next test; keep the commands"


def test_a_stale_block_is_named_and_rewritten(tmp_path, capsys, monkeypatch):
    document = tmp_path / "README.md"
    document.write_text("Methods: <!-- generated: method-titles -->SCLIP<!-- /generated -->.\n\n"
                        "<!-- generated: benchmarks -->\n| old |\n<!-- /generated -->\n")
    assert list(listings.stale_blocks([document]).values()) == [["method-titles", "benchmarks"]]
    monkeypatch.setattr(listings, "REPOSITORY", tmp_path)
    monkeypatch.setattr(listings, "documents", lambda: [document])
    assert listings.main(["--check"]) == 1
    assert "README.md: stale generated blocks: method-titles, benchmarks" in capsys.readouterr().err
    assert listings.main(["--write"]) == 0 and listings.main(["--check"]) == 0
    text = document.read_text()
    assert f"Methods: <!-- generated: method-titles -->{', '.join(listings.method_titles())}<!-- /generated -->." in text
    assert "<!-- generated: benchmarks -->\n| benchmark | name |" in text and text.endswith("|\n<!-- /generated -->\n")


def test_an_unknown_listing_is_refused():
    with pytest.raises(KeyError, match="no listing named 'metods'"):
        listings.render("metods")


def test_the_lists_follow_the_registries():
    """Methods in listing order with their titles (ProxyCLIP first), every shipped preset under its method."""
    assert listings.method_titles()[0] == "ProxyCLIP" and "SC-CLIP" in listings.method_titles()
    assert len(listings.method_titles()) == len(LAST_BLOCKS)
    presets = [preset for names in listings.presets_by_method().values() for preset in names]
    tiny = [preset for names in listings.presets_by_method(tiny=True).values() for preset in names]
    assert sorted(presets + tiny) == listings.preset_names() and all(p.startswith("tiny_") for p in tiny)
    assert "default" in listings.presets_by_method()["proxyclip"]


def test_the_help_names_every_method_from_the_registry():
    from proxyclip.commands import cli, protocols

    for title in listings.method_titles():
        assert title in cli.DESCRIPTION
        assert title in dict(cli._MOST_USED)["--model configs/model/<preset>.yaml"] or title == "ProxyCLIP"
    assert "SCLIP, ClearCLIP" not in protocols.__doc__    # generic wording: the list is the registry's
