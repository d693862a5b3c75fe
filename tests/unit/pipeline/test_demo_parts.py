"""The demo's own logic without training: out-folder policy, accuracy from JSON lines, speed-ups,
and the summary table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from simmim_deploy.core.errors import UserError
from simmim_deploy.pipeline.demo import ERROR_LOG, MARKER, StageRunner, prepare_out
from simmim_deploy.pipeline.demo_bench import speedup_rows
from simmim_deploy.pipeline.demo_config import DemoConfig
from simmim_deploy.pipeline.demo_report import picture_lines, summary_table
from simmim_deploy.pipeline.demo_stages import jsonl_top1


def test_prepare_out_creates_marks_and_refuses_a_second_run(spaced_tmp: Path) -> None:
    out = spaced_tmp / "demo"
    assert prepare_out(DemoConfig(out=str(out))) == out
    assert (out / MARKER).is_file()
    (out / "summary.json").write_text("{}")
    with pytest.raises(UserError, match="--overwrite"):
        prepare_out(DemoConfig(out=str(out)))
    assert (out / "summary.json").is_file()


def test_overwrite_replaces_only_an_earlier_demo_run(spaced_tmp: Path) -> None:
    demo = spaced_tmp / "demo"
    prepare_out(DemoConfig(out=str(demo)))
    (demo / "old.txt").write_text("stale")
    prepare_out(DemoConfig(out=str(demo), overwrite=True))
    assert not (demo / "old.txt").exists() and (demo / MARKER).is_file()
    precious = spaced_tmp / "my photos"
    precious.mkdir()
    (precious / "a.jpg").write_bytes(b"not a demo")
    with pytest.raises(UserError, match="only replaces demo folders"):
        prepare_out(DemoConfig(out=str(precious), overwrite=True))
    assert (precious / "a.jpg").read_bytes() == b"not a demo"


def test_an_empty_existing_folder_is_used_and_a_file_is_refused(spaced_tmp: Path) -> None:
    prepare_out(DemoConfig(out=str(spaced_tmp)))  # the fixture's empty folder
    file = spaced_tmp / "f.txt"
    file.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        prepare_out(DemoConfig(out=str(file)))


@pytest.mark.parametrize("device", ["cuda0", "tpu", "CPU"])
def test_bad_device_is_a_user_error(device: str) -> None:
    with pytest.raises(UserError, match="--device"):
        DemoConfig(device=device)


def test_jsonl_top1_compares_the_top_label_with_the_class_folder(tmp_path: Path) -> None:
    records = [
        {"path": "/x/heldout/3/1.png", "topk": [{"label": "3", "index": 3, "score": 0.9}]},
        {"path": "/x/heldout/3/2.png", "topk": [{"label": "8", "index": 8, "score": 0.6}]},
        {"path": "/x/heldout/7/3.png", "topk": [{"label": "7", "index": 7, "score": 0.8}]},
        {"path": "/x/heldout/7/4.png", "error": "cannot decode"},
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert jsonl_top1(path) == pytest.approx(200 / 3, abs=0.01)


def _result(backend: str, precision: str, batch: int, ips: float) -> dict:
    figures = {"images_per_s": ips, "p50_ms": 1000 * batch / ips}
    return {"backend": backend, "precision": precision, "batch": batch,
            "model_only": figures, "end_to_end": figures}  # fmt: skip


def test_speedups_are_relative_to_pytorch_at_the_same_batch() -> None:
    rows = speedup_rows(
        [
            _result("torch", "fp32", 1, 100.0),
            _result("torch", "fp32", 32, 400.0),
            _result("ort-cpu", "fp32", 1, 150.0),
            _result("ort-cpu", "int8", 32, 1200.0),
        ]
    )
    speed = {(r["backend"], r["precision"], r["batch"]): r["speedup"] for r in rows}
    assert speed[("pytorch-eager", "fp32", 32)] == 1.0
    assert speed[("onnxruntime", "fp32", 1)] == 1.5
    assert speed[("onnxruntime", "int8", 32)] == 3.0


def test_summary_table_names_every_headline_figure() -> None:
    summary = {
        "mode": "full", "device": "cpu", "seconds": 480.0,
        "data": {"labels_per_class": 10, "heldout_images": 1000},
        "headline": {
            "top1_simmim": 71.2, "top1_scratch": 60.4, "top1_gain_points": 10.8,
            "top1_onnx_fp32": 71.2, "top1_onnx_int8": 70.9, "int8_drop_points": 0.3,
            "detection_mAP": 12.3, "detection_mAP50": 30.1,  # percent, as every score
        },
        "benchmark": {"rows": speedup_rows([_result("torch", "fp32", 1, 100.0),
                                            _result("ort-cpu", "int8", 1, 250.0)])},
        "detection": {"epochs": 10, "train_images": 300},
        "pictures": {"reconstructions": "r.png", "detections": None},
    }  # fmt: skip
    console = Console(record=True, width=200)
    console.print(summary_table(summary))
    text = console.export_text()
    for expected in (
        "71.2 %",
        "60.4 %",
        "SimMIM +10.8 points",
        "+0.3 points",
        "2.50x",
        "12.3 %",
        "30.1 %",
    ):
        assert expected in text
    assert picture_lines(summary) == [
        "reconstructions: r.png",
        "detections: (not made in this mode)",
    ]


def test_a_failing_stage_is_one_line_naming_it_with_the_traceback_on_disk(tmp_path: Path) -> None:
    lines: list[str] = []
    runner = StageRunner(tmp_path, total=2, log=lines.append)
    with runner.stage("data", "write files"):
        pass
    with pytest.raises(UserError) as info, runner.stage("export", "convert"):
        raise ValueError("opset 99 is not supported\nsecond line")
    message = str(info.value)
    assert message.startswith("demo stage 'export' failed: ValueError: opset 99 is not supported")
    assert "\n" not in message and str(tmp_path / ERROR_LOG) in message
    assert "second line" in (tmp_path / ERROR_LOG).read_text()
    expected = "^demo stage 'predict' failed: no images found$"
    with pytest.raises(UserError, match=expected), runner.stage("predict", "run"):
        raise UserError("no images found")
    assert set(runner.seconds) == {"data"} and lines[0] == "[1/2] data: write files"
