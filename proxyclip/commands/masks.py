"""`proxyclip-masks`: precompute SAM 2 region masks (`<stem>.npz`, key `instance_mask`) for CorrCLIP.

    proxyclip-masks --config configs/voc21.yaml --output data/region_masks/voc [--root data/VOCdevkit/VOC2012]
    proxyclip-masks --images photos/ more/*.jpg --output masks/ [--devices 8] [--num_nodes 2]

The images are the benchmark's (its DataModule's image list, the original files at full size) or the files, folders
and globs given. Masks already in the output folder are skipped before any model is built, so an interrupted run
resumes. The work goes through Lightning's predict loop: with several devices or nodes each image is done by
exactly one process. An image that cannot be read is listed at the end (exit code 1); every other one is done.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from datamodules.errors import examples

from ..errors import ProxyCLIPError
from ..method.loading import WeightsUnavailable
from proxyclip.methods.corrclip.sam2_masks import (DEFAULT_SAM2, SAM2_MODELS, check_generator_options, mask_path, read_rgb,
                                 require_sam2, sam2_remedy)
from .entry_points import interrupted_line, launch_rank
from .messages import quiet_third_party
from .user_errors import find_user_error

PROG = "proxyclip-masks"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", help="a benchmark config (configs/voc21.yaml) or its data config: every image of it")
    which.add_argument("--images", nargs="+", help="image files, folders (searched recursively) or globs")
    parser.add_argument("--root", help="the benchmark's data folder, instead of the config's `root`")
    parser.add_argument("--output", required=True, help="the folder of the masks (<image stem>.npz); made if missing")
    sam = parser.add_argument_group("SAM 2 (the original's settings are the defaults)")
    sam.add_argument("--model", default=DEFAULT_SAM2, choices=list(SAM2_MODELS), help="the SAM 2 config")
    sam.add_argument("--checkpoint", default=None,
                     help="a local checkpoint file; default: the official one of --model, downloaded once into torch.hub's "
                          "cache (proxyclip-weights download sam2_hiera_l prefetches it); 'random': random weights (tests)")
    sam.add_argument("--points_per_side", type=int, default=8, help="the prompt grid is N x N")
    sam.add_argument("--pred_iou_thresh", type=float, default=0.4, help="drop masks with a lower predicted IoU")
    sam.add_argument("--stability_score_thresh", type=float, default=0.4, help="drop masks with a lower stability score")
    sam.add_argument("--multimask_output", action="store_true", help="SAM's three masks per prompt instead of one")
    sam.add_argument("--half", action="store_true", help="the original's float16 model and fp16 autocast (CUDA only)")
    sam.add_argument("--hydra_override", action="append", default=[], help=argparse.SUPPRESS)   # tiny models in tests
    run = parser.add_argument_group("where it runs (Lightning's Trainer)")
    run.add_argument("--accelerator", default="auto", help="cpu, gpu, cuda, auto, ...")
    run.add_argument("--devices", default="auto", help="a number, a list such as 0,1, or auto")
    run.add_argument("--num_nodes", type=int, default=1, help="machines (each with --devices devices)")
    run.add_argument("--num_workers", type=int, default=0, help="DataLoader processes that read the images")
    return parser.parse_args(argv)


# ---- the images -----------------------------------------------------------------------------------------------------

def benchmark_images(config: str, root: str | None) -> tuple[list[str], list[str], str]:
    """(the image files of the benchmark config's DataModule, those listed but absent, a description)."""
    from ..config_files import config_section
    from ..shipped_configs import find_config

    path = find_config(config)
    if not path.is_file():
        raise ProxyCLIPError(f"Config '{config}' does not exist (looked for {path}). Give a benchmark config such as "
                             "configs/voc21.yaml, or --images for files and folders.")
    whole = config_section(path, None)
    data = whole if "class_path" in whole else config_section(path, "data")
    class_path = data.get("class_path")
    if not isinstance(class_path, str) or "." not in class_path:
        raise ProxyCLIPError(f"{path} names no DataModule (no `data:` with a `class_path`). Give a benchmark config "
                             "such as configs/voc21.yaml, or --images for files and folders.")
    module, _, name = class_path.rpartition(".")
    try:
        datamodule = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ProxyCLIPError(f"The DataModule {class_path} of {path} cannot be imported ({exc}).") from exc
    folder = root or (data.get("init_args") or {}).get("root")
    if not folder or not hasattr(datamodule, "scan"):
        raise ProxyCLIPError(f"{path}: {class_path} has no image list to read (no `root`, or not a benchmark "
                             "DataModule). Give --root, or --images for files and folders.")
    scan = datamodule.scan(folder)    # a missing root or split file: a DataError saying which
    images = [str(image) for image, _ in scan.pairs]
    if not images:
        raise ProxyCLIPError(f"{scan.source} lists no {datamodule.dataset_name} images. Point --root at the complete "
                             "dataset.")
    absent = {str(p) for p in scan.missing_images}
    return [i for i in images if i not in absent], sorted(absent), f"{datamodule.dataset_name} under {folder}"


def given_images(items: Sequence[str]) -> list[str]:
    from datamodules.image_folder import find_images

    return find_images(list(items))


def check_stems(images: Sequence[str]) -> None:
    """The masks are found by the image's stem (as the original reads them): two images may not share one."""
    seen: dict[str, str] = {}
    clashes = []
    for image in images:
        stem = Path(image).stem
        if stem in seen and seen[stem] != image:
            clashes.append(f"{seen[stem]} and {image}")
        seen.setdefault(stem, image)
    if clashes:
        raise ProxyCLIPError(f"{len(clashes)} pairs of images share a file stem, e.g. {examples(clashes, 3)}; their masks "
                             "would be the same <stem>.npz (masks are looked up by stem, as the original does). Make the "
                             "masks of each group into its own --output folder.")


def check_output(folder: str) -> Path:
    """Make `folder` and check that a file can be written there, before any model is built."""
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".proxyclip-masks-check"):
            pass
    except OSError as exc:
        raise ProxyCLIPError(f"The output folder {path} cannot be written ({exc.strerror or exc}). Give --output a "
                             "folder you can write to.") from None
    return path


def check_accelerator(args: argparse.Namespace) -> None:
    from .hardware import check_accelerator as check, resolved_accelerator
    from datamodules.loader import check_worker_sockets

    check(args.accelerator)
    if args.num_workers < 0 or args.num_nodes < 1:
        raise ProxyCLIPError(f"--num_workers must be >= 0 and --num_nodes >= 1; got {args.num_workers} and {args.num_nodes}.")
    check_worker_sockets(args.num_workers)
    if args.half and resolved_accelerator(args.accelerator) not in ("cuda", "gpu"):
        raise ProxyCLIPError(f"--half (the original's float16 with fp16 autocast) needs a CUDA GPU; --accelerator "
                             f"{args.accelerator} runs on {resolved_accelerator(args.accelerator)}. Drop --half (fp32, the "
                             "default) or run with --accelerator gpu on a machine with one.")


def checkpoint_value(text: str | None) -> bool | str | None:
    if text is None:
        return True
    if text == "random":
        return None
    if not Path(text).expanduser().is_file():
        raise ProxyCLIPError(f"The SAM 2 checkpoint {text} does not exist. Give the path of a downloaded checkpoint "
                             f"(e.g. {SAM2_MODELS[DEFAULT_SAM2].url.rsplit('/', 1)[1]}), or leave --checkpoint out to "
                             "use torch.hub's cache (proxyclip-weights download sam2_hiera_l fills it).")
    return text


# ---- the Lightning pieces -------------------------------------------------------------------------------------------

def lightning_pieces():
    """The Dataset, DataModule and LightningModule (defined here so that `--help` and refusals need no Lightning)."""
    from lightning.pytorch import LightningDataModule, LightningModule
    from torch.utils.data import DataLoader, Dataset

    from datamodules.loader import each_once_sampler
    from proxyclip.methods.corrclip.sam2_masks import SAM2MaskGenerator, write_instance_mask

    class Images(Dataset):
        """Item: {"image": uint8 [3, H, W] (the file as the original reads it), "path"} or {"path", "error"}."""

        def __init__(self, paths: Sequence[str]):
            self.paths = list(paths)

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, index: int) -> dict[str, Any]:
            try:
                return {"image": read_rgb(self.paths[index]), "path": self.paths[index]}
            except ProxyCLIPError as exc:
                return {"path": self.paths[index], "error": str(exc)}

    def collate(items):
        return {"images": [i["image"] for i in items if "error" not in i],
                "paths": [i["path"] for i in items if "error" not in i]}

    class ToDo(LightningDataModule):
        def __init__(self, paths: Sequence[str], num_workers: int):
            super().__init__()
            self.dataset, self.num_workers = Images(paths), num_workers

        def predict_dataloader(self) -> DataLoader:
            sampler = each_once_sampler(self.dataset, self.trainer, "the images to do")
            return DataLoader(self.dataset, batch_size=1, shuffle=False, sampler=sampler, collate_fn=collate,
                              num_workers=self.num_workers)

        def transfer_batch_to_device(self, batch, device, dataloader_idx):   # SAM 2's generator takes host images
            return batch

    class MaskWriter(LightningModule):
        """predict_step: each image's region ids, written to `<output>/<stem>.npz` at once."""

        def __init__(self, generator: SAM2MaskGenerator, output: Path):
            super().__init__()
            self.generator, self.output = generator, output

        def predict_step(self, batch: dict[str, list], batch_idx: int) -> list[str]:
            return [str(write_instance_mask(self.output, Path(path).stem, self.generator(image)))
                    for image, path in zip(batch["images"], batch["paths"])]

    return ToDo, MaskWriter


# ---- the command ----------------------------------------------------------------------------------------------------

def plan(args: argparse.Namespace) -> tuple[list[str], list[str], Path, str]:
    """(the images to do, those absent from the benchmark's list, the output folder, what the images are), after
    every check that needs no model."""
    check_generator_options(args.points_per_side, args.pred_iou_thresh, args.stability_score_thresh)
    if args.config:
        images, absent, what = benchmark_images(args.config, args.root)
    else:
        if args.root:
            raise ProxyCLIPError("--root goes with --config (the benchmark's data folder); --images takes the files "
                                 "and folders themselves.")
        images, absent, what = given_images(args.images), [], "the images given"
    check_stems(images + absent)
    output = check_output(args.output)
    check_accelerator(args)
    to_do = [image for image in images if not mask_path(output, image).is_file()]
    return to_do, absent, output, f"{what}: {len(images) - len(to_do)} of {len(images)} images already have masks in {output}"


def unreadable_listing(bad: Sequence[tuple[str, str]]) -> str:
    shown = "".join(f"\n  {path}: {why}" for path, why in bad[:20])
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    return shown + more


def build_trainer(args: argparse.Namespace) -> Any:
    """The Lightning Trainer on the asked devices; a device or node count this machine cannot run is refused."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch import Trainer

    devices: Any = args.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    try:                          # the Trainer checks devices and nodes before the model is built
        return Trainer(accelerator=args.accelerator, devices=devices, num_nodes=args.num_nodes, logger=False,
                       enable_checkpointing=False, enable_model_summary=False, precision="32-true")
    except MisconfigurationException as exc:
        raise ProxyCLIPError(f"Lightning cannot run on --accelerator {args.accelerator} --devices {args.devices} "
                             f"--num_nodes {args.num_nodes}: {exc} Choose devices this machine has (--devices auto "
                             "takes them all).") from None


def build_generator(args: argparse.Namespace, checkpoint: Any) -> Any:
    """SAM 2's mask generator with the command's settings; missing weights name this command's --checkpoint."""
    from proxyclip.methods.corrclip.sam2_masks import SAM2MaskGenerator

    try:
        return SAM2MaskGenerator(args.model, checkpoint, points_per_side=args.points_per_side,
                                 pred_iou_thresh=args.pred_iou_thresh,
                                 stability_score_thresh=args.stability_score_thresh,
                                 multimask_output=args.multimask_output, half=args.half,
                                 hydra_overrides=args.hydra_override)
    except WeightsUnavailable as exc:     # this command's way to give the file: --checkpoint
        raise WeightsUnavailable(exc.what, remedy=sam2_remedy(args.model, "`--checkpoint FILE`")) from exc


def write_masks(args: argparse.Namespace, to_do: list[str], output: Path) -> bool:
    """Write the masks of `to_do` into `output` on every process; returns whether this process is rank 0. A Ctrl-C
    says how many masks are written."""
    require_sam2()   # after the listing: a user without sam2 learns what is left to do, then how to install
    checkpoint = checkpoint_value(args.checkpoint)
    ToDo, MaskWriter = lightning_pieces()
    trainer = build_trainer(args)
    generator = build_generator(args, checkpoint)
    try:
        trainer.predict(MaskWriter(generator, output), datamodule=ToDo(to_do, args.num_workers), return_predictions=False)
    except SystemExit as exc:     # Lightning's exit after Ctrl-C in its loop (see proxyclip/commands/interrupts.py)
        if trainer.interrupted and isinstance(exc.__context__, KeyboardInterrupt):
            from .interrupts import RunInterrupted

            done = sum(mask_path(output, image).is_file() for image in to_do)
            raise RunInterrupted(interrupted_line("during the masks", f"{done} of the {len(to_do)} masks to do are "
                                                  f"written in {output}/ (each file complete); run the same command "
                                                  "again for the rest")) from None
        raise
    trainer.strategy.barrier()    # every process has written its masks before rank 0 counts them
    return trainer.is_global_zero


def report(to_do: list[str], absent: list[str], output: Path) -> int:
    """Rank 0's last lines: how many masks were written and which images could not be done; 1 when one could not."""
    missing = [image for image in to_do if not mask_path(output, image).is_file()]
    bad = [(image, "listed by the benchmark but absent") for image in absent]
    for image in missing:
        try:
            read_rgb(image)
            bad.append((image, "no mask was written (the run stopped before it)"))
        except ProxyCLIPError as exc:
            bad.append((image, str(exc)))
    done = len(to_do) - len(missing)
    print(f"[{PROG}] wrote {done} mask{'' if done == 1 else 's'} to {output}.", flush=True)
    if bad:
        print(f"error: {len(bad)} image{'' if len(bad) == 1 else 's'} could not be done:{unreadable_listing(bad)}\n"
              "Re-download or re-extract them (or remove them from the list), then run the same command again: the "
              "masks already written are kept and skipped.", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    to_do, absent, output, progress = plan(args)
    rank0 = launch_rank() == 0     # every process lists the same images; one says so
    if rank0:
        print(f"[{PROG}] {progress}; {len(to_do)} to do.", flush=True)
    if to_do:
        rank0 = write_masks(args, to_do, output)
    return report(to_do, absent, output) if rank0 else 0



def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `proxyclip-masks`; returns the exit code (2: a user error, before any model was built)."""
    args = parse(argv)
    quiet_third_party()
    try:
        return run(args)
    except Exception as exc:   # noqa: BLE001 - a user error is one paragraph; anything else is a bug: traceback
        found = find_user_error(exc)
        if found is None:
            raise
        print(f"error: {found}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
