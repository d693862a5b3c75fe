"""``--precision auto``: bf16 autocast where the hardware computes in bf16 natively, else fp32.

Native bf16: CUDA GPUs of compute capability 8.0 and newer (Ampere on), CPUs with AMX-BF16 or
AVX512-BF16 (read by :func:`simmim_deploy.core.cpu.cpu_info`). Elsewhere bf16 autocast is
emulated and slower than fp32, so ``auto`` keeps fp32. fp16 is never chosen automatically: it
needs a loss scaler and overflows where bf16 does not.
"""

from __future__ import annotations

import torch

from simmim_deploy.core.cpu import CpuInfo, cpu_info


def resolve_precision(
    requested: str, device: torch.device, cpu: CpuInfo | None = None
) -> tuple[str, str]:
    """``(precision, reason)``: what to train in on ``device`` and a line saying why.

    Args:
        requested: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        device: the training device.
        cpu: the CPU's flags (default: probed); for tests.
    """
    if requested != "auto":
        return requested, f"precision {requested} (as asked)"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        name = torch.cuda.get_device_name(device)
        if major >= 8:
            return "bf16", f"precision auto: bf16 autocast ({name}, compute {major}.{minor} >= 8.0)"
        return "fp32", f"precision auto: fp32 ({name}, compute {major}.{minor} has no native bf16)"
    if device.type == "cpu":
        info = cpu if cpu is not None else cpu_info()
        if info.bf16:
            return "bf16", f"precision auto: bf16 autocast (CPU has {info.isa_line()})"
        return "fp32", f"precision auto: fp32 (CPU has no AMX-BF16/AVX512-BF16: {info.isa_line()})"
    return "fp32", f"precision auto: fp32 (no native bf16 rule for {device.type})"
