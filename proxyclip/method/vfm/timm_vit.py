"""What the timm-based families (DINO, DINOv2, DINOv3, MAE) share: one builder, weights, token bookkeeping.

A family is data (`TimmFamily`: its adapter and a table of variants, name -> timm tag and architecture), built by
one builder and registered by one call (`register_family`). The models come from `timm.create_model`, so tiny
test models (`model_kwargs`) run the same code as the real ones; the tag carries the weights and statistics
(timm's pretrained configuration); checkpoints go through the model module's own `checkpoint_filter_fn`, which
converts the original DINO / DINOv2 / DINOv3 / MAE layouts to timm's.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import timm
import torch
from torch import nn

from ...errors import ProxyCLIPError
from ..loading import download_guard, load_state_dict_checked, load_state_dict_file, weights_must_match
from .base import VFMAdapter


def create_timm_model(model_name: str, pretrained: bool | str, model_kwargs: dict[str, Any], what: str,
                      **forced: Any) -> nn.Module:
    """`timm.create_model(model_name, **model_kwargs, **forced)` with the weights `pretrained` names.

    pretrained: True -> timm's pretrained weights (download or cache); a path -> that checkpoint file;
        False -> random. `forced` are the arguments the adapter relies on; they win over `model_kwargs`.
    """
    chosen = sorted(k for k in model_kwargs if k.startswith("pretrained"))
    if chosen:   # e.g. pretrained_cfg_overlay could point timm at other weights, or at none (random, with a warning)
        raise ProxyCLIPError(f"vfm_kwargs {', '.join(chosen)}: the weights of {what} are chosen by `vfm` and "
                             "`vfm_pretrained` (true, false or a checkpoint file), not by timm's arguments. Leave "
                             f"{', '.join(chosen)} out of vfm_kwargs.")
    kwargs = {**model_kwargs, **forced}
    # The architecture first, on its own: what goes wrong there is the architecture's error, not the weights'.
    model = timm.create_model(model_name, pretrained=False, **kwargs)
    if pretrained is True:
        # what timm.create_model(pretrained=True) does after building (timm/models/_builder.py, build_model_with_cfg),
        # strictly: the download and the module's own converter of the original layout
        fix = (f"Where vfm_kwargs change the architecture ({model_kwargs or 'none given'}), timm's weights for "
               f"{model_name} cannot fit: drop those vfm_kwargs, or set vfm_pretrained to false (random) or to a "
               "checkpoint of this architecture. A broken download: delete it from the Hugging Face cache and download "
               "it again.")
        with download_guard(what), weights_must_match(what, fix):
            timm.models.load_pretrained(model, num_classes=getattr(model, "num_classes", 1000),
                                        in_chans=kwargs.get("in_chans", 3), filter_fn=checkpoint_filter(model),
                                        strict=True)
    elif isinstance(pretrained, (str, os.PathLike)) and str(pretrained):
        load_timm_checkpoint(model, pretrained, what)
    return model


def checkpoint_filter(model: nn.Module) -> Callable | None:
    """The converter of original checkpoint layouts (DINOv2's register_tokens, DINOv3's storage_tokens, ...) that
    the module defining `model` exposes, as every timm ViT family module does."""
    return getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)


def load_timm_checkpoint(model: nn.Module, path: str | os.PathLike, what: str) -> None:
    """Load a local checkpoint (timm layout or the original authors') into `model`, strictly."""
    state = load_state_dict_file(path)
    filter_fn = checkpoint_filter(model)
    if filter_fn is not None:
        try:
            state = filter_fn(dict(state), model)
        except Exception as exc:  # a layout the converter does not know: let the key check explain it
            raise ProxyCLIPError(f"Checkpoint '{path}' could not be converted for {what}: {exc!r}. "
                                 "Use a checkpoint of the same architecture.") from exc
    own = model.state_dict()
    # Features never use a classifier; a checkpoint that carries one must still load.
    state = {k: v for k, v in state.items() if not (k.startswith("head.") and k not in own)}
    load_state_dict_checked(model, state, str(path), what)


def crop_to_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 3, (H // p) * p, (W // p) * p].

    A stride-p convolution ignores the remainder rows/columns; timm's PatchEmbed asserts divisibility
    instead, so the floor rule (docs/method.md §2) is applied here by dropping exactly what the conv would ignore.
    """
    height, width = x.shape[-2:]
    if height < patch or width < patch:
        raise ProxyCLIPError(f"Input of {height}x{width} pixels is smaller than one {patch}x{patch} VFM patch.")
    return x[..., : height // patch * patch, : width // patch * patch]


def square_patch_size(model: nn.Module) -> int:
    """The side of a timm ViT's square patches."""
    ph, pw = model.patch_embed.patch_size
    if ph != pw:
        raise ValueError(f"non-square patches {ph}x{pw} are not supported")
    return ph


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Patch tokens [B, gh*gw, C] (row-major) -> [B, C, gh, gw]."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


class TimmViTAdapter(VFMAdapter):
    """A timm `VisionTransformer` run module by module, with the family's own position-table resizing.

    timm's `forward_features` resizes the table its own way (antialiased bicubic to `size=`), which is not
    DINO v1's convention; running the public modules (`patch_embed`, `blocks`, `norm`, ...) ourselves lets
    each family pick `resize_table`. Features: final norm of the last block, prefix tokens dropped.
    """

    resize_table: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]  # [side*side, D] -> [gh*gw, D]

    def __init__(self, model: nn.Module):
        super().__init__()
        if not getattr(model, "dynamic_img_size", False):
            # Built with dynamic_img_size=True, PatchEmbed accepts any (divisible) size and returns NHWC.
            raise ValueError("TimmViTAdapter needs a timm model built with dynamic_img_size=True")
        self.model = model
        self.patch_size = square_patch_size(model)
        self.embed_dim = model.embed_dim

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> [B, C, H // p, W // p]."""
        m = self.model
        tokens, grid = self._embed(x)
        tokens = m.norm(m.blocks(tokens))
        return tokens_to_map(tokens[:, m.num_prefix_tokens:], grid)

    def last_block_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [B, 3, H, W] -> (q, k, v) of the last block's attention, each [B, heads, d, H // p, W // p]: every block
        but the last, then `attn.qkv(norm1(tokens))` split per head, `q_norm` / `k_norm` applied (Identity in DINO /
        DINOv2 / MAE), unscaled, prefix tokens dropped; patches row-major on the grid (the base class's contract)."""
        qkv, (gh, gw) = self._last_qkv(x)
        attn = self.model.blocks[-1].attn
        b, prefix = qkv.shape[0], self.model.num_prefix_tokens
        # the norms act per token and per head, so dropping the prefix after them changes no value
        q, k, v = (norm(qkv[:, :, i].transpose(1, 2))[:, :, prefix:]                  # [B, heads, gh*gw, d]
                   .transpose(2, 3).reshape(b, attn.num_heads, attn.head_dim, gh, gw)
                   for i, norm in ((0, attn.q_norm), (1, attn.k_norm), (2, nn.Identity())))
        return q, k, v

    def _last_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: [B, 3, H, W] -> (the last block's `attn.qkv(norm1(tokens))` [B, prefix + gh*gw, 3, heads, d], grid)."""
        m = self.model
        tokens, grid = self._embed(x)
        for block in m.blocks[:-1]:
            tokens = block(tokens)
        last = m.blocks[-1]
        attn = last.attn
        b, n, _ = tokens.shape
        return attn.qkv(last.norm1(tokens)).reshape(b, n, 3, attn.num_heads, attn.head_dim), grid

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: [B, 3, H, W] -> (the tokens entering the first block [B, prefix + gh*gw, C], the grid (gh, gw))."""
        m = self.model
        patches = m.patch_embed(crop_to_patches(x, self.patch_size))      # [B, gh, gw, C]
        batch, gh, gw, channels = patches.shape
        patches = patches.reshape(batch, gh * gw, channels)
        table = m.pos_embed[0]                                            # [n_pos_prefix + side*side, C]
        # no_embed_class (DINOv2-reg): the table covers patches only; otherwise its first entry is CLS's.
        n_pos_prefix = 0 if m.no_embed_class else m.num_prefix_tokens
        patches = patches + self.resize_table(table[n_pos_prefix:], (gh, gw))
        # timm's order: CLS, then registers, then patches.
        prefix_tokens = [t.expand(batch, -1, -1) for t in (m.cls_token, m.reg_token) if t is not None]
        if prefix_tokens:
            prefix = torch.cat(prefix_tokens, dim=1)                      # [B, num_prefix_tokens, C]
            if n_pos_prefix:
                prefix = prefix + table[:n_pos_prefix]                    # CLS position entry kept as is
            patches = torch.cat([prefix, patches], dim=1)
        return m.norm_pre(m.patch_drop(m.pos_drop(patches))), (gh, gw)


class TimmVariant(NamedTuple):
    """One registered model of a timm family: `timm_name` picks the architecture, the weights and the statistics
    (timm's pretrained configuration of that tag); the rest describes it (ViT-`size`/`patch`, `width` channels)."""

    timm_name: str
    size: str
    patch: int
    width: int
    note: str = ""               # appended to the description ("the paper's default")


@dataclass(frozen=True, eq=False)   # eq=False: hashed by identity, as `family.build` in a registry entry is
class TimmFamily:
    """A timm-backed VFM family: its adapter over the timm model, and its variants as data.

    label: the family's name in descriptions and messages ("DINOv2"); adapter: `adapter(model)` -> the VFM, for a
    model built with dynamic_img_size=True; about: the description after "label ViT-S/14", a format string over
    the variant's fields; variants: registered name -> `TimmVariant`.
    """

    label: str
    adapter: type[VFMAdapter]
    about: str
    variants: dict[str, TimmVariant]

    def build(self, pretrained: bool | str, model_kwargs: dict[str, Any], model_name: str) -> VFMAdapter:
        """Build timm's `model_name`; see `build_vfm` for `pretrained` and `model_kwargs`."""
        if self.adapter.follows_crop and "img_size" in model_kwargs:
            raise ProxyCLIPError(
                f"vfm_kwargs img_size={model_kwargs['img_size']!r}: {self.label}'s input size follows the segmentor's "
                "crop_size (336, Cityscapes 224), as in the original. Remove img_size from vfm_kwargs and set crop_size instead."
            )
        # dynamic_img_size=True: timm's supported switch for inputs other than the native size (PatchEmbed takes any
        # divisible size, NHWC output); it changes no weights. Forced, so model_kwargs cannot undo it.
        model = create_timm_model(model_name, pretrained, model_kwargs, f"{self.label} ({model_name})",
                                  dynamic_img_size=True)
        return self.adapter(model).frozen()

    def describe(self, v: TimmVariant) -> str:
        """E.g. "DINO ViT-B/8 (timm vit_base_patch8_224.dino), 768 channels; the paper's default"."""
        parts = [f"{self.label} ViT-{v.size}/{v.patch} " + self.about.format(**v._asdict()), v.note]
        if self.adapter.follows_crop:
            parts.append("input resized to the crop size")
        return "; ".join(part for part in parts if part)

    def entries(self) -> dict[str, dict[str, Any]]:
        """name -> `register_vfm`'s fields: the description, and the builder's `model_name`."""
        return {name: dict(description=self.describe(v), model_name=v.timm_name) for name, v in self.variants.items()}
