"""The one ISA probe: parsing /proc/cpuinfo, the printed line, and what `checks` reports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from simmim_deploy.core.cpu import ISA_FLAGS, cpu_info, parse_cpuinfo

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: ignored second CPU
flags\t\t: fpu
"""
EPYC_ZEN2 = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx avx2 fma\n"


def test_parse_amx_and_avx2_only_machines(tmp_path: Path) -> None:
    model, flags = parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert model.startswith("Intel(R) Xeon(R) Platinum 8481C")
    assert set(flags) == set(ISA_FLAGS)
    assert flags["amx_int8"] and flags["amx_bf16"] and flags["avx512_vnni"]
    assert not flags["avx_vnni"]
    path = tmp_path / "cpuinfo"
    path.write_text(SAPPHIRE_RAPIDS)
    spr = cpu_info(str(path))
    assert spr.int8_dot and spr.bf16
    assert spr.isa_line() == "AVX2 AVX-512 AVX512-VNNI AVX512-BF16 AMX-INT8 AMX-BF16 (no AVX-VNNI)"
    path.write_text(EPYC_ZEN2)
    zen2 = cpu_info(str(path))
    assert not zen2.int8_dot and not zen2.bf16
    assert zen2.isa_line().startswith("AVX2 (no AVX-512, AVX512-VNNI")


def test_unknown_without_cpuinfo(tmp_path: Path) -> None:
    info = cpu_info(str(tmp_path / "missing"))
    assert not info.known and info.model
    assert info.isa_line() == "ISA unknown (no /proc/cpuinfo)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_checks_reports_this_cpu() -> None:
    from simmim_deploy.core.environment import environment_report

    cpu = environment_report(include_torch=False)["cpu"]
    assert cpu["model"] and set(cpu["flags"]) == set(ISA_FLAGS)
    assert cpu["isa"] == cpu_info().isa_line()
