"""Typed, versioned contracts: checkpoint meta, bundle manifest and its preprocessing spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simmim_deploy.core.checkpoint_meta import META_VERSION, CheckpointMeta
from simmim_deploy.core.data_split import DataSplit
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.manifest import FORMAT_VERSION, Manifest, load_manifest, read_manifest
from simmim_deploy.core.preprocess import PreprocessSpec


def _meta(**kw) -> CheckpointMeta:
    values = dict(
        task="classification", model_name="vit_nano_patch8_32", img_size=224,
        class_names=("a", "b"), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
        train_config={"data": "builtin:digits", "val_split": None, "split_seed": 3},
    )  # fmt: skip
    return CheckpointMeta(**{**values, **kw})


def test_checkpoint_meta_round_trips_and_reads_older_metas() -> None:
    meta = _meta()
    assert CheckpointMeta.from_dict(meta.to_dict()) == meta
    assert meta.to_dict()["num_classes"] == 2 and meta.to_dict()["format_version"] == META_VERSION
    # Before the schema, detector metas carried preprocess/outputs keys nothing read.
    old = {**meta.to_dict(), "preprocess": {"resize": "letterbox"}, "outputs": ["boxes"]}
    del old["format_version"]
    assert CheckpointMeta.from_dict(old) == meta
    assert meta.data_split() == DataSplit("classification", "builtin:digits", None, None, 3)


def test_checkpoint_meta_refuses_what_it_cannot_read() -> None:
    with pytest.raises(UserError, match="pre-training checkpoint: fine-tune it first"):
        CheckpointMeta.from_dict({"kind": "simmim-pretrain", "model_name": "x", "img_size": 8})
    with pytest.raises(UserError, match="upgrade simmim-deploy"):
        CheckpointMeta.from_dict({**_meta().to_dict(), "format_version": META_VERSION + 1})
    with pytest.raises(UserError, match="lacks model_name"):
        CheckpointMeta.from_dict({k: v for k, v in _meta().to_dict().items() if k != "model_name"})
    with pytest.raises(UserError, match="unknown task"):
        _meta(task="segmentation")


@pytest.mark.parametrize("crop_pct", [0.875, 0.9, 0.95, 1.0])
def test_manifest_records_crop_pct_and_verify_preprocesses_like_the_checkpoint(
    crop_pct: float,
) -> None:
    """verify rebuilt crop_pct from the floored resize; now the recorded value is used."""
    from simmim_deploy.export.inputs import preprocess
    from simmim_deploy.export.verify import _meta_from_manifest

    meta = _meta(crop_pct=crop_pct, img_size=56).to_dict()
    spec = CheckpointMeta.from_dict(meta).preprocess()
    assert spec.crop_pct == crop_pct and spec.resize == int(56 / crop_pct)
    manifest = Manifest("classification", ("a", "b"), {}, spec, [], {}).to_dict()
    rebuilt = _meta_from_manifest(json.loads(json.dumps(manifest)))
    photos = [Image.fromarray(np.uint8(np.random.default_rng(i).integers(0, 255, (61, 83, 3))))
              for i in range(3)]  # fmt: skip
    np.testing.assert_array_equal(preprocess(photos, meta), preprocess(photos, rebuilt))


def _v1_manifest() -> dict:
    """A manifest exactly as format_version 1 exports wrote it."""
    return {
        "format_version": 1, "task": "classification", "model_name": "vit_nano_patch8_32",
        "class_names": ["a", "b"],
        "input": {"name": "images", "shape": ["batch", 3, 32, 32], "dtype": "float32",
                  "layout": "NCHW", "channel_order": "RGB"},
        "preprocess": {"mode": "resize_center_crop", "resize": 36, "crop": 32,
                       "interpolation": "bicubic", "scale": 1 / 255,
                       "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "outputs": [{"name": "logits", "shape": ["batch", 2], "dtype": "float32"}],
        "artefacts": {"fp32": {"file": "model.onnx", "precision": "fp32", "verified": True}},
        "engines": [], "batch": {"min": 1, "opt": 8, "max": 32},
        "source_checkpoint": {"path": "/x/best.pt", "sha256": "0"}, "versions": {},
        "created": "2026-01-01T00:00:00Z",
    }  # fmt: skip


def test_format_1_bundles_load_and_unknown_versions_say_how_to_re_export(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(_v1_manifest()))
    manifest = load_manifest(tmp_path)
    assert manifest.preprocess.crop_pct == pytest.approx(32 / 36)
    assert manifest.data_split is None and manifest.extra["source_checkpoint"]["path"]
    as_dict = read_manifest(tmp_path)
    assert as_dict["format_version"] == FORMAT_VERSION and as_dict["created"]
    assert Manifest.from_dict(as_dict) == manifest  # the current format round-trips
    newer = {**_v1_manifest(), "format_version": FORMAT_VERSION + 1}
    (tmp_path / "manifest.json").write_text(json.dumps(newer))
    with pytest.raises(UserError, match="re-export with simmim-deploy export"):
        read_manifest(tmp_path)


def test_preprocess_spec_writes_only_its_modes_keys() -> None:
    box = PreprocessSpec("letterbox", "bilinear", size=64, pad_value=0.0)
    assert set(box.to_dict()) == {"mode", "size", "pad_value", "interpolation", "scale", "mean",
                                  "std"}  # fmt: skip
    assert PreprocessSpec.from_dict(box.to_dict()) == box
    with pytest.raises(UserError, match="crop_pct"):
        PreprocessSpec("resize_center_crop", resize=36, crop=32, crop_pct=1.5)
