"""eval_all's `--protocol original|common|both` (docs/protocols.md): where each protocol's results and table go.

original: OUT/<setting>/<benchmark>/ and OUT/summary.* exactly as before the protocols (earlier outputs resume).
common: OUT/common/<setting>/<benchmark>/ and OUT/common/summary.*, each run with `proxyclip test --protocol common`.
both: one, then the other, and both tables. The original protocol's table skips the `common` folder, so no setting may
be named `common`. Published numbers (proxyclip/published) are the original protocol's: a common-protocol run is never
shown beside one (shipped_preset sees the `--protocol common` option, and published_run refuses such a run).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .common_protocol import COMMON, PROTOCOLS

CHOICES = (*PROTOCOLS, "both")
HELP = ("original (default): each method's own per-benchmark values, results in OUTPUT/<setting>/<benchmark>/; "
        "common: one protocol for every method (configs/common/<benchmark>.yaml), results and table in OUTPUT/common/; "
        "both: the two, and both tables")


def protocol_runs(choice: str, output: Path) -> list[tuple[str, Path, list[str]]]:
    """(protocol, its results folder, the arguments that ask `proxyclip test` for it) for each protocol to run."""
    runs = {"original": (output, []), COMMON: (output / COMMON, ["--protocol", COMMON])}
    chosen = list(PROTOCOLS) if choice == "both" else [choice]
    return [(name, *runs[name]) for name in chosen]


def refuse_common_setting(models: Sequence[Path]) -> str | None:
    """The error for a model file named common.yaml (its setting would be the common protocol's folder), else None."""
    named = [str(model) for model in models if model.stem == COMMON]
    if not named:
        return None
    return (f"model config {named[0]}: a setting named '{COMMON}' would be written into OUTPUT/{COMMON}/, the common "
            f"protocol's results folder; rename the file (its stem names the setting)")


def is_setting_folder(folder: Path, output: Path) -> bool:
    """Whether `folder` (a child of `output`) holds one setting's benchmarks: not the common protocol's folder."""
    return not (folder.name == COMMON and folder.parent == output)


def ran_common(run: dict[str, Any]) -> bool:
    """Whether a run.json records a common-protocol run (never shown beside a published number)."""
    return (run.get("config") or {}).get("protocol") == COMMON
