"""SC-CLIP (Self-Calibrated CLIP, Bai et al., arXiv 2411.15869; proxyclip/methods/scclip/README.md): CLIP's tower with its
last block replaced by a self-calibration that reads several earlier blocks' outputs.

With F[i] the output of block i (0-based, CLS first) and the default indices of ViT-B/16 (12 blocks):
1. anomalies: the patch tokens of F[10] (the input of the last block) whose LOF score is in the top 5 %; each is
   replaced by the mean of its non-anomalous 8-neighbours, in F[10] and in F[8] (`proxyclip/methods/scclip/ops.py`);
2. pre-adjustment: F[10]'s repaired patches aggregated over the cosine graph of F[8] (entries < similarity_thd dropped);
3. the last block's attention only (no residual, no MLP, CLS not attended): the mean of softmax(shifted, masked
   F[8] graph) and softmax(k kᵀ / sqrt(d)) per head, plus res_cls x F[10]'s CLS token;
4. post-adjustment: aggregated over the thresholded cosine graph of F[3];
5. multi-level: the same attention (same F[8] graph), CLS term and aggregation on the sum F[3] + ... + F[9], added;
6. `ln_post`, `proj`, L2-normalised.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from proxyclip.errors import ProxyCLIPError
from proxyclip.method.clip_tower import Linear, embed_tokens, linear_for, merge_heads, project, run_blocks, scale_of, split_heads
from .ops import aggregate, cosine_graph, lof_anomalies, repair, similarity_attention, thresholded
from proxyclip.method.last_block.base import LAST_BLOCKS, Crops, LastBlock


@LAST_BLOCKS.register("scclip")
class SelfCalibratedAttention(LastBlock):
    """SC-CLIP's self-calibration in place of CLIP's last block (defaults: `configs/base_config.py:4-8`,
    `clip/model.py:247`, `:274`).

    Args:
        similarity_thd: threshold of the aggregation graphs (entries below it are dropped); the original's `beta`
            (`clip/model.py:247`), renamed: `beta` is ProxyCLIP's option, with another meaning.
        pre_adjust_idx: block whose output's cosine graph aggregates before the attention and drives it.
        post_adjust_idx: block whose output's cosine graph aggregates after the attention.
        multi_start_idx, multi_end_idx: the multi-level branch sums the outputs of blocks start .. end - 1.
        res_cls: weight of the CLS token added to every patch after the attention.
        n_neighbors: the LOF's neighbourhood size (needs more patch tokens than this per crop).
        contamination: the share of patch tokens above the LOF quantile 1 - contamination (the anomalies).
    Block indices are 0-based and must name blocks before the last (checked against the tower when it runs).
    """

    listed_at = 40    # its place in lists of methods (ProxyCLIP first, then the order they were added)

    title = "SC-CLIP"    # its name in lists of methods (README, docs, help)
    summary = "self-calibration from earlier blocks' outputs"

    def __init__(self, similarity_thd: float = 0.4, pre_adjust_idx: int = 8, post_adjust_idx: int = 3,
                 multi_start_idx: int = 3, multi_end_idx: int = 10, res_cls: float = 0.3, n_neighbors: int = 30,
                 contamination: float = 0.05):
        super().__init__()
        given = dict(similarity_thd=similarity_thd, pre_adjust_idx=pre_adjust_idx, post_adjust_idx=post_adjust_idx,
                     multi_start_idx=multi_start_idx, multi_end_idx=multi_end_idx, res_cls=res_cls,
                     n_neighbors=n_neighbors, contamination=contamination)
        problems = [f"{name} must be >= 0, not {given[name]}" for name in ("pre_adjust_idx", "post_adjust_idx",
                                                                             "multi_start_idx") if given[name] < 0]
        if multi_end_idx <= multi_start_idx:   # an empty sum would attend over zeros, not switch the branch off
            problems.append(f"multi_end_idx ({multi_end_idx}) must be above multi_start_idx ({multi_start_idx}): the "
                            f"multi-level branch sums the outputs of blocks multi_start_idx .. multi_end_idx - 1")
        if n_neighbors < 1:
            problems.append(f"n_neighbors must be >= 1, not {n_neighbors}")
        if not 0.0 <= contamination <= 1.0:
            problems.append(f"contamination is a share of the tokens, in [0, 1], not {contamination}")
        if problems:
            raise ProxyCLIPError(f"method_kwargs for the scclip method: {'; '.join(problems)}. Its defaults (ViT-B/16): "
                                 f"{{similarity_thd: 0.4, pre_adjust_idx: 8, post_adjust_idx: 3, multi_start_idx: 3, "
                                 f"multi_end_idx: 10, res_cls: 0.3, n_neighbors: 30, contamination: 0.05}}.")
        for name, value in given.items():
            setattr(self, name, value)

    def check_tower(self, blocks: int, tokens: int) -> None:
        """Refuse block indices the tower does not have before its last block, or a crop with too few patches."""
        last = blocks - 2                           # the last block's input is the output of block blocks - 2
        wrong = [f"{name} {getattr(self, name)}" for name in ("pre_adjust_idx", "post_adjust_idx", "multi_start_idx")
                 if getattr(self, name) > last]
        if self.multi_end_idx > last + 1:
            wrong.append(f"multi_end_idx {self.multi_end_idx}")
        if wrong:
            raise ProxyCLIPError(f"scclip's {', '.join(wrong)}: CLIP's image tower has {blocks} blocks, so the block "
                                 f"indices (0-based) go up to {last} (multi_end_idx, exclusive, up to {last + 1}). "
                                 f"Set them in method_kwargs for this tower (ViT-B/16: 8, 3, 3, 10).")
        if tokens <= self.n_neighbors:
            raise ProxyCLIPError(f"scclip's LOF needs more patch tokens than n_neighbors ({self.n_neighbors}) per crop; "
                                 f"this crop has {tokens}. Use larger crops (224 px at patch 16: 196) or a smaller "
                                 f"n_neighbors in method_kwargs.")

    def attend(self, block, tokens: torch.Tensor, similarity: torch.Tensor, linear: Linear) -> torch.Tensor:
        """tokens [B, N, W] (patches only), similarity [B, N, N] the unthresholded pre-adjustment graph -> [B, N, W]:
        out_proj(((A_sim + softmax(k kᵀ s)) / 2) v) per head, A_sim shared by the heads; no residual, no MLP
        (`custom_attn`, `clip/model.py:318-341`; q is computed there but unused)."""
        _, k, v = split_heads(block, tokens, linear)                                  # [B, heads, N, d]
        key_key = torch.softmax((k @ k.transpose(-1, -2)) * scale_of(block), dim=-1)
        attn = (similarity_attention(similarity).unsqueeze(1) + key_key) / 2
        return merge_heads(block, attn @ v, linear)

    def dense(self, crops: Crops) -> torch.Tensor:
        """[B, E, gh, gw] L2-normalised patch embeddings (`VisionTransformer.forward`, `clip/model.py:254-310`)."""
        visual, linear = crops.visual, linear_for(crops.onednn)
        resblocks = visual.transformer.resblocks
        last = len(resblocks) - 2
        h, grid = embed_tokens(visual, crops.pixels)
        self.check_tower(len(resblocks), h.shape[1] - 1)
        multi = range(self.multi_start_idx, self.multi_end_idx)
        keep = {last, self.pre_adjust_idx, self.post_adjust_idx, *multi}
        outputs = run_blocks(visual, h, onednn=crops.onednn, keep=keep).outputs      # block -> [B, 1 + N, W]
        block = resblocks[-1]

        cls, patches = outputs[last][:, :1], outputs[last][:, 1:]
        anomalies = lof_anomalies(patches, self.n_neighbors, self.contamination)      # [B, N], found on F[last] only
        x = repair(patches, anomalies, grid)
        pre = cosine_graph(repair(outputs[self.pre_adjust_idx][:, 1:], anomalies, grid))   # [B, N, N] unthresholded
        x = aggregate(x, thresholded(pre, self.similarity_thd))
        x = self.attend(block, x, pre, linear) + self.res_cls * cls                # CLS leaves the token set here
        post = thresholded(cosine_graph(outputs[self.post_adjust_idx][:, 1:]), self.similarity_thd)
        x = aggregate(x, post)

        summed = sum(outputs[i] for i in multi)                                     # [B, 1 + N, W], CLS included
        r = self.attend(block, summed[:, 1:], pre, linear) + self.res_cls * summed[:, :1]
        x = x + aggregate(r, post)

        out = F.normalize(project(visual, x, linear), dim=-1)                       # [B, N, E]
        return out.transpose(1, 2).reshape(out.shape[0], out.shape[-1], *grid)
