"""Which arithmetic the predictor uses on a device: bfloat16 autocast only where the hardware does bf16
natively (CUDA compute capability ≥ 8.0, CPUs with AVX512-BF16 or AMX-BF16), float32 elsewhere."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

__all__ = ["bf16_native_for", "cpu_flags", "effective_dtype", "native_bf16"]

logger = logging.getLogger("xpengine.inference.predictor")  # the records keep the predictor's logger


def bf16_native_for(
    device_type: str, *, cpu_flags: str | Sequence[str] = (), cuda_capability: tuple[int, int] | None = None
) -> bool:
    """Whether a device does bfloat16 arithmetic in hardware, from what it reports (pure: no probing):
    a CUDA device of compute capability ≥ 8.0 (Ampere and later); a CPU whose flags (the `flags` line
    of /proc/cpuinfo, a string or a list) include `avx512_bf16` or `amx_bf16`. Anything else: False."""
    if device_type == "cuda":
        return cuda_capability is not None and tuple(cuda_capability) >= (8, 0)
    if device_type == "cpu":
        names = set(cpu_flags.split()) if isinstance(cpu_flags, str) else set(cpu_flags)
        return bool(names & {"avx512_bf16", "amx_bf16"})
    return False


def cpu_flags() -> str:
    """The CPU's feature flags (the first `flags` line of /proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line.partition(":")[2]
    except OSError:
        pass
    return ""


def native_bf16(device: torch.device) -> bool:
    """Whether `device` does bfloat16 arithmetic in hardware: CUDA compute capability ≥ 8.0 (Ampere
    and later), or a CPU with AVX512-BF16 or AMX-BF16 (`bf16_native_for`). Elsewhere bf16 autocast is
    emulated, slower than float32 and no more accurate."""
    if device.type == "cuda":
        return bf16_native_for("cuda", cuda_capability=torch.cuda.get_device_capability(device))
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or bf16_native_for("cpu", cpu_flags=cpu_flags())
    return False


def effective_dtype(requested: str, device: torch.device) -> str:
    """The arithmetic the predictor uses: "bfloat16" only where `native_bf16` (a request for it
    elsewhere falls back to float32 with a warning); "auto" is bfloat16 where native, else float32."""
    if requested == "float32":
        return "float32"
    if native_bf16(device):
        return "bfloat16"
    if requested == "bfloat16":
        logger.warning("bfloat16 requested on %s, which has no native bf16 arithmetic: using float32", device)
    return "float32"
