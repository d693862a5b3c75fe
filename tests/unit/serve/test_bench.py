"""`run_benchmark` on a real bundle: every documented field, files written."""

from __future__ import annotations

import json
from pathlib import Path

from simmim_deploy.serve.bench import run_benchmark


def test_benchmark_fields_and_files(cls_bundle: Path, image_dir: Path, tmp_path: Path) -> None:
    progress: list[tuple[int, int]] = []
    report = run_benchmark(
        cls_bundle, ["ort-cpu"], [1, 3], duration=0.2, images=str(image_dir), out_dir=tmp_path,
        warmup=1, on_progress=lambda done, total: progress.append((done, total)),
    )  # fmt: skip
    assert progress == [(1, 2), (2, 2)]  # the benchmark bar: one step per setting
    assert [(r["backend"], r["precision"], r["batch"]) for r in report["results"]] == [
        ("ort-cpu", "fp32", 1),
        ("ort-cpu", "fp32", 3),
    ]
    for r in report["results"]:
        assert r["describe"]["providers_used"] == ["CPUExecutionProvider"]
        for kind in ("model_only", "end_to_end"):
            fig = r[kind]
            assert fig["iterations"] >= 3
            assert 0 < fig["p50_ms"] <= fig["p90_ms"] <= fig["p99_ms"]
            assert fig["mean_ms"] > 0 and fig["images_per_s"] > 0
        # decode + preprocess + post cost something on top of the model
        assert r["end_to_end"]["p50_ms"] > r["model_only"]["p50_ms"] * 0.5
    env = report["environment"]
    assert env["cpu_count"] and env["onnxruntime"] and "ort_intra_op" in env["threads"]
    assert report["images"] == {"source": str(image_dir), "count": 5}
    on_disk = json.loads((tmp_path / "benchmark.json").read_text())
    assert on_disk["results"] == report["results"]
    assert Path(report["plot"]).read_bytes()[:4] == b"\x89PNG"
