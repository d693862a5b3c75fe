"""``train classify`` and ``evaluate`` through the CLI on real built-in digits (no pre-training)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from simmim_deploy.cli.main import app, main
from simmim_deploy.core.run_summary import read_run_summary

pytest.importorskip("sklearn")

# 10 labelled digits per class -> 100 images, batch 32: 3 optimizer steps an epoch.
TRAIN = [
    "train", "classify", "--data", "builtin:digits", "--model", "vit_nano_patch8_32",
    "--pretrained", "none", "--epochs", "2", "--batch-size", "32", "--labels-per-class", "10",
    "--workers", "0", "--lr", "5e-3", "--seed", "3",
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two OpenMP threads on a shared 2-core machine are ~10x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("with space") / "classify run"
    output = _invoke([*TRAIN, "--out", str(out)])
    assert "classify done" in output
    # the LR and its derivation, printed at the start: batch 32 < 512 keeps the per-512 value
    assert "lr 0.005 = 0.005 per 512 images, floor rule below 512: effective batch 32" in output
    assert "precision auto: " in output
    return out


def test_outputs_and_checkpoint_meta(run_dir: Path) -> None:
    for name in ("best.pt", "last.pt", "metrics.json", "config.yaml", "metrics.csv",
                 "confusion_matrix.png", "training_curves.png"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").iterdir())
    best = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    meta = best["meta"]
    assert meta["task"] == "classification"
    assert meta["model_name"] == "vit_nano_patch8_32"
    assert meta["img_size"] == 32 and meta["num_classes"] == 10
    assert meta["class_names"] == [str(d) for d in range(10)]
    assert len(meta["mean"]) == len(meta["std"]) == 3
    assert meta["interpolation"] == "bicubic" and 0 < meta["crop_pct"] <= 1
    assert meta["model_kwargs"]["global_pool"] == "avg"
    last = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    assert last["meta"]["class_names"] == meta["class_names"] and "optimizer" in last
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train_images"] == 100 == sum(metrics["class_counts"]["train"].values())
    assert metrics["val_images"] == 359 == sum(metrics["class_counts"]["val"].values())
    assert metrics["num_samples"] == 359
    assert set(metrics["per_class"]) == set(meta["class_names"])
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 100.0
    assert metrics["global_step"] == 6 and metrics["completed"]
    assert (
        metrics["lr_plan"]["lr"] == pytest.approx(5e-3) and metrics["lr_plan"]["lr_rule"] == "floor"
    )
    assert metrics["lr_plan"]["warmup_steps"] == 1  # the official 20 epochs, capped to 20% of 2
    assert metrics["precision"] in ("fp32", "bf16") and metrics["early_stop"] is None
    summary = read_run_summary(run_dir)  # the typed parser reads what the run wrote
    assert summary.command == "classify" and summary.best["top1"] == metrics["top1"]
    assert summary.best_epoch == metrics["epoch"] and summary.checkpoint == str(run_dir / "best.pt")


def test_evaluate_command_reproduces_validation_score(run_dir: Path) -> None:
    output = _invoke(["evaluate", str(run_dir / "best.pt"),
                      "--data", "builtin:digits", "--device", "cpu"])  # fmt: skip
    scores = json.loads(output.splitlines()[0])
    trained = read_run_summary(run_dir)
    assert scores["task"] == "classification"
    assert scores["top1"] == pytest.approx(trained.best["top1"])
    assert (run_dir / "eval" / "metrics.json").is_file()
    assert (run_dir / "eval" / "confusion_matrix.png").is_file()


def test_resume_finishes_like_an_uninterrupted_run(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    output = _invoke([*TRAIN, "--out", str(out), "--stop-at-step", "4"])
    assert "stopped early" in output
    _invoke([*TRAIN, "--out", str(out), "--resume"])
    a = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["model"]
    b = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_bad_data_path_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # main() in-process (a subprocess would spend its time importing torch)
    args = [*TRAIN[:3], str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--val-split", "0.2"]
    monkeypatch.setattr(sys, "argv", ["simmim-deploy", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nope" in lines[0]
