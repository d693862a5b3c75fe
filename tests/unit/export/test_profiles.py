"""Every shipped export profile loads into ExportConfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from simmim_deploy.core.config import load_config
from simmim_deploy.export.config import ExportConfig

PROFILES = sorted((Path(__file__).parents[3] / "export").glob("*.yaml"))


def test_profiles_exist() -> None:
    assert {p.stem for p in PROFILES} >= {"cpu_int8", "gpu_fp16", "jetson_orin_fp16"}


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_profile_loads(profile: Path, tmp_path) -> None:
    (tmp_path / "best.pt").write_bytes(b"")
    ckpt = str(tmp_path / "best.pt")
    overrides = {"checkpoint": ckpt, "out": str(tmp_path / "b"), "calib_data": "builtin:mnist"}
    cfg = load_config(ExportConfig, profile, overrides)
    assert cfg.precision[0] == "fp32" and len(cfg.batch) == 3
    for precision in cfg.precision:
        cfg.thresholds_for(precision)
