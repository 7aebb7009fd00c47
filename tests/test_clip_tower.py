"""The tower runner methods read earlier blocks through: kept outputs and attention probabilities equal open_clip's
own blocks (forward hooks, nn.MultiheadAttention's own weights), in both token layouts and with oneDNN linears."""
import copy

import pytest
import torch

from conftest import TINY_CLIP
from proxyclip.method.clip_encoder import build_clip
from proxyclip.method.clip_tower import embed_tokens, run_blocks


def tiny_visual(layers: int = 4):
    config = copy.deepcopy(TINY_CLIP)
    config["vision_cfg"]["layers"] = layers
    torch.manual_seed(0)
    return build_clip(config, None)[0].visual.double().eval()


def open_clips_own(visual, x):
    """Each block's output (forward hooks) and its per-head attention probabilities (nn.MultiheadAttention asked for
    them), from open_clip's own forward of the blocks."""
    outputs, attention = {}, {}
    handles = [block.register_forward_hook(lambda m, i, o, n=n: outputs.__setitem__(n, o))
               for n, block in enumerate(visual.transformer.resblocks)]
    h, _ = embed_tokens(visual, x)
    for n, block in enumerate(visual.transformer.resblocks):
        y = block.ln_1(h)
        attention[n] = block.attn(y, y, y, need_weights=True, average_attn_weights=False)[1]
        h = block(h)
    for handle in handles:
        handle.remove()
    return outputs, attention


@pytest.mark.parametrize("onednn", [False, True], ids=["F.linear", "oneDNN"])
def test_kept_outputs_and_attention_are_open_clips_own(onednn):
    visual = tiny_visual()
    x = torch.randn(2, 3, 64, 80, dtype=torch.float64)
    outputs, attention = open_clips_own(visual, x)
    h, grid = embed_tokens(visual, x)
    assert grid == (4, 5)
    run = run_blocks(visual, h, stop=4, onednn=onednn, keep=range(4), attention={1, 2})
    assert sorted(run.outputs) == [0, 1, 2, 3] and sorted(run.attention) == [1, 2]
    for n in range(4):
        torch.testing.assert_close(run.outputs[n], outputs[n], rtol=0, atol=1e-10)
    for n in (1, 2):
        assert run.attention[n].shape == (2, visual.transformer.resblocks[n].attn.num_heads, 21, 21)
        torch.testing.assert_close(run.attention[n], attention[n], rtol=0, atol=1e-12)
    torch.testing.assert_close(run.tokens, outputs[3], rtol=0, atol=1e-10)


def test_asking_for_nothing_runs_all_but_the_last_block():
    visual = tiny_visual(3)
    x = torch.randn(1, 3, 48, 48, dtype=torch.float64)
    outputs, _ = open_clips_own(visual, x)
    run = run_blocks(visual, embed_tokens(visual, x)[0])
    assert run.outputs == {} and run.attention == {}
    torch.testing.assert_close(run.tokens, outputs[1], rtol=0, atol=0)


def test_sequence_first_towers_hand_back_batch_first_tensors():
    """A tower kept sequence-first (as benchmarks/original_like.py sets it): the same values, batch-first."""
    visual = tiny_visual(3)
    x = torch.randn(2, 3, 48, 48, dtype=torch.float64)
    h = embed_tokens(visual, x)[0]
    batch_first = run_blocks(visual, h, keep={0}, attention={1})
    visual.transformer.batch_first = False
    for block in visual.transformer.resblocks:
        block.attn.batch_first = False
    seq_first = run_blocks(visual, h, keep={0}, attention={1})
    torch.testing.assert_close(seq_first.tokens, batch_first.tokens, rtol=0, atol=1e-12)
    torch.testing.assert_close(seq_first.outputs[0], batch_first.outputs[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(seq_first.attention[1], batch_first.attention[1], rtol=0, atol=1e-12)
