"""The benchmark scripts run end to end (tiny settings: this checks they work, not speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_scripts_explain_themselves(script: Path) -> None:
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage" in out.stdout.lower()


def test_export_benchmark_measures_every_variant(tmp_path: Path) -> None:
    from tests.unit.export.conftest import build_classification_checkpoint

    ckpt = build_classification_checkpoint(tmp_path / "tiny.pt", "vit_nano_patch8_32", 32)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_export.py"), "--checkpoint", str(ckpt),
           "--data", "builtin:digits", "--no-detector", "--eval-images", "48",
           "--calib-images", "32", "--duration", "0.05", "--recover-epochs", "1",
           "--out", str(tmp_path / "out")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "bench_export.json").read_text())
    rows = {r["variant"]: r for r in result["cases"][0]["rows"]}
    assert list(rows) == ["eager fp32", "ort fp32", "ort int8 dynamic", "ort int8 static linear",
                          "ort int8 static all", "pruned 30% + int8 linear"]  # fmt: skip
    assert rows["ort fp32"]["metric"] == rows["eager fp32"]["metric"]  # same decisions
    assert all(r["b32"]["images_per_s"] > 0 for r in rows.values())
    assert rows["pruned 30% + int8 linear"]["mb"] < rows["ort int8 static linear"]["mb"]
    assert result["gemm"]["ratio"] > 0 and "ISA" in result["cpu"]
