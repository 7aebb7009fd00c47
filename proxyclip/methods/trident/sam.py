"""Trident's SAM (proxyclip/methods/trident/README.md): the whole segment-anything model, its predictor, and what the original
reads of its image encoder's last block.

The original forks segment-anything so that the encoder keeps its last block's attention probabilities
[B*heads, N, N] and values [B, heads, h, w, d] (Trident segment_anything/modeling/image_encoder.py:105-115, :226-244).
Here the unforked model runs, and a forward hook on `image_encoder.blocks[-1].attn` recomputes both from the block's
input with segment-anything's own `add_decomposed_rel_pos` — the same maths (that block is global in every official
SAM; a windowed last block is refused).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from segment_anything import SamPredictor
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.modeling.image_encoder import add_decomposed_rel_pos
from torch import nn

from proxyclip.errors import ProxyCLIPError
from proxyclip.method.loading import MODEL_WEIGHTS, Remedy, download_guard, load_state_dict_checked, load_state_dict_file
from proxyclip.method.vfm.sam import _COMMON, SAM


def sam_remedy(url: str) -> Remedy:
    """WeightsUnavailable's advice for Trident's SAM: a local file goes into its method option `sam_checkpoint`."""
    return MODEL_WEIGHTS._replace(example="configs/model/trident_vitb16.yaml", local=f"download the checkpoint file "
                                  f"({url}) and set `model.segmentor.method_kwargs.sam_checkpoint: FILE`")


def build_sam(variant: str = "vit_b", checkpoint: bool | str = True, encoder_kwargs: dict[str, Any] | None = None) -> Sam:
    """segment-anything's `Sam` as its `_build_sam` builds it (build_sam.py), eval and frozen.

    variant: vit_b / vit_l / vit_h. checkpoint: True -> the official checkpoint (torch.hub's cache); a path -> a full
    SAM `.pth`; False -> random weights (tests). encoder_kwargs: override `ImageEncoderViT`'s arguments (tiny test
    models: img_size, embed_dim, depth, num_heads, global_attn_indexes, out_chans = the prompt embedding width).
    """
    if variant not in SAM.variants:
        raise ProxyCLIPError(f"Trident's sam is one of {', '.join(SAM.variants)}, not {variant!r}.")
    cfg = {**_COMMON, **SAM.variants[variant].encoder, **(encoder_kwargs or {})}
    prompt_dim, grid = cfg["out_chans"], cfg["img_size"] // cfg["patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(**cfg),
        prompt_encoder=PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(cfg["img_size"], cfg["img_size"]), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=2, embedding_dim=prompt_dim, mlp_dim=2048, num_heads=8), transformer_dim=prompt_dim,
            iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    what, url = f"SAM ({variant})", SAM.variants[variant].url
    if checkpoint is True:
        with download_guard(what, sam_remedy(url)):
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True)
        load_state_dict_checked(sam, state, url, what)
    elif checkpoint:
        load_state_dict_checked(sam, load_state_dict_file(checkpoint), str(checkpoint), what)
    if sam.image_encoder.blocks[-1].window_size > 0:
        raise ProxyCLIPError("Trident reads the attention of SAM's last encoder block over the whole grid: that block "
                             "must be global (its index in global_attn_indexes), as in every official SAM.")
    for p in sam.parameters():
        p.requires_grad_(False)
    return sam.eval()


class LastBlockAttention:
    """Keeps what the original's forked encoder keeps of its last block on each forward: `attn` [B*heads, N, N]
    (softmax((q s) kᵀ + decomposed relative positions), N = gh*gw) and `v` [B, heads, gh, gw, d]."""

    def __init__(self, sam: Sam):
        self.attn: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.handle = sam.image_encoder.blocks[-1].attn.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]                                                     # [B, gh, gw, C] after norm1
        b, h, w, _ = x.shape
        qkv = module.qkv(x).reshape(b, h * w, 3, module.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * module.num_heads, h * w, -1).unbind(0)
        attn = (q * module.scale) @ k.transpose(-2, -1)
        if module.use_rel_pos:
            attn = add_decomposed_rel_pos(attn, q, module.rel_pos_h, module.rel_pos_w, (h, w), (h, w))
        self.attn, self.v = attn.softmax(dim=-1), v.view(b, module.num_heads, h, w, -1)


def sam_guidance(predictor: SamPredictor, kept: LastBlockAttention, image) -> tuple[torch.Tensor, torch.Tensor]:
    """`predictor.set_image(image)` (uint8 RGB [H, W, 3]) -> the last block's attention [1, heads, n, n] and values
    [1, heads, h, w, d] on the valid grid (h, w) = input_size // patch, the padding's rows and columns dropped in both
    the query and key dimensions (trident.py:112-128)."""
    predictor.set_image(image)
    patch = predictor.model.image_encoder.patch_embed.proj.kernel_size[0]   # 16, the original's literal
    vh, vw = predictor.input_size[0] // patch, predictor.input_size[1] // patch
    v = kept.v
    heads, gh, gw = v.shape[1], v.shape[2], v.shape[3]        # gh = gw = img_size / 16 (the original's sam_hw = 64)
    attn = kept.attn.view(1, heads, gh, gw, gh, gw)[:, :, :vh, :vw, :vh, :vw].reshape(1, heads, vh * vw, vh * vw)
    kept.attn = kept.v = None                   # the whole grid's attention: 12 x 4096^2 floats at full size
    return attn, v[:, :, :vh, :vw]


def sam_similarity(v: torch.Tensor, attn: torch.Tensor, cos_fac: float, refine_neg_cos: bool) -> torch.Tensor:
    """The guidance weights [n, n] (open_clip/transformer.py:643-659, get_sam_sim): SAM's attention kept where the
    cosine of its values beats cos_fac x (mean over heads and keys) per query — a negative threshold 0.6 unless
    refine_neg_cos, any threshold capped at 0.9 — averaged over heads and row-normalised. v: [1, heads, h, w, d];
    attn: [1, heads, n, n]. The diagonal (cosine 1 > 0.9) is always kept, so no row is empty."""
    v = F.normalize(v.flatten(2, 3), dim=-1)                                  # [1, heads, n, d]
    sim = v @ v.transpose(-1, -2)                                              # [1, heads, n, n]
    thresh = cos_fac * sim.mean(dim=1, keepdim=True).mean(dim=-1, keepdim=True)   # [1, 1, n, 1]
    if not refine_neg_cos:
        thresh = torch.where(thresh < 0.0, 0.6, thresh)
    thresh = torch.where(thresh > 0.9, 0.9, thresh)
    kept = torch.where(sim > thresh, attn, torch.zeros_like(attn)).mean(dim=1)[0]   # [n, n]
    return kept / kept.sum(dim=-1, keepdim=True)
