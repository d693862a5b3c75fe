"""Bad input gives one clear line that says what to do (never a traceback or unsafe advice)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from simmim_deploy.core.errors import UserError

CLI = [sys.executable, "-m", "simmim_deploy.cli.main"]


def test_text_file_renamed_pt_is_not_a_checkpoint(tmp_path: Path) -> None:
    fake = tmp_path / "my run" / "fake.pt"
    fake.parent.mkdir()
    fake.write_text("hello, I am a text file\n")
    res = subprocess.run(
        [*CLI, "export", str(fake), "--out", str(tmp_path / "bundle")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"not a checkpoint: {fake} (not a PyTorch zip archive)" in lines[0]
    assert "weights_only" not in res.stderr  # never torch's advice to unpickle
    # The other commands that open a checkpoint say the same (one loader).
    from simmim_deploy.models.torch_backend import open_torch_backend

    with pytest.raises(UserError, match="not a PyTorch zip archive"):
        open_torch_backend(fake)


def test_exporting_a_pretraining_checkpoint_says_fine_tune_it_first(tmp_path: Path) -> None:
    """``train pretrain`` writes ``{"model", "meta": {"kind": "simmim-pretrain", ...}}``."""
    from simmim_deploy.core.checkpoint_meta import PRETRAIN_KIND
    from simmim_deploy.export.bundle import export_bundle
    from simmim_deploy.export.config import ExportConfig

    last = tmp_path / "last.pt"
    meta = {"kind": PRETRAIN_KIND, "model_name": "vit_nano_patch8_32", "img_size": 32}
    torch.save({"model": {"encoder.cls_token": torch.zeros(1, 1, 8)}, "meta": meta}, last)
    with pytest.raises(UserError, match="SimMIM pre-training checkpoint: fine-tune it first"):
        export_bundle(ExportConfig(checkpoint=str(last), out=str(tmp_path / "b")))
    encoder = tmp_path / "encoder.safetensors"
    encoder.write_bytes(b"\x00" * 16)
    with pytest.raises(UserError, match="encoder weights, not a fine-tuned checkpoint"):
        export_bundle(ExportConfig(checkpoint=str(encoder), out=str(tmp_path / "b")))
    assert not (tmp_path / "b").exists()


def test_folder_of_non_images_points_at_the_skip_log(tmp_path: Path) -> None:
    from simmim_deploy.data.images import SkipLog
    from simmim_deploy.data.pretrain_dataset import PretrainDataset

    data = tmp_path / "photos"
    data.mkdir()
    for name in ("a.jpg", "b.png"):
        (data / name).write_text("not pixels")
    run = tmp_path / "run"
    with pytest.raises(UserError) as err:
        PretrainDataset(sorted(data.iterdir()), None, None, skip_log=SkipLog(run))  # type: ignore[arg-type]
    message = str(err.value)
    assert "\n" not in message and str(run / "skipped.txt") in message
    listed = (run / "skipped.txt").read_text()
    assert "a.jpg" in listed and "b.png" in listed


def test_benchmark_images_skips_and_names_a_bad_file(tmp_path: Path, caplog) -> None:
    from PIL import Image

    from simmim_deploy.serve.bench import sample_images

    Image.new("RGB", (20, 12), (200, 10, 10)).save(tmp_path / "good.jpg")
    (tmp_path / "broken.jpg").write_text("not a jpeg")
    with caplog.at_level("WARNING"):
        encoded, origin = sample_images(str(tmp_path))
    assert len(encoded) == 1 and "broken.jpg" in origin
    assert any("broken.jpg" in r.getMessage() for r in caplog.records)
    (tmp_path / "good.jpg").unlink()
    with pytest.raises(UserError, match="no readable image"):
        sample_images(str(tmp_path))


class _Pickled:
    """Any object: torch.save pickles it, weights_only loading refuses it."""


def test_pickled_objects_and_foreign_weights_never_get_torchs_advice(tmp_path: Path) -> None:
    from simmim_deploy.models.checkpoint import read_weights_file
    from simmim_deploy.models.factory import read_checkpoint

    pickled = tmp_path / "pickled.pt"
    torch.save({"model": {}, "meta": _Pickled()}, pickled)
    for read in (read_checkpoint, read_weights_file):
        with pytest.raises(UserError, match="pickled objects") as err:
            read(pickled)
        assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    text = tmp_path / "encoder.pth"
    text.write_text("not weights")
    with pytest.raises(UserError, match="neither safetensors nor a PyTorch zip archive"):
        read_weights_file(text)
