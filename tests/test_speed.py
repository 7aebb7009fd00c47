"""Speed paths compute the same thing: batching, the original-like baseline, fused attention, layouts, compile, bf16.

Never timed: the benchmark (benchmarks/throughput.py) measures; these tests prove its variants agree.
"""
import copy
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.original_like import fused_attention_report, make_original_like
from proxyclip.method.clip_tower import _is_plain_block, _residual_block
from proxyclip.methods.proxyclip.proxy_attention import proxy_attention
from proxyclip.method.vfm import build_vfm
from conftest import BORDER_IMAGES, REPO_ROOT, needs_onednn, random_image, twin

TINY_VIT = dict(depth=2, embed_dim=32, num_heads=2)
IMAGES = BORDER_IMAGES


def test_crop_batching_equals_one_crop_at_a_time(tiny_segmentor):
    seg = copy.deepcopy(tiny_segmentor)
    results = {}
    for size in (1, 3, 64):
        seg.crop_batch_size = size
        results[size] = seg(IMAGES)
    for size in (3, 64):
        for one, many in zip(results[1], results[size]):
            torch.testing.assert_close(many, one, atol=1e-5, rtol=0)


def test_original_like_baseline_computes_the_same(tiny_segmentor):
    base = make_original_like(tiny_segmentor)
    assert fused_attention_report(base) == {"vfm_fused_attn": False, "clip_batch_first": False}
    assert base.crop_batch_size == 1
    assert not base.onednn_linear and not any(type(m).__name__ == "OneDNNLinear" for m in base.modules())
    with torch.no_grad():
        for ours, theirs in zip(tiny_segmentor(IMAGES), base(IMAGES)):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


MMSEG_CONSTANTS = {"clip_mean_255": [122.771, 116.746, 104.094], "clip_std_255": [68.501, 66.632, 70.323]}


def test_half_original_like_baseline_normalises_in_float32_and_runs_in_fp16(tiny_segmentor):
    """The original's fp16 runs (throughput.py's baseline on a GPU, here on the CPU): its preprocessor runs in float32,
    with mmseg's float32 constants, and only the normalised input is cast to half (ProxyCLIP proxyclip_segmentor.py:116,
    :177). The model's `.half()` leaves the pixel statistics float32, and both encoders get fp16 input."""
    base = make_original_like(tiny_segmentor, half=True)
    assert base.clip.visual.conv1.weight.dtype == torch.float16 and base.query_embeddings.dtype == torch.float16
    for name in ("clip_mean", "clip_std", "clip_mean_255", "clip_std_255", "vfm_mean", "vfm_std"):
        buffer = getattr(base, name)
        assert buffer.dtype == torch.float32 and torch.equal(buffer, getattr(tiny_segmentor, name)), name
    for name, constants in MMSEG_CONSTANTS.items():
        assert torch.equal(getattr(base, name), torch.tensor(constants, dtype=torch.float32).view(3, 1, 1)), name
    seen = {"clip": set(), "vfm": set()}
    hooks = [base.clip.visual.conv1.register_forward_pre_hook(lambda m, args: seen["clip"].add(args[0].dtype)),
             base.vfm.register_forward_pre_hook(lambda m, args: seen["vfm"].add(args[0].dtype))]
    try:
        with torch.no_grad():
            half = base(IMAGES)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {"clip": {torch.float16}, "vfm": {torch.float16}}
    with torch.no_grad():
        for ours, theirs in zip(tiny_segmentor(IMAGES), half):
            assert theirs.dtype == torch.float32 and torch.isfinite(theirs).all()     # summed into float32 canvases
            torch.testing.assert_close(theirs, ours, atol=2e-2, rtol=0)              # fp16 rounding only
    assert [labels.shape for labels in base.segment_batch(IMAGES)] == [image.shape[-2:] for image in IMAGES]


@pytest.mark.parametrize("name", ["dino_vitb8", "dinov2_vitb14_reg", "dinov3_vitb16", "mae_vit_base"])
def test_every_timm_vfm_block_uses_fused_attention(name):
    vfm = build_vfm(name, pretrained=False, model_kwargs=TINY_VIT)
    attns = [block.attn for block in vfm.model.blocks]
    assert attns and all(attn.fused_attn for attn in attns), "timm fell back to explicit softmax(q kᵀ) v"


def count_calls(owner, name, run):
    """How often `owner.name` is called while `run()` runs."""
    calls, original = [], getattr(owner, name)

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    setattr(owner, name, counting)
    try:
        with torch.no_grad():
            run()
    finally:
        setattr(owner, name, original)
    return len(calls)


@needs_onednn
def test_clip_blocks_use_fused_attention(tiny_segmentor):
    transformer = tiny_segmentor.clip.visual.transformer
    mha = [m for m in transformer.modules() if isinstance(m, nn.MultiheadAttention)]
    assert transformer.batch_first and mha and all(m.batch_first for m in mha)
    assert fused_attention_report(tiny_segmentor) == {"vfm_fused_attn": True, "clip_batch_first": True}
    crops = torch.rand(2, 3, 112, 112)
    stock, onednn = twin(tiny_segmentor, onednn_linear=False), twin(tiny_segmentor, onednn_linear=True)
    # PyTorch's linears: open_clip's own blocks, on nn.MultiheadAttention's fast path
    calls = count_calls(torch, "_native_multi_head_attention", lambda: stock.dense_features(crops))
    assert calls == len(transformer.resblocks) - 1  # every block but the last (proxy attention)
    # oneDNN linears (fp32 CPU): the same blocks through `_residual_block`, i.e. SDPA, as the VFM's blocks
    calls = count_calls(torch.nn.functional, "scaled_dot_product_attention", lambda: onednn.dense_features(crops))
    assert calls == len(transformer.resblocks) - 1 + len(onednn.vfm.model.blocks)


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_proxy_attention_has_no_loop_over_heads_or_crops():
    values, feats = torch.randn(3, 64, 7, 7), torch.randn(3, 32, 14, 14)  # 3 crops, 4 heads of 16 in D = 64
    with OpCounter() as counter:
        out = proxy_attention(values, feats, 1.2, 3.0)
    assert out.shape == (3, 196, 64)
    # one batched S, one batched A V, one batched (in-place) softmax: exp over all crops at once
    assert counter.ops.count("bmm") == 2 and counter.ops.count("exp_") == 1


def test_sdpa_block_equals_open_clip_block(tiny_segmentor):
    block = tiny_segmentor.clip.visual.transformer.resblocks[0]
    x = torch.randn(3, 50, block.attn.embed_dim)
    assert _is_plain_block(block)
    with torch.no_grad():
        torch.testing.assert_close(_residual_block(block, x), block(x), atol=1e-5, rtol=0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours, theirs = _residual_block(block, x), block(x)
    torch.testing.assert_close(ours.float(), theirs.float(), atol=5e-2, rtol=5e-2)


def test_channels_last_does_not_change_results(tiny_segmentor):
    seg = twin(tiny_segmentor, channels_last=True)
    assert seg.vfm.model.patch_embed.proj.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for ours, theirs in zip(tiny_segmentor(IMAGES), seg(IMAGES)):
            torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile (inductor) needs a C++ compiler on CPU")
@pytest.mark.skipif(bool(os.environ.get("PROXYCLIP_SKIP_COMPILE_TEST")), reason="PROXYCLIP_SKIP_COMPILE_TEST is set")
@pytest.mark.subprocess
def test_compile_builds_and_runs(tiny_segmentor):
    """Cold, inductor compiles the tiny model in ~15 s on 2 cores (~2 s from its on-disk cache): one crop shape only.
    A `subprocess` test: with a cold cache (TORCHINDUCTOR_CACHE_DIR) inductor starts Python processes, a child that
    loads its probe library per vector ISA (cpu_vec_isa.py; also for the bf16 and VNNI variants, whatever
    `cpp.vec_isa_ok` says) and a pool of compile workers; compiled here as a user's run compiles."""
    seg = twin(tiny_segmentor, compile=True)
    image = [random_image(112, 112, 3)]
    with torch.no_grad():
        torch.testing.assert_close(seg(image)[0], tiny_segmentor(image)[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="uncompiled"):
        make_original_like(seg)


def test_bf16_autocast_runs_on_cpu_and_mostly_agrees(tiny_segmentor):
    with torch.no_grad():
        reference = tiny_segmentor.segment_batch(IMAGES)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = tiny_segmentor(IMAGES)
            labels = tiny_segmentor.segment_batch(IMAGES)
    assert all(torch.isfinite(item).all() for item in logits)
    agree = sum(int((a == b).sum()) for a, b in zip(labels, reference)) / sum(r.numel() for r in reference)
    assert agree > 0.9, f"bf16 agrees with fp32 on only {agree:.1%} of pixels"


def test_benchmark_report_names_a_speedup_per_variant(tmp_path):
    """The report's arithmetic on made-up timings: ratios of medians, geometric means, targets, the Markdown rows."""
    from benchmarks.report import setting_stats, summarise, write

    labels = [torch.zeros(4, 4, dtype=torch.long)]
    times = {"baseline": [8.0, 9.0, 8.0], "ours_fp32": [4.0, 4.5, 4.0], "ours_bf16": [2.0, 2.0, 3.0],
             "ours_fp32_onednn": [8.0, 6.0, 6.0]}
    stats = setting_stats(times, {name: 2**20 for name in times}, {name: labels for name in times})
    assert (stats["speedup_fp32"], stats["speedup_bf16"], stats["speedup_fp32_onednn"]) == (2.0, 4.0, 8.0 / 6.0)
    settings = {"voc": {**stats, "images": 3, "resized_hw": [336, 448], "crops_per_image": 2, "crop": 336},
                "cityscapes": {**stats, "speedup_fp32": 0.5, "images": 3, "resized_hw": [448, 896], "crops_per_image": 21,
                               "crop": 224}}
    header = {"machine": "test-machine", "device": "cpu", "device_name": "test", "threads": 2, "torch": torch.__version__,
              "models": "tiny", "vocabulary_classes": 3, "crop_batch_size": 4, "baseline_precision": "fp32",
              "other_load_share": 0.0, "wall_s": 1.0,
              "fp32_linear": {"set": "auto", "kernel": "PyTorch's own", "why": "the rule's reason"},
              "onednn_isa": "Intel AVX2", "onednn_fp32_linear": ["inner_product brg_matmul:avx2"], "onednn_bf16_matmuls": [],
              "cpu_bf16": {"native": False, "why": "emulated: the CPU has no AVX512_BF16 or AMX_BF16 instructions"}}
    report = summarise(header, settings, {}, torch.device("cpu"))
    assert report["speedup_fp32"] == pytest.approx(1.0) and report["targets_met"] == {"speedup_fp32": False, "speedup_bf16": True}
    text = write(report, tmp_path)
    assert "| voc 448x336 (2 crops of 336) | ours_fp32_onednn | 3 | 6.00 |" in text
    # the auto choice (1.00x overall) lost to the other path (1.33x): the report says so
    assert ("ours_fp32 ran PyTorch's own fp32 linears (onednn_linear=\"auto\" chose the rule's reason). ours_fp32_onednn takes "
            "the other path: 1.33x against ours_fp32's 1.00x, so the choice was NOT the faster one on this CPU.") in text
    assert "bf16 autocast matmuls on oneDNN: none: oneDNN takes no bf16 matmul on this CPU" in text
    assert "bf16 on this CPU, as proxyclip reads it: emulated: the CPU has no AVX512_BF16 or AMX_BF16 instructions." in text
    assert (tmp_path / "test-machine.json").is_file()


def run_throughput(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "throughput.py"), *args, "--out", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.subprocess
def test_methods_tiny_runs_each_preset_in_its_own_process_with_ratios_to_proxyclip(tmp_path):
    """`throughput.py --methods ... --tiny`: each named preset (tiny encoders of its kind) through `main.py test` under
    its own Cityscapes protocol; ProxyCLIP first, as the ratios' baseline; the report's JSON and Markdown."""
    run = run_throughput(tmp_path, "--methods", "clearclip_vitb16.yaml", "default.yaml", "--tiny")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (found,) = tmp_path.glob("*-methods.json")
    report = json.loads(found.read_text())
    assert report["baseline"] == "default.yaml" and list(report["presets"]) == ["default.yaml", "clearclip_vitb16.yaml"]
    assert (report["device"], report["images"], report["rounds"], report["image"]) == ("cpu", 1, 1, "128x64")
    base, clear = report["presets"].values()
    assert (base["method"], clear["method"]) == ("proxyclip", "clearclip")
    assert clear["protocol"] == "configs/clearclip/cityscapes.yaml"
    for row in (base, clear):
        assert row["images"] == 1 and row["images_per_s"] == 1 / row["test_loop_s"]
        assert row["peak_memory_bytes"] > 0 and row["peak_memory_kind"] == "cpu peak RSS of the process"
    assert base["speed_ratio"] == base["memory_ratio"] == 1.0
    assert clear["speed_ratio"] == clear["images_per_s"] / base["images_per_s"]
    assert clear["memory_ratio"] == clear["peak_memory_bytes"] / base["peak_memory_bytes"]
    markdown = found.with_suffix(".md").read_text()
    assert "| preset | method | images/s | x ProxyCLIP | test loop (s) | peak memory (GB) | x ProxyCLIP |" in markdown
    assert f"| clearclip_vitb16.yaml | clearclip | {clear['images_per_s']:.3f} | {clear['speed_ratio']:.2f} |" in markdown


def test_methods_past_the_budget_are_listed_as_skipped(tmp_path):
    """method_cost.measure starts no run that its budget would not fit (device_check.py's methods check): a zero
    budget runs nothing, and every preset's row and table line say it was skipped."""
    from benchmarks.method_cost import measure
    from benchmarks.report import write_methods

    report = measure(["default.yaml", "sclip_vitb16.yaml"], "cpu", 128, 64, images=1, rounds=1, tiny=True, budget_s=0.0)
    assert report["presets"] == {name: {"skipped": "not run: over the 0 s budget"}
                                 for name in ("default.yaml", "sclip_vitb16.yaml")}
    report["machine"] = "test-machine"
    assert "| sclip_vitb16.yaml | not run: over the 0 s budget | | | | | |" in write_methods(report, tmp_path)


@pytest.mark.subprocess
@pytest.mark.parametrize("args, needle", [
    (["--rounds", "2"], "--rounds applies only to the per-method mode: add --methods"),
    (["--methods", "nope.yaml"], "--methods nope.yaml: not a preset in configs/model/; choose among default.yaml, "),
    (["--methods", "tiny_sclip.yaml"], "--methods tiny_sclip.yaml: tiny random models, no cost worth timing (--tiny "),
    (["--methods", "--rounds", "0"], "--rounds 0 --size 2048x1024: give at least one image and one round"),
    (["--methods", "--quick", "--voc", "2"], "--quick, --voc apply to the variants' comparison, not to --methods"),
])
def test_methods_options_are_refused_where_they_would_not_apply(tmp_path, args, needle):
    run = run_throughput(tmp_path, *args)
    assert run.returncode == 2 and needle in run.stderr, run.stderr[-2000:]
    assert not list(tmp_path.iterdir())                     # refused before anything ran


@pytest.mark.subprocess
@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN is not in this build")
def test_onednn_kernels_names_what_the_cpu_runs():
    """oneDNN's own log, read back: its ISA, its fp32 linear kernel, and bf16 matmuls on oneDNN exactly where
    PyTorch says oneDNN serves bf16 on this CPU (AVX-512 bf16 or AMX; elsewhere autocast emulates bf16)."""
    from benchmarks.measure import onednn_kernels
    from proxyclip.method.onednn_linear import _AVAILABLE, cpu_bf16

    kernels = onednn_kernels()
    assert kernels["onednn_isa"] != "unknown"
    assert bool(kernels["onednn_fp32_linear"]) is _AVAILABLE
    assert all(" " in kernel for kernel in kernels["onednn_fp32_linear"] + kernels["onednn_bf16_matmuls"])  # kind impl
    assert bool(kernels["onednn_bf16_matmuls"]) is torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if cpu_bf16()["native"]:    # the instructions proxyclip's bf16 note reads are the ones oneDNN's bf16 kernels take
        assert any("bf16" in kernel or "amx" in kernel for kernel in kernels["onednn_bf16_matmuls"]), kernels
