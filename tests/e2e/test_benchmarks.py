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
           "--calib-images", "32", "--duration", "0.05", "--recover-epochs", "1", "--rounds", "2",
           "--out", str(tmp_path / "out")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "bench_export.json").read_text())
    rows = {r["variant"]: r for r in result["cases"][0]["rows"]}
    assert list(rows) == [
        "eager fp32", "eager bf16 autocast", "ort fp32", "openvino fp32 (default)",
        "openvino + nncf int8", "ort int8 dynamic", "ort int8 static linear",
        "ort int8 static all", "pruned 30% + int8 linear",
        "openvino int8 static linear (our Q/DQ file)",
    ]  # fmt: skip
    assert rows["ort fp32"]["metric"] == rows["eager fp32"]["metric"]  # same decisions
    assert rows["openvino fp32 (default)"]["metric"] == rows["eager fp32"]["metric"]
    assert [r["peer"] for r in rows.values()] == [True] * 5 + [False] * 5
    assert all(len(r["rounds"]["b32"]) == 2 for r in rows.values())  # --rounds 2, interleaved
    assert "x best peer" in result["cases"][0]["table"]
    assert all(r["b32"]["images_per_s"] > 0 for r in rows.values())
    assert rows["pruned 30% + int8 linear"]["mb"] < rows["ort int8 static linear"]["mb"]
    assert result["gemm"]["ratio"] > 0 and "ISA" in result["cpu"]


def test_small_data_benchmark_quick(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_small_data.py"), "--quick",
           "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    result = json.loads((tmp_path / "out" / "small_data_quick.json").read_text())
    rows = {r["row"] for r in result["runs"]}
    assert rows == {"new defaults + SimMIM", "1-NN on pixels", "logistic regression on pixels"}
    assert all(0.0 <= r["top1"] <= 100.0 for r in result["runs"])
    assert (
        "AVX" in result["machine"]["before"]["isa"]
        or "unknown" in result["machine"]["before"]["isa"]
    )
    assert "±" in result["table_md"] and "new defaults + SimMIM" in out.stdout
    # the labelled training images and the validation folder never share an image
    data = tmp_path / "work" / "data" / "cls" / "k7-s0"
    train = {p.name for p in (data / "train").rglob("*.png")}
    val = {p.name for p in (data / "val").rglob("*.png")}
    assert len(train) == 70 and len(val) == 100 and not train & val
    # pre-training read the unlabelled pool, never the held-out digits evaluate scores
    assert (tmp_path / "work" / "pretrain" / "cls" / "encoder.safetensors").is_file()


def test_small_data_detect_pool_shares_no_pixel_with_the_validation_tiles(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    from simmim_deploy.data.builtin_tiles import tile_detection_root

    sys.path.insert(0, str(ROOT / "benchmarks" / "helpers"))
    import small_data_detect

    full = np.asarray(skdata.hubble_deep_field(), np.uint8)
    val_at = []  # where each validation tile sits in the deep field, found by its pixels
    for f in sorted((tile_detection_root("galaxies-det") / "val" / "images").glob("*.png")):
        tile = np.asarray(Image.open(f).convert("RGB"))
        hits = [(x, y) for y in range(0, 640, 128) for x in range(0, 640, 128)
                if np.array_equal(full[y : y + 128, x : x + 128], tile)]  # fmt: skip
        assert len(hits) == 1
        val_at += hits
    pool = sorted(small_data_detect.prepare_pool(tmp_path).glob("*.png"))
    assert len(pool) > 300
    for f in pool:
        y, x = map(int, f.stem.split("_"))
        assert np.array_equal(np.asarray(Image.open(f)), full[y : y + 128, x : x + 128])
        assert all(abs(x - vx) >= 128 or abs(y - vy) >= 128 for vx, vy in val_at), f.name
