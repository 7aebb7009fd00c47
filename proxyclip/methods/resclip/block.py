"""ResCLIP's last block (Yang et al., CVPR 2025; proxyclip/methods/resclip/README.md): NACLIP's neighbourhood attention with
residual cross-correlation self-attention (RCS) and semantic feedback refinement (SFR).

RCS: the mean attention probabilities of middle blocks (5..8, 0-based) are mixed into the last block's attention
after its softmax. SFR: the last block runs once with RCS; its patch logits against the text, upsampled to the crop,
refined with PAMR and thresholded, give a label per patch (proxyclip/methods/resclip/feedback_affinity.py); the same-label affinity of those
patches is mixed into the similarity of a second, final run. The features depend on the text, so the method overrides
`dense` (it needs the crop as PAMR's guide, the query embeddings and the logit scale).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from proxyclip.errors import ProxyCLIPError
from proxyclip.method.clip_encoder import clip_patch_size
from proxyclip.method.clip_tower import Linear, embed_tokens, linear_for, merge_heads, project, run_blocks, scale_of, split_heads
from .feedback_affinity import feedback_affinity, patch_votes, query_labels
from proxyclip.method.pamr import pamr
from proxyclip.method.last_block.base import LAST_BLOCKS, Crops, LastBlock
from proxyclip.method.gaussian_neighbourhood import gaussian_neighbourhood

Base = Literal["naclip", "sclip", "clearclip"]


@LAST_BLOCKS.register("resclip")
class ResidualFeedbackAttention(LastBlock):
    """A base attention (NACLIP's by default) with RCS and SFR, run twice (model.py:294-367).

    Args (the original's names in brackets; its segmentor defaults are None for the first three, which fail, so
    the defaults here are its VOC21 config's, configs/cfg_voc21.py:8-11, the first of its benchmarks):
        temp_thd: pixels of the temporary segmentation whose best query probability is below this vote for query 0
            [temp_thd].
        rcs_weights: (tau, lam): A = tau * ((1 - lam) * A + lam * mean of the RCS blocks' attention) [attn_rcs_weights].
        sfr_weights: (tau, lam): W = tau * ((1 - lam) * W + lam * S / max S), W the base's pre-softmax similarity
            [attn_sfr_weights].
        delete_same_entity: decay the affinity of same-label patches whose straight path leaves the label
            [delete_same_entity; True in every config, False the segmentor's default].
        gaussian_std: std in patches of NACLIP's neighbourhood and of SFR's 1-D blur [gaussian_std].
        rcs_layers: 0-based blocks whose attention RCS averages (hard-coded 5..8 in the original, model.py:328).
        sfr_pamr_steps, sfr_pamr_dilations: the PAMR on the temporary logits (hard-coded 10, (8, 16), model.py:279).
        base: the last block's attention [attn_strategy with its arch]: "naclip" (key-key + Gaussian, no residual,
            no MLP; 'resclip'/'naclip' with 'wo_resi', every config), "sclip" (softmax(qq) + softmax(kk), residual and
            MLP kept; 'sclip' with 'w_resi'), "clearclip" (query-query, no residual, no MLP; 'clearclip' with
            'wo_resi'). The original tunes weights for "naclip" only.
    RCS and SFR always run: the original's use_rcs/use_sfr switches are 1-tuples (a trailing comma,
    resclip_segmentor.py:61-62), always true.
    """

    listed_at = 60    # its place in lists of methods (ProxyCLIP first, then the order they were added)

    title = "ResCLIP"    # its name in lists of methods (README, docs, help)
    summary = "NACLIP's attention with residual cross-correlation (RCS) and semantic feedback (SFR); needs the vocabulary"

    def __init__(self, temp_thd: float = 0.5, rcs_weights: tuple[float, float] = (2.0, 0.3),
                 sfr_weights: tuple[float, float] = (2.2, 0.7), delete_same_entity: bool = True,
                 gaussian_std: float = 5.0, rcs_layers: tuple[int, ...] = (5, 6, 7, 8), sfr_pamr_steps: int = 10,
                 sfr_pamr_dilations: tuple[int, ...] = (8, 16), base: Base = "naclip"):
        super().__init__()
        if base not in ("naclip", "sclip", "clearclip"):
            raise ValueError(f"base must be 'naclip', 'sclip' or 'clearclip', got {base!r}")
        if not rcs_layers or min(rcs_layers) < 0 or gaussian_std <= 0 or sfr_pamr_steps < 0:
            raise ValueError("rcs_layers must be non-empty block indices >= 0, gaussian_std > 0, sfr_pamr_steps >= 0")
        self.temp_thd, self.delete_same_entity, self.base = temp_thd, delete_same_entity, base
        self.gaussian_std = gaussian_std
        self.rcs_weights, self.sfr_weights = tuple(rcs_weights), tuple(sfr_weights)
        self.rcs_layers, self.sfr_pamr_steps = tuple(rcs_layers), sfr_pamr_steps
        self.sfr_pamr_dilations = tuple(sfr_pamr_dilations)

    def dense(self, crops: Crops) -> torch.Tensor:
        """Unit embeddings [B, E, gh, gw] of the final pass (model.py:294-367); every crop gets its own feedback."""
        if crops.text is None:
            raise ProxyCLIPError("ResCLIP's features depend on the text (semantic feedback): set the vocabulary first.")
        visual, lin = crops.visual, linear_for(crops.onednn)
        blocks = visual.transformer.resblocks
        if max(self.rcs_layers) >= len(blocks) - 1:
            raise ProxyCLIPError(f"rcs_layers {self.rcs_layers} must be blocks before the last of the {len(blocks)}.")
        tokens, grid = embed_tokens(visual, crops.pixels)
        run = run_blocks(visual, tokens, onednn=crops.onednn, attention=self.rcs_layers)
        rcs = torch.stack([run.attention[i] for i in self.rcs_layers]).mean(dim=0)     # [B, heads, T, T]
        qkv = split_heads(blocks[-1], run.tokens, lin)                                    # both passes' q, k, v
        first = self.attend(blocks[-1], run.tokens, qkv, grid, lin, rcs)                 # [B, T, W]
        affinity = self.feedback(crops, project(visual, first[:, 1:], lin), grid)      # [B, 1, T, T]
        final = self.attend(blocks[-1], run.tokens, qkv, grid, lin, rcs, affinity)
        out = F.normalize(project(visual, final[:, 1:], lin), dim=-1)                   # [B, N, E]
        return out.transpose(1, 2).reshape(out.shape[0], out.shape[-1], *grid)

    def attend(self, block, tokens: torch.Tensor, qkv, grid: tuple[int, int], linear: Linear, rcs: torch.Tensor,
               affinity: torch.Tensor | None = None) -> torch.Tensor:
        """The last block on tokens [B, T, W] (CLS first) with RCS, and SFR when `affinity` [B, 1, T, T] is given
        (`custom_attn`, model.py:463-563) -> [B, T, W]: the attention's output, plus the residual and the MLP for
        the SCLIP base."""
        q, k, v = qkv                                                                   # [B, heads, T, d]
        s = scale_of(block)

        def mixed(similarity):      # SFR enters the pre-softmax similarity (model.py:476-484)
            if affinity is None:
                return similarity
            tau, lam = self.sfr_weights
            return tau * ((1 - lam) * similarity + lam * affinity)

        if self.base == "naclip":   # the neighbourhood is added after the SFR mix
            bias = gaussian_neighbourhood(grid, self.gaussian_std, tokens.device, k.dtype)
            attn = torch.softmax(mixed((k @ k.transpose(-1, -2)) * s) + bias, dim=-1)
        elif self.base == "clearclip":
            attn = torch.softmax(mixed((q @ q.transpose(-1, -2)) * s), dim=-1)
        else:                       # sclip: the mix enters both maps; their sum's rows add up to 2
            attn = (torch.softmax(mixed((q @ q.transpose(-1, -2)) * s), dim=-1)
                    + torch.softmax(mixed((k @ k.transpose(-1, -2)) * s), dim=-1))
        tau, lam = self.rcs_weights  # RCS after the softmax (model.py:489-494); tau scales A v, not out_proj's bias
        attn = tau * ((1 - lam) * attn + lam * rcs)
        out = merge_heads(block, attn @ v, linear)
        if self.base != "sclip":
            return out
        x = tokens + block.ls_1(out)
        return x + block.ls_2(block.mlp(block.ln_2(x)))

    def feedback(self, crops: Crops, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Patch features [B, N, E] of the first pass (not normalised) -> SFR's affinity [B, 1, T, T] in their dtype:
        the temporary segmentation (model.py:262-288), its patch votes (:106-126) and affinity (:152-238), zeros
        for the CLS token, divided by its maximum (:477)."""
        b, size = features.shape[0], crops.pixels.shape[-2:]
        features = F.normalize(features, dim=-1)
        logits = torch.einsum("bne,qe->bqn", features, crops.text.to(features.dtype)).reshape(b, -1, *grid)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)   # [B, Q, H, W]
        if self.sfr_pamr_steps:     # guided by the crop itself, in fp32 (pamr.py)
            logits = pamr(crops.pixels, logits, self.sfr_pamr_steps, self.sfr_pamr_dilations).to(features.dtype)
        probs = torch.softmax(crops.logit_scale * logits, dim=1)                       # over queries, not classes
        votes = patch_votes(query_labels(probs, self.temp_thd), clip_patch_size(crops.visual)[0], logits.shape[1])
        work = torch.promote_types(features.dtype, torch.float32)                        # fp32 as the original
        affinity = feedback_affinity(votes, self.gaussian_std, self.delete_same_entity, work)   # [B, N, N]
        affinity = F.pad(affinity, (1, 0, 1, 0))                                           # CLS row and column: 0
        affinity = affinity / affinity.amax(dim=(1, 2), keepdim=True)
        return affinity.to(features.dtype)[:, None]
