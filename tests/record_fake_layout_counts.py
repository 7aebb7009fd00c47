"""Record every method's per-class counts on the fake VOC layout: `python tests/record_fake_layout_counts.py OUT.json`.

A refactor that must not change any method's numbers (step 16) runs this before and after, on one machine, and
compares the two files: they must be identical. Each method runs under its own and the common protocol. Not a test (the counts of random tiny models may differ by a pixel
between CPU kinds); each method runs its tiny preset through `main.py test` with its own voc21 values, as
tests/test_tiny_presets.py does.
"""
from __future__ import annotations

import csv
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fake_datasets import write_voc  # noqa: E402
from test_tiny_presets import SMALL, TINY  # noqa: E402


def counts(method: str, root: Path, out: Path, protocol: list[str]) -> list[dict[str, str]]:
    from proxyclip.commands.cli import cli_main

    small = ["--data.init_args.scale", SMALL[method]] if method in SMALL else []
    cli_main(["test", "--config", "configs/voc21.yaml", "--model", f"configs/model/{TINY[method]}.yaml",
              "--data.init_args.root", str(root), "--model.output_dir", str(out), "--trainer.logger", "false", *small, *protocol])
    with open(out / "per_class.csv", newline="") as f:
        return list(csv.DictReader(f))


def main(target: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = write_voc(Path(tmp) / "data", n=3)
        recorded = {f"{method} {name}": counts(method, root, Path(tmp) / f"{method}_{name}", protocol)
                    for method in TINY for name, protocol in [("own", []), ("common", ["--protocol", "common"])]}
    Path(target).write_text(json.dumps(recorded, indent=1))
    print(f"per-class counts of {len(recorded)} runs (every method, both protocols) written to {target}")


if __name__ == "__main__":
    main(sys.argv[1])
