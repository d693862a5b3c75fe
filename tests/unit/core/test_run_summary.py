"""The run summary (``OUT/metrics.json`` of the train commands): one producer, one parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simmim_deploy.core.errors import UserError
from simmim_deploy.core.run_summary import SUMMARY_VERSION, RunSummary, read_run_summary


def _classify(out: Path, **kw) -> RunSummary:
    values = dict(
        command="classify", out=str(out), completed=True, global_step=6, epochs_completed=2,
        images_seen=192, precision="fp32", lr_plan={"lr": 5e-3, "lr_rule": "floor"},
        model="vit_nano_patch8_32", data="builtin:digits", train_images=100, skipped_files=0,
        best={"top1": 81.5, "top5": 99.0, "epoch": 2, "per_class": {"0": {"f1": 0.9}}},
        best_epoch=2, last={"top1": 80.0, "epoch": 2}, checkpoint=str(out / "best.pt"),
        pretrained="none", val_images=359, mode="full", class_counts={"train": {"0": 10}},
    )  # fmt: skip
    return RunSummary(**{**values, **kw})


def test_written_summary_reads_back_with_scores_at_the_top_level(tmp_path: Path) -> None:
    summary = _classify(tmp_path)
    path = summary.write()
    stored = json.loads(path.read_text())
    assert path == tmp_path / "metrics.json" and stored["format_version"] == SUMMARY_VERSION
    # the best validation's scores sit where evaluate writes them; the last one is nested
    assert stored["top1"] == 81.5 and stored["last"]["top1"] == 80.0 and "best" not in stored
    assert stored["early_stop"] is None and not {"encoder", "final_loss"} & set(stored)
    assert read_run_summary(tmp_path) == summary == read_run_summary(path)
    assert read_run_summary(tmp_path).best["per_class"] == {"0": {"f1": 0.9}}


def test_pretrain_summary_derives_the_skip_list(tmp_path: Path) -> None:
    summary = RunSummary(
        command="pretrain", out=str(tmp_path), completed=False, global_step=4,
        epochs_completed=0, images_seen=256, precision="bf16", lr_plan={"lr": 1e-4},
        model="vit_micro_patch8_64", data="builtin:mnist", train_images=5000, skipped_files=2,
        final_loss=0.31, encoder=str(tmp_path / "encoder.safetensors"), rank_digests=("a", "b"),
    )  # fmt: skip
    stored = summary.to_dict()
    assert stored["skipped_list"] == str(tmp_path / "skipped.txt")
    assert stored["rank_digests"] == ["a", "b"] and not stored["completed"]
    assert not {"checkpoint", "last", "mode", "early_stop"} & set(stored)  # fine-tuning's fields
    assert RunSummary.from_dict(json.loads(json.dumps(stored))) == summary


def test_other_versions_and_incomplete_summaries_are_refused(tmp_path: Path) -> None:
    stored = _classify(tmp_path).to_dict()
    with pytest.raises(UserError, match=r"format 9; this simmim-deploy reads up to 1: upgrade"):
        RunSummary.from_dict({**stored, "format_version": 9})
    older = {k: v for k, v in stored.items() if k not in ("format_version", "command")}
    with pytest.raises(UserError, match="no run-summary format_version: .* re-run the training"):
        RunSummary.from_dict(older)
    with pytest.raises(UserError, match="lacks global_step"):
        RunSummary.from_dict({k: v for k, v in stored.items() if k != "global_step"})
    with pytest.raises(UserError, match="unknown command 'train'"):
        RunSummary.from_dict({**stored, "command": "train"})
    with pytest.raises(UserError, match="no run summary"):
        read_run_summary(tmp_path / "missing")
    with pytest.raises(ValueError, match="clash"):  # a score may not shadow a field
        _classify(tmp_path, best={"precision": 50.0})
