"""The accelerator and precision a run asks for, checked before any weights are loaded.

Lightning itself would stop with a traceback once the model is built (an accelerator this machine does not have),
or run something else without a word: `16-mixed` (or `16`) on a CPU runs bfloat16 autocast, `bf16-mixed`
(lightning/pytorch/trainer/connectors/accelerator_connector.py, `_check_and_init_precision`). What a user sets is
what runs, so both are refused with the fix. bf16 on a CPU without bf16 instructions runs as set, but slower than fp32
(6x on an AVX2-only EPYC): one line says so before the run.
"""
from __future__ import annotations

from typing import Any, Callable

from datamodules.loader import check_worker_sockets
from lightning.pytorch.accelerators import AcceleratorRegistry

from ..errors import ProxyCLIPError
from ..method.onednn_linear import cpu_bf16
from .command_line import get

_GPU_BACKENDS = ("cuda", "mps")      # what Lightning's "gpu" means, in its order of preference (mps first)
_FLOAT16_AMP = ("16", "16-mixed")    # Lightning's alias "16" is 16-mixed
_BFLOAT16 = ("bf16", "bf16-mixed", "bf16-true")   # Lightning's alias "bf16" is bf16-mixed


def _available(name: str) -> bool:
    return bool(AcceleratorRegistry[name]["accelerator"].is_available())


def available_accelerators() -> list[str]:
    """The accelerators Lightning can use on this machine, by their registry names (cpu always)."""
    return sorted(name for name in AcceleratorRegistry.available_accelerators() if _available(name))


def resolved_accelerator(flag: str) -> str:
    """What Lightning runs on for the flag `flag`: "auto" picks as Lightning does (tpu, mps, cuda, else cpu)."""
    if flag == "auto":
        return next((name for name in ("tpu", "mps", "cuda") if name in AcceleratorRegistry and _available(name)), "cpu")
    return flag


def check_accelerator(flag: Any) -> None:
    """A named accelerator must exist and be available here (an Accelerator object or class is Lightning's to check)."""
    if not isinstance(flag, str) or flag == "auto":
        return
    here = ", ".join(available_accelerators())
    if flag != "gpu" and flag not in AcceleratorRegistry:
        known = ", ".join(sorted({"auto", "gpu", *AcceleratorRegistry.available_accelerators()}))
        raise ProxyCLIPError(f"--trainer.accelerator {flag} is not an accelerator Lightning knows ({known}). This "
                             f"machine has: {here}; auto picks the best of them.")
    if any(_available(name) for name in (_GPU_BACKENDS if flag == "gpu" else (flag,))):
        return
    what = "GPU" if flag in ("gpu", *_GPU_BACKENDS) else f"{flag} accelerator"
    raise ProxyCLIPError(f"--trainer.accelerator {flag}: this machine has no {what} that PyTorch can use (available "
                         f"here: {here}). Run with --trainer.accelerator cpu (or auto, which picks what is there), or "
                         f"on a machine with a {what}.")


def check_precision(precision: Any, accelerator: Any) -> None:
    """float16 autocast is refused where Lightning would replace it by bfloat16 (a CPU)."""
    if str(precision) not in _FLOAT16_AMP or not isinstance(accelerator, str) or resolved_accelerator(accelerator) != "cpu":
        return
    raise ProxyCLIPError(f"--trainer.precision {precision} on a CPU: Lightning has no float16 mixed precision on a CPU and "
                         "would run bfloat16 mixed precision (bf16-mixed) instead, so the run would not be the one asked "
                         "for. Use --trainer.precision bf16-mixed for mixed precision on a CPU, or 32 (the default, the "
                         "exact reference); 16-mixed needs a GPU (--trainer.accelerator gpu).")


def bf16_advice(precision: Any, accelerator: Any) -> str | None:
    """The line for bf16 on a CPU that emulates it (no AVX512_BF16 or AMX_BF16), else None. Advice, not a refusal:
    the run is the one asked for, only slower than the default fp32."""
    if str(precision) not in _BFLOAT16 or not isinstance(accelerator, str) or resolved_accelerator(accelerator) != "cpu":
        return None
    if cpu_bf16()["native"] is not False:
        return None
    return (f"note: --trainer.precision {precision} on this CPU: it has no AVX512_BF16 or AMX_BF16 instructions, so "
            "bf16 is emulated, several times slower than fp32 (6x on an AVX2-only EPYC); fp32 is faster here and "
            "exact: --trainer.precision 32 (the default). Running bf16 as set.")


def check_hardware(config: Any, say: Callable[[str], None]) -> None:
    """The trainer's accelerator and precision, and the DataLoader workers' temporary folder, from the parsed
    configuration, before anything is built; `say` prints advice (once, on rank 0)."""
    trainer = getattr(config, "trainer", None)
    accelerator = getattr(trainer, "accelerator", "auto")
    check_accelerator(accelerator)
    check_precision(getattr(trainer, "precision", None), accelerator)
    advice = bf16_advice(getattr(trainer, "precision", None), accelerator)
    if advice:
        say(advice)
    workers = get(config, "data.init_args.num_workers")
    if workers is None:   # the loader's choice (datamodules/loader.py): workers on a GPU, none on a CPU
        gpu = isinstance(accelerator, str) and resolved_accelerator(accelerator) != "cpu"
        workers = 1 if gpu else 0
    check_worker_sockets(int(workers))   # the loader checks its own choice again
