"""``simmim-deploy train pretrain`` end to end through the CLI, on real built-in data.

Tiny model (vit_nano_patch8_32 at 32 px, mask cells of 16 px), one thread per process.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

import simmim_deploy.models  # noqa: F401  (registers the tiny models)
from simmim_deploy.core.run_summary import read_run_summary

TINY = ["--model", "vit_nano_patch8_32", "--img-size", "32", "--mask-patch-size", "16"]
CPU = ["--device", "cpu", "--workers", "0"]


def _run(*args: str, timeout: int = 240, torchrun: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 shared cores: threads only contend
    if torchrun:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29531",
            "-m",
            "simmim_deploy.cli.main",
        ]
    else:
        launcher = [sys.executable, "-m", "simmim_deploy.cli.main"]
    return subprocess.run(
        [*launcher, "train", "pretrain", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _encoder(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "encoder.safetensors"))


def test_help_has_example():
    result = subprocess.run(
        [sys.executable, "-m", "simmim_deploy.cli.main", "train", "pretrain", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "Example: simmim-deploy train pretrain" in result.stdout


# builtin:digits pre-trains on its training part only (1,438 of 1,797: the held-out 20% is
# what evaluate scores), batch 64: 22 steps per epoch, 44 in all
COMMON = [
    "--data",
    "builtin:digits",
    *TINY,
    *CPU,
    "--epochs",
    "2",
    "--batch-size",
    "64",
    "--lr",
    "0.02",
]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run, shared by the tests below."""
    out = tmp_path_factory.mktemp("straight") / "run"
    result = _run(*COMMON, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "pretrain done: 2816 images seen in 44 steps" in result.stdout
    assert "0 file(s) skipped" in result.stdout
    return out


def test_pretrain_builtin_learns_and_writes_run(straight_run):
    out = straight_run
    with open(out / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["loss"]]
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) >= 5 and losses[-1] < 0.9 * losses[0], losses
    for rel in ["checkpoints/last.pt", "config.yaml", "reconstructions/epoch_002.png"]:
        assert (out / rel).is_file(), rel
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    summary = read_run_summary(out)  # OUT/metrics.json, the run summary
    assert summary.command == "pretrain" and summary.completed and summary.skipped_files == 0
    assert (summary.global_step, summary.images_seen) == (44, 2816)
    assert summary.encoder == str(out / "encoder.safetensors") and summary.final_loss > 0
    assert Image.open(out / "reconstructions/epoch_002.png").mode == "RGB"
    # the backbone loads into plain timm unchanged
    encoder = timm.create_model("vit_nano_patch8_32", pretrained=False, num_classes=0)
    encoder.load_state_dict(_encoder(out), strict=True)


def test_resume_gives_identical_weights(straight_run, tmp_path):
    out = tmp_path / "b"
    # stop in the middle of the first epoch, then resume across the epoch boundary
    first = _run(*COMMON, "--out", str(out), "--stop-at-step", "17")
    assert first.returncode == 0 and "stopped early" in first.stdout, first.stderr
    refused = _run(*COMMON, "--out", str(out))  # never overwrite a run by accident
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = _run(*COMMON, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = _encoder(straight_run), _encoder(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _write_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    (root / "sub dir").mkdir()
    for i in range(15):
        size = (40 + i, 36 + 2 * i)
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        img = Image.fromarray(pixels)
        if i % 3 == 1:
            img = img.convert("L")
        folder = root / "sub dir" if i % 2 else root
        img.save(folder / f"img {i}.{['png', 'jpg', 'webp'][i % 3]}")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_text("not an image")
    good = (root / "img 0.png").read_bytes()
    (root / "sub dir" / "truncated.png").write_bytes(good[: len(good) // 2])


def test_folder_with_broken_files_skips_and_counts(spaced_tmp):
    data = spaced_tmp / "images"
    data.mkdir()
    _write_folder(data)
    out = spaced_tmp / "run out"
    # 16 files pass the header scan (15 good + truncated): 4 steps of 4 read every one
    result = _run(
        "--data",
        str(data),
        *TINY,
        "--device",
        "cpu",
        "--workers",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "3 file(s) skipped" in result.stdout and "skipped.txt" in result.stdout
    lines = (out / "skipped.txt").read_text().splitlines()
    assert lines[0].startswith("# 3 file(s)")
    names = sorted(Path(line.split("\t")[0]).name for line in lines[1:])
    assert names == ["empty.png", "notes.jpg", "truncated.png"]
    summary = read_run_summary(out)
    assert summary.skipped_files == 3 and summary.skipped_list == str(out / "skipped.txt")


def test_missing_path_is_one_line_error(tmp_path):
    result = _run("--data", str(tmp_path / "nowhere"), *TINY, *CPU, "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")
    assert "not found" in result.stderr


@pytest.mark.timeout(300)
def test_ddp_two_cpu_processes_keep_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    result = _run(
        "--data",
        "builtin:digits",
        *TINY,
        *CPU,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--stop-at-step",
        "12",
        "--out",
        str(out),
        torchrun=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("ranks: 2"))
    digests = line.split(":")[-1].split()
    assert len(digests) == 2 and digests[0] == digests[1]
    # 12 steps x 16 images x 2 ranks
    assert "384 images seen in 12 steps" in result.stdout
    assert (out / "encoder.safetensors").is_file()
