"""The GPU path checked and measured in one call, for a GPU that is lent for minutes.

    python benchmarks/device_check.py                          # a CUDA machine: ~8-9 min on one H100 (--budget-s 480)
    python benchmarks/device_check.py --device cpu --smoke     # tiny sizes on a CPU: checks this script (CI)
    python benchmarks/device_check.py --only methods profile   # some checks alone: <gpu>-methods-profile.json / .md

One PASS / FAIL / INFO / SKIP line per check as it runs; results in <out>/<gpu>.json and .md (default
benchmarks/results/; a smoke run measures nothing worth keeping, so its default is a new temporary folder, named on
its first and last lines), rewritten after every check, so that a run cut short keeps what it measured. In order
of importance (a check that would overrun `--budget-s` is skipped, and says so):
  environment        torch, CUDA, the card, the CPU
  cuda_equals_cpu    tiny models, then CLIP ViT-B/16 + DINO ViT-B/8 at full size (random weights, 336 crops): fp32 features
                     on the device equal the CPU's to 1e-4, labels identical (pixels whose top two classes tie within
                     1e-4 are reported, not failed: random weights make near-ties)
  no_host_sync       test's own step (crops, encoders, decision, NaN masks, metric) runs under
                     torch.cuda.set_sync_debug_mode("error")
  cli_counts         `main.py test` on a fake VOC layout: CPU, GPU, GPU through DDP/NCCL (1 process) give the same counts;
                     bf16-mixed and 16-mixed run
  precision          bf16 and fp16 autocast labels agree with fp32 on >= 97 % of pixels (full size)
  throughput         benchmarks/throughput.py: the original's way (pure fp16, one crop per forward, explicit attention,
                     empty_cache after each crop) against ours (batched crops, fused attention, fp32/bf16/fp16); >= 5x
  batch_sweep        images per step x crops per forward (bf16): what fills the card
  memory             peak max_memory_allocated: one 2048x1024 Cityscapes image, a batch of 8 VOC images; < 8 GB
  end_to_end         1449 fake 500x375 JPEGs in the VOC layout through `main.py test` (bf16, real-size random weights):
                     test loop <= 4.6 s and >= 314 images/s (speed_checks.END_TO_END_TARGET), GPU utilisation, data waiting
  profile            benchmarks/profile_loop.py: torch.profiler over 3 steps of 8 VOC-like images (bf16): top kernels,
                     GEMM / attention / elementwise / memcpy shares, device busy against wall, kernels per image (INFO);
                     results/<gpu>-profile.json / .md, and the Chrome trace <gpu>-profile.trace.json beside (not in git)
  methods            every shipped preset but tiny_*.yaml through method_cost.measure (`main.py test`, 8 Cityscapes-like
                     images, bf16-mixed, one process each; the nine ViT-B/16 methods first), images/s, peak memory,
                     ratios to ProxyCLIP, until the budget is spent (the rest listed as skipped); results/<gpu>-methods.*
  compile            torch.compile on the GPU: compile time and steady speed against eager (INFO)
The checks live in exactness_checks.py (environment to precision) and speed_checks.py (throughput to compile), what
they build and feed in device_inputs.py; this file runs them within the budget and writes the results.
MFU (benchmarks/flops.py): the model's matmul / conv / attention FLOPs per image are counted once per setting
(results' `flops_per_image`) and every images/s of the throughput, batch_sweep, end_to_end and methods (ProxyCLIP's
row) checks is given with its MFU: bf16 FLOP/s over the card's dense bf16 peak (on a card not in flops.PEAK_TFLOPS,
and on a CPU, the FLOP/s reached instead).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from benchmarks.device_check_results import Check  # noqa: E402 - the results object, apart so that no check imports this script
from benchmarks.exactness_checks import cli_counts, cuda_equals_cpu, environment, no_host_sync, precision  # noqa: E402
from benchmarks.speed_checks import (batch_sweep, compile_benefit, end_to_end, memory, methods, profile,  # noqa: E402
                                     run_throughput)


# in order of importance: (name, check, seconds it needs at least on one H100)
CHECKS = (("environment", environment, 0), ("cuda_equals_cpu", cuda_equals_cpu, 30), ("no_host_sync", no_host_sync, 10),
          ("cli_counts", cli_counts, 40), ("precision", precision, 10), ("throughput", run_throughput, 60),
          ("memory", memory, 15), ("batch_sweep", batch_sweep, 30), ("end_to_end", end_to_end, 60),
          ("profile", profile, 20), ("methods", methods, 60), ("compile", compile_benefit, 90))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--smoke", action="store_true", help="tiny models and inputs: checks the script, measures nothing")
    parser.add_argument("--out", default=None, help="folder for <machine>.json and .md (default: benchmarks/results/ of "
                                                    "the checkout; with --smoke, a new temporary folder)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="skip checks that would end after this many seconds")
    parser.add_argument("--only", nargs="+", choices=[name for name, _, _ in CHECKS], metavar="CHECK",
                        help="run these checks alone (environment always runs), e.g. a rerun of `methods` in a short lease")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device is visible to torch; run with --device cpu --smoke to check the script on a CPU.",
              file=sys.stderr)
        return 2
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="device-check-smoke-") if args.smoke else str(REPO / "benchmarks" / "results")
    print(f"results go to {args.out}/", flush=True)
    os.environ.setdefault("PROXYCLIP_CACHE_DIR", tempfile.mkdtemp(prefix="device-check-cache-"))
    device = torch.device(args.device)
    check = Check(args, device)
    for name, fn, estimate_s in CHECKS:
        if args.only is None or name in args.only or name == "environment":
            check.run(name, fn, estimate_s)
    statuses = [c["status"] for c in check.results["checks"].values()]
    print(f"device check: {statuses.count('PASS')} PASS, {statuses.count('FAIL')} FAIL, {statuses.count('SKIP')} SKIP, "
          f"{statuses.count('INFO')} INFO in {time.perf_counter() - check.start:.0f} s; results in {args.out}/{check.slug}.json/.md")
    return 1 if "FAIL" in statuses else 0


if __name__ == "__main__":
    raise SystemExit(main())
