"""Bundle: manifest round-trip, verification gate, atomic export, config validation."""

from __future__ import annotations

import json

import onnx
import pytest

from simmim_deploy.core.errors import UserError
from simmim_deploy.core.manifest import read_manifest, sha256_file
from simmim_deploy.export.bundle import export_bundle
from simmim_deploy.export.config import ExportConfig
from simmim_deploy.export.verify import VerificationError, verify_bundle


def _config(ckpt, out, **kw) -> ExportConfig:
    base = dict(
        checkpoint=str(ckpt),
        out=str(out),
        eval_data="builtin:digits",
        verify_images=48,
        exporter="torchscript",
    )
    return ExportConfig(**{**base, **kw})


def test_bundle_manifest_round_trip(vit_digits_ckpt, spaced_tmp) -> None:
    out = spaced_tmp / "bundle"
    # 48 images of a toy model with near-tied logits: one flip is 2 points; widen the budgets.
    wide = {"max_metric_drop": 10.0, "min_top1_agreement": 0.8}
    loose = {"fp16": wide, "int8-dynamic": wide}
    cfg = _config(
        vit_digits_ckpt, out, precision=("fp16", "int8-dynamic"), triton=True, thresholds=loose
    )
    export_bundle(cfg)
    manifest = read_manifest(out)
    assert list(manifest["artefacts"]) == ["fp32", "fp16", "int8-dynamic"]
    for art in manifest["artefacts"].values():
        assert art["verified"] and art["sha256"] == sha256_file(out / art["file"])
    assert manifest["preprocess"]["mode"] == "resize_center_crop"
    assert manifest["outputs"][0]["shape"] == ["batch", 10]
    assert manifest["source_checkpoint"]["sha256"] == sha256_file(vit_digits_ckpt)
    props = {p.key: p.value for p in onnx.load(str(out / "model.fp16.onnx")).metadata_props}
    assert json.loads(props["preprocess"]) == manifest["preprocess"]
    assert json.loads(props["float_ops"]) == manifest["artefacts"]["fp16"]["float_ops"]
    parity = json.loads((out / "report" / "parity.json").read_text())
    assert parity["artefacts"]["fp32"]["metrics"]["cosine_mean"] > 0.99999
    assert "top1_drop" in parity["artefacts"]["fp16"]["metrics"]
    assert (out / "triton" / "simmim" / "config.pbtxt").is_file()
    # On-demand verification reproduces the gate against the source checkpoint.
    report = verify_bundle(out, "builtin:digits", limit=16)
    assert report["reference"].startswith("pytorch")


def test_verification_failure_ships_nothing(vit_digits_ckpt, tmp_path) -> None:
    out = tmp_path / "bundle"
    impossible = {"fp32": {"min_cosine": 1.5}}  # no artefact can pass: the gate must fail
    with pytest.raises(VerificationError, match=r"fp32 artefact model\.onnx .*logits cosine"):
        export_bundle(_config(vit_digits_ckpt, out, thresholds=impossible))
    assert not out.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert leftovers == []  # an interrupted/failed export leaves nothing that looks complete


def test_config_refuses_conflicts(vit_digits_ckpt, tmp_path) -> None:
    with pytest.raises(UserError, match="--calib-data"):
        _config(vit_digits_ckpt, tmp_path / "b", precision=("int8",))
    with pytest.raises(UserError, match="--prune"):
        _config(vit_digits_ckpt, tmp_path / "b", recover_epochs=2, calib_data="builtin:digits")
    with pytest.raises(UserError, match="MIN <= OPT <= MAX"):
        _config(vit_digits_ckpt, tmp_path / "b", batch="8:4:32")
    assert _config(vit_digits_ckpt, tmp_path / "b", batch="1:4:16").batch == (1, 4, 16)
