"""export reports each step as it starts (INT8 calibration batch by batch); export and verify
end with the next command."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import simmim_deploy.models  # noqa: F401  (registers the tiny encoders)
from simmim_deploy.core.checkpoint_meta import CheckpointMeta
from simmim_deploy.export.bundle import export_bundle
from simmim_deploy.export.config import ExportConfig
from simmim_deploy.models.classifier import build_classifier_from_meta


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A vit_nano classifier checkpoint (random weights, 10 classes)."""
    meta = CheckpointMeta(
        task="classification", model_name="vit_nano_patch8_32", img_size=32,
        class_names=tuple(str(i) for i in range(10)), mean=(0.5,) * 3, std=(0.25,) * 3,
    ).to_dict()  # fmt: skip
    torch.manual_seed(0)
    path = tmp_path / "best.pt"
    torch.save({"model": build_classifier_from_meta(meta).state_dict(), "meta": meta}, path)
    return path


def test_export_steps_and_calibration_batches(checkpoint: Path, tmp_path: Path) -> None:
    # Random weights give near-tied logits: INT8 budgets would test luck, not the progress.
    loose = {"int8": {"min_cosine": 0.0, "min_top1_agreement": 0.0, "max_metric_drop": 100.0}}
    steps: list[str] = []
    export_bundle(
        ExportConfig(
            checkpoint=str(checkpoint),
            out=str(tmp_path / "bundle"),
            precision=("fp32", "int8"),
            calib_data="builtin:digits",
            calib_images=32,
            eval_data="builtin:digits",
            verify_images=16,
            exporter="torchscript",
            thresholds=loose,
        ),  # fmt: skip
        on_step=steps.append,
    )
    assert steps[0] == "loading best.pt"
    assert any(s.startswith("loading calibration images") for s in steps)
    # 32 calibration images in batches of 16: both batches are reported, in order.
    calib = [s for s in steps if s.startswith("calibrating int8: batch")]
    assert calib[-1] == "calibrating int8: batch 2/2" and calib[0] == "calibrating int8: batch 1/2"
    assert steps.index("converting int8 (calibrating)") < steps.index(calib[0])
    assert steps[-1] == "verifying int8 on 16 images"


def test_export_and_verify_end_with_the_next_command(checkpoint: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from simmim_deploy.cli.main import app

    bundle = tmp_path / "my bundle"
    common = ["--exporter", "torchscript", "--eval-data", "builtin:digits"]
    res = CliRunner().invoke(app, ["export", str(checkpoint), "--out", str(bundle), *common])
    assert res.exit_code == 0, res.output
    assert f"next: simmim-deploy predict {bundle} IMAGES/" in res.output
    res = CliRunner().invoke(
        app, ["verify", str(bundle), "--data", "builtin:digits", "--limit", "8"]
    )
    assert res.exit_code == 0, res.output
    assert "fp32: passed" in res.output and "next: simmim-deploy predict" in res.output
