"""Region masks from SAM 2's automatic mask generator, as CorrCLIP draws them (one integer id per pixel, 0 = no mask).

The original (zdk258/CorrCLIP, CorrCLIPv1/corrclip_segmentor.py) has two sources of the same [H, W] integer map:
* `set_mask_generator('sam2')` (lines 263-272) builds `sam2_hiera_l.yaml` with `sam2_hiera_large.pt` through
  `build_sam2(..., apply_postprocessing=False)`, casts it to fp16 and wraps it in `SAM2AutomaticMaskGenerator(
  points_per_side=8, pred_iou_thresh=0.4, stability_score_thresh=0.4, multimask_output=False)`; `generate_mask`
  (lines 329-342) opens the image with PIL `.convert("RGB")`, generates under `inference_mode` + fp16 autocast, sorts
  the masks by area, smallest first, and paints ids 1, 2, ... in that order, so a larger mask overwrites a smaller
  one where they overlap; pixels no mask covers stay 0.
* `mask_generator=None` (lines 278-281) reads `<instance_mask_path>/<image stem>.npz`, key `instance_mask`: the
  masks the authors published (region_masks.zip), or those `proxyclip-masks` writes.

`SAM2MaskGenerator` is the first, built through the `sam2` package's own factory (`pip install .[sam2]`);
`read_instance_mask` / `write_instance_mask` are the second. Precision: fp32 by default, as the rest of this harness;
`half=True` is the original's fp16 (CUDA only). docs/region_masks.md says where fp16 changes which masks survive.
"""
from __future__ import annotations

import os
import uuid
import warnings
import zipfile
import zlib
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from proxyclip.errors import ProxyCLIPError
from proxyclip.method.loading import Remedy, download_guard, load_state_dict_checked, load_state_dict_file

INSTALL = "pip install .[sam2]"   # the extra of pyproject.toml (from PyPI: pip install 'proxyclip[sam2]')
NPZ_KEY = "instance_mask"          # the original's key (corrclip_segmentor.py:280)


class SAM2Model(NamedTuple):
    """One official SAM 2 (July 2024 release): its Hydra config in the sam2 package and its checkpoint."""

    size: str
    config: str
    url: str


_RELEASE = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
#: The four SAM 2 checkpoints by the name of their config (CorrCLIP uses sam2_hiera_l, its README line 59).
SAM2_MODELS: dict[str, SAM2Model] = {
    "sam2_hiera_t": SAM2Model("Hiera-T", "sam2_hiera_t.yaml", _RELEASE + "sam2_hiera_tiny.pt"),
    "sam2_hiera_s": SAM2Model("Hiera-S", "sam2_hiera_s.yaml", _RELEASE + "sam2_hiera_small.pt"),
    "sam2_hiera_b+": SAM2Model("Hiera-B+", "sam2_hiera_b+.yaml", _RELEASE + "sam2_hiera_base_plus.pt"),
    "sam2_hiera_l": SAM2Model("Hiera-L", "sam2_hiera_l.yaml", _RELEASE + "sam2_hiera_large.pt"),
}
DEFAULT_SAM2 = "sam2_hiera_l"
# How a run is given a downloaded SAM 2 checkpoint: CorrCLIP's masks made during the run, and `proxyclip-masks`
IN_A_RUN = "`model.segmentor.method_kwargs.sam2_checkpoint: FILE` (CorrCLIP's masks made during the run)"
IN_THE_COMMAND = "`proxyclip-masks --checkpoint FILE`"


def sam2_remedy(model: str, give_file: str = f"{IN_A_RUN} or {IN_THE_COMMAND}") -> Remedy:
    """How to get the SAM 2 checkpoint of `model` onto a machine without network (WeightsUnavailable's paragraph):
    `proxyclip-weights download <model>` elsewhere, then torch.hub's cache; or the file itself, given as `give_file`."""
    url = SAM2_MODELS[model].url
    return Remedy(model, "proxyclip-weights", "~/.cache/torch/hub/checkpoints",
                  f"download the checkpoint file ({url}) and give it: {give_file}")


def sam2_missing_message() -> str:
    """The paragraph for a machine without the `sam2` package."""
    return (f"SAM 2 region masks need the `sam2` package, which is not installed. Install the optional extra: "
            f"`{INSTALL}` in the proxyclip checkout (it adds sam2>=1.1 and its hydra-core / iopath; torch is left as "
            "it is; set SAM2_BUILD_CUDA=0 to skip sam2's optional CUDA extension, which the masks do not need). Or use "
            "masks made elsewhere: `proxyclip-masks` on a machine with sam2, or the original's published "
            "region_masks.zip, read from their folder.")


def require_sam2() -> None:
    """Raise the one-paragraph ProxyCLIPError when `sam2` cannot be imported."""
    try:
        import sam2.build_sam  # noqa: F401
    except ImportError as exc:
        raise ProxyCLIPError(sam2_missing_message()) from exc


def check_generator_options(points_per_side: int, pred_iou_thresh: float, stability_score_thresh: float) -> None:
    """The generator's options, refused in one paragraph before anything is built."""
    problems = []
    if isinstance(points_per_side, bool) or not isinstance(points_per_side, int) or points_per_side < 1:
        problems.append(f"points_per_side must be a positive integer (the grid of prompts is points_per_side^2), got "
                        f"{points_per_side!r}")
    for name, value in (("pred_iou_thresh", pred_iou_thresh), ("stability_score_thresh", stability_score_thresh)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            problems.append(f"{name} must be a number in [0, 1], got {value!r}")
    if problems:
        raise ProxyCLIPError("Bad SAM 2 mask generator options: " + "; ".join(problems) + ". The original's values "
                             "are points_per_side 8, pred_iou_thresh 0.4, stability_score_thresh 0.4.")


def instance_mask_from_annotations(anns: Iterable[Mapping[str, Any]], size: tuple[int, int]) -> torch.Tensor:
    """SAM's annotations ({"segmentation": bool [H, W], "area": int, ...}) -> int64 [H, W]: masks sorted by area,
    smallest first (a stable sort: equal areas keep the generator's order), painted with ids 1, 2, ... in that
    order, so where masks overlap the larger one wins; 0 where no mask covers a pixel (corrclip_segmentor.py:334-341)."""
    painted = np.zeros(tuple(size), dtype=np.int64)
    for instance_id, ann in enumerate(sorted(anns, key=lambda a: a["area"]), start=1):
        segmentation = np.asarray(ann["segmentation"])
        if segmentation.shape != painted.shape or segmentation.dtype != np.bool_:
            raise ValueError(f"a mask must be a boolean [H, W] array of the image's size {tuple(size)}; got "
                             f"{segmentation.dtype} {segmentation.shape} (SAM2AutomaticMaskGenerator's output_mode "
                             "must be binary_mask)")
        painted[segmentation] = instance_id
    return torch.from_numpy(painted)


def read_rgb(path: str | os.PathLike) -> torch.Tensor:
    """An image file as the original's generate_mask reads it: PIL, `.convert("RGB")` (no EXIF rotation), as uint8
    [3, H, W]. Raises ProxyCLIPError naming the file when PIL cannot read it (a truncated file included)."""
    try:
        with Image.open(path) as opened:
            array = np.array(opened.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ProxyCLIPError(f"The image {path} cannot be read ({exc}). Re-download or re-extract it.") from None
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def mask_path(folder: str | os.PathLike, image_path: str | os.PathLike) -> Path:
    """Where the mask of `image_path` lies: `<folder>/<image stem>.npz` (corrclip_segmentor.py:280)."""
    return Path(folder).expanduser() / f"{Path(image_path).stem}.npz"


def read_instance_mask(folder: str | os.PathLike, image_path: str | os.PathLike) -> torch.Tensor:
    """`<folder>/<stem of image_path>.npz`'s `instance_mask` as int64 [H, W] (any integer dtype is accepted).
    A missing or unusable file is a ProxyCLIPError naming it and the command that makes it."""
    path = mask_path(folder, image_path)
    make = (f"Make the masks with `proxyclip-masks --images {image_path} --output {Path(folder)}` (or, for a whole "
            f"benchmark, `proxyclip-masks --config configs/<benchmark>.yaml --output {Path(folder)}`; {INSTALL} "
            "first), or extract the original's published region_masks.zip there.")
    if not path.is_file():
        raise ProxyCLIPError(f"No region mask for the image {image_path}: {path} does not exist. {make}")
    try:
        mask = load_instance_mask(path)
    except UnusableMask as exc:
        raise ProxyCLIPError(f"The region mask file {path} {exc}. Delete it and make it again. {make}") from None
    return torch.from_numpy(mask.astype(np.int64))


class UnusableMask(ValueError):
    """Why a region mask file cannot be used, as a clause that follows its name ("cannot be read (...)")."""


def load_instance_mask(path: str | os.PathLike) -> np.ndarray:
    """The `instance_mask` array of the npz file `path`, as stored: read whole, so that a damaged file (truncated: no
    zip directory; corrupt: a bad CRC) shows here. Raises UnusableMask: the key is absent, the file cannot be read, or
    the array is no [H, W] of integer ids (read_instance_mask and the CLI's check of a whole folder word it)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if NPZ_KEY not in data.files:
                raise UnusableMask(f"holds no '{NPZ_KEY}' array (it has {', '.join(data.files) or 'none'})")
            mask = data[NPZ_KEY]
    except UnusableMask:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UnusableMask(f"cannot be read ({exc})") from None
    if mask.ndim != 2 or not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_):
        raise UnusableMask(f"is {mask.dtype} {mask.shape}, not an [H, W] array of integer region ids")
    return mask


def write_instance_mask(folder: str | os.PathLike, stem: str, mask: torch.Tensor | np.ndarray) -> Path:
    """Write `<folder>/<stem>.npz` (np.savez_compressed, key `instance_mask`, int64 as the original paints it)
    atomically: a temporary file in the same folder, then os.replace, so an interrupted run never leaves a
    half-written mask that a resumed run would take as done."""
    folder = Path(folder).expanduser()
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"a region mask is an integer [H, W] array; got {array.dtype} {array.shape}")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.npz"
    # a name of this process's own (several processes write into one folder), opened as a plain new file so that the
    # mask gets the user's usual permissions (mkstemp's would be private to the user)
    temporary = folder / f".{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.npz.part"
    try:
        with open(temporary, "xb") as file:   # a file object: savez would append .npz to a name
            np.savez_compressed(file, **{NPZ_KEY: array.astype(np.int64, copy=False)})
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


class SAM2MaskGenerator(nn.Module):
    """SAM 2's automatic mask generator with CorrCLIP's settings: uint8 RGB [3, H, W] -> int64 region ids [H, W]."""

    def __init__(self, model: str = DEFAULT_SAM2, checkpoint: bool | str | None = True, points_per_side: int = 8,
                 pred_iou_thresh: float = 0.4, stability_score_thresh: float = 0.4, multimask_output: bool = False,
                 half: bool = False, hydra_overrides: Sequence[str] = ()):
        """
        Args:
            model: The SAM 2 config: sam2_hiera_l (the original's), sam2_hiera_b+, sam2_hiera_s or sam2_hiera_t.
            checkpoint: True: the official checkpoint of `model`, downloaded once into torch.hub's cache
                (`proxyclip-weights download sam2_hiera_l` prefetches it); a path: a local checkpoint (`{"model":
                state_dict}` as Meta publishes it, or a bare state dict); None / False: random weights (tests).
            points_per_side: The prompt grid is points_per_side x points_per_side (the original: 8).
            pred_iou_thresh: Masks whose predicted IoU is below this are dropped (the original: 0.4).
            stability_score_thresh: Masks whose stability score is below this are dropped (the original: 0.4).
            multimask_output: One mask per prompt (False, the original's) or SAM's three.
            half: The original's numerics: the model in float16 and fp16 autocast (CUDA only). Default fp32.
            hydra_overrides: Extra Hydra overrides of the config (e.g. a tiny Hiera for tests), as build_sam2 takes them.
        """
        super().__init__()
        check_generator_options(points_per_side, pred_iou_thresh, stability_score_thresh)
        if model not in SAM2_MODELS:
            raise ProxyCLIPError(f"Unknown SAM 2 model {model!r}; the known ones are {', '.join(SAM2_MODELS)} (the "
                                 f"original uses {DEFAULT_SAM2}).")
        require_sam2()
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
        from sam2.build_sam import build_sam2

        self.name, self.half = model, bool(half)
        self.settings = dict(points_per_side=points_per_side, pred_iou_thresh=float(pred_iou_thresh),
                             stability_score_thresh=float(stability_score_thresh), multimask_output=bool(multimask_output))
        spec = SAM2_MODELS[model]
        # Built on the CPU without weights; ours load them below, strictly, refusing a checkpoint that does not fit in
        # one paragraph that names the keys (sam2's own loader logs them and raises a bare RuntimeError).
        self.model = build_sam2(spec.config, None, device="cpu", mode="eval", hydra_overrides_extra=list(hydra_overrides),
                                apply_postprocessing=False)
        self.weights = self._load(checkpoint, spec)
        if self.half:
            self.model.half()
        with warnings.catch_warnings():   # sam2's transforms use torch.jit.script, which torch now calls deprecated
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
            self.generator = SAM2AutomaticMaskGenerator(self.model, output_mode="binary_mask", **self.settings)

    def _load(self, checkpoint: bool | str | None, spec: SAM2Model) -> str:
        """Load `checkpoint` into the model strictly; returns its provenance (URL, file or "random")."""
        what = f"SAM 2 {spec.size} ({self.name})"
        if checkpoint is True:
            with download_guard(what, sam2_remedy(self.name)):
                state = torch.hub.load_state_dict_from_url(spec.url, map_location="cpu", weights_only=True)
            state = state.get("model", state) if isinstance(state, Mapping) else state
            load_state_dict_checked(self.model, state, spec.url, what)
            return spec.url
        if checkpoint:
            load_state_dict_checked(self.model, load_state_dict_file(checkpoint), str(checkpoint), what)
            return str(checkpoint)
        return "random"

    @property
    def image_size(self) -> int:
        """The side SAM 2 resizes every image to (1024 for the official models)."""
        return int(self.model.image_size)

    def annotations(self, image: torch.Tensor) -> list[dict[str, Any]]:
        """SAM2AutomaticMaskGenerator's output for a uint8 RGB [3, H, W] image."""
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"SAM2MaskGenerator takes a uint8 RGB image [3, H, W]; got {image.dtype} {tuple(image.shape)}")
        device = next(self.model.parameters()).device
        if self.half and device.type != "cuda":
            raise ProxyCLIPError("SAM 2 with half=True (the original's fp16) needs a CUDA device; on this one leave "
                                 "half off (fp32, the default).")
        array = np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.half else nullcontext()
        with torch.inference_mode(), autocast:
            return self.generator.generate(array)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 RGB [3, H, W] -> int64 [H, W]: 0 where no mask, else the id of the largest mask covering the pixel."""
        return instance_mask_from_annotations(self.annotations(image), tuple(image.shape[1:]))

    def mask_for_file(self, path: str | os.PathLike) -> torch.Tensor:
        """The region ids of an image file, read as the original reads it (PIL, RGB, full size)."""
        return self(read_rgb(path))
