"""The CPU's model name and the instruction sets that decide which artefact is fastest on it.

INT8 GEMMs are several times faster with AVX-512 VNNI / AVX-VNNI (``vpdpbusd``) or AMX-INT8
(tile multiply) than with AVX2 alone, and OpenVINO runs FP32 models in bf16 by default only
where the CPU has bf16 instructions (AVX512_BF16 or AMX-BF16). Every speed figure this project
prints names these flags, read here and nowhere else. Linux reports them in ``/proc/cpuinfo``
(the kernel's names); elsewhere they are unknown and reported as such.
"""

from __future__ import annotations

import dataclasses
import os
import platform

# Kernel flag -> the name people know it by, in the order they are printed.
ISA_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
}
CPUINFO = "/proc/cpuinfo"


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    """What the CPU can do.

    Attributes:
        model: the model name (``/proc/cpuinfo`` ``model name``, else ``platform.processor()``).
        flags: kernel flag -> present, for every key of :data:`ISA_FLAGS`; empty when unknown.
        logical_cpus: ``os.cpu_count()``.
    """

    model: str
    flags: dict[str, bool]
    logical_cpus: int | None

    @property
    def known(self) -> bool:
        """Whether the flags were read at all (False off Linux)."""
        return bool(self.flags)

    @property
    def int8_dot(self) -> bool:
        """INT8 dot-product instructions (VNNI or AMX): INT8 GEMMs several times FP32."""
        return any(self.flags.get(f) for f in ("avx512_vnni", "avx_vnni", "amx_int8"))

    @property
    def bf16(self) -> bool:
        """bf16 arithmetic in hardware (OpenVINO then infers FP32 models in bf16)."""
        return any(self.flags.get(f) for f in ("avx512_bf16", "amx_bf16"))

    def isa_line(self) -> str:
        """``AVX2 AVX-512 (no AVX512-VNNI, AVX-VNNI, AVX512-BF16, AMX-INT8, AMX-BF16)``."""
        if not self.known:
            return "ISA unknown (no /proc/cpuinfo)"
        have = [n for f, n in ISA_FLAGS.items() if self.flags[f]]
        lack = [n for f, n in ISA_FLAGS.items() if not self.flags[f]]
        text = " ".join(have) or "none of " + ", ".join(ISA_FLAGS.values())
        return text + (f" (no {', '.join(lack)})" if have and lack else "")

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON reports and cache keys."""
        return {"model": self.model, "flags": dict(self.flags), "logical_cpus": self.logical_cpus}


def parse_cpuinfo(text: str) -> tuple[str, dict[str, bool]]:
    """``(model name, {flag: present})`` from the text of ``/proc/cpuinfo`` (first CPU)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if model and flags:
            break
    return model, {f: f in flags for f in ISA_FLAGS} if flags else {}


def cpu_info(path: str = CPUINFO) -> CpuInfo:
    """Probe this machine's CPU (cheap: one small file read, no subprocess)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            model, flags = parse_cpuinfo(fh.read())
    except OSError:
        model, flags = "", {}
    model = model or platform.processor() or platform.machine()
    return CpuInfo(model, flags, os.cpu_count())
