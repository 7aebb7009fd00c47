"""A run never replaces an earlier run's results silently.

`test` into a folder that already holds results (metrics.json, per_class.csv, summary.md, per_class_iou.png,
panels/), and `predict` into a folder that already holds outputs of the same names (or an earlier skipped.json),
are refused before any work, with the fix: `--overwrite`, or another folder. With `--overwrite` the earlier
files are removed just before the run starts, so a folder never mixes two runs. Lightning's default
`version_N` folders are new for every run and need neither.
"""
from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any

from datamodules import DataError
from datamodules.image_folder import find_images, output_names

from ..errors import ProxyCLIPError
from ..shell.prediction_writer import SKIPPED_FILE, output_files
from ..shell.result_writer import RESULT_FILES
from .outputs import predictions_folder, results_folder

OVERWRITE_FLAG = "--overwrite"
OVERWRITE_HELP = ("Replace the results of an earlier run in the output folder (they are removed before this run "
                  "starts); without it, such a folder is refused.")


def prediction_names(data: Any) -> list[str]:
    """The output name of every input of the data config `data` (class_path, init_args), as the run will name them;
    [] when the inputs cannot be listed (the DataModule then says why, with its own error)."""
    module, _, name = str(getattr(data, "class_path", "")).rpartition(".")
    init_args = getattr(data, "init_args", None)
    try:
        cls = getattr(importlib.import_module(module), name)
        if hasattr(init_args, "inputs"):                       # ImageFolderDataModule and its kind
            return list(output_names(find_images(init_args.inputs)).values())
        if hasattr(cls, "scan") and getattr(init_args, "root", None):   # a benchmark's images, named by their stems
            return [Path(image).stem for image, _ in cls.scan(init_args.root).pairs]
    except (DataError, ImportError, AttributeError, ValueError):
        pass
    return []


def earlier_outputs(config: Any, subcommand: str, names: list[str]) -> tuple[Path | None, list[Path]]:
    """(the folder this run writes into when it is known now, the files of earlier runs there that it would replace)."""
    if subcommand == "test":
        folder, files = results_folder(config), list(RESULT_FILES)
    else:
        folder, files = predictions_folder(config), [file for name in names for file in output_files(name)] + [SKIPPED_FILE]
    if folder is None or not folder.is_dir():
        return folder, []
    return folder, [folder / file for file in files if (folder / file).exists()]


def refuse_earlier_outputs(folder: Path, found: list[Path], subcommand: str, nodes: int = 1) -> None:
    """One paragraph: what is there, and the two ways on (with several nodes, that the folder must be shared)."""
    option = "--model.output_dir" if subcommand == "test" else "--prediction_writer.output_dir"
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
    what = "the results of an earlier run" if subcommand == "test" else "outputs of an earlier run for these inputs"
    shared = (f" With --trainer.num_nodes {nodes} every node checks this folder itself: it must be on a file system all "
              "nodes share." if nodes > 1 else "")
    raise ProxyCLIPError(f"The output folder {folder} already holds {what} ({shown}); a run never replaces them "
                         f"silently. Add {OVERWRITE_FLAG} to replace them (they are removed before this run starts), or "
                         f"write elsewhere, e.g. {option} {folder.parent / (folder.name + '_2')}.{shared}")


def remove_outputs(found: list[Path]) -> None:
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
