"""ONNX export: parity at two batch sizes per encoder family, symbolic batch, metadata."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import timm
import torch

import simmim_deploy.models  # noqa: F401
from simmim_deploy.export.onnx_export import export_onnx, ort_session, read_metadata

FAMILIES = {
    # name: (timm kwargs, img size, exporter). BEiT makes torch's dynamo exporter fail: it must
    # fall back to TorchScript under "auto". Swin uses TorchScript directly to keep tests fast.
    "vit": ("vit_nano_patch8_32", {}, 32, "auto"),
    "beit": (
        "beit_base_patch16_224",
        dict(depth=1, embed_dim=64, num_heads=2, img_size=32, patch_size=8),
        32,
        "auto",
    ),
    "swin": ("swin_nano_patch4_window4_64", {}, 64, "torchscript"),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_classifier_parity_two_batches(family: str, tmp_path) -> None:
    name, kwargs, size, exporter = FAMILIES[family]
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, **kwargs).eval()
    result = export_onnx(
        model, size, ["logits"], tmp_path / "m.onnx", exporter=exporter, metadata={"task": "c"}
    )
    if family == "beit":
        assert result.exporter == "torchscript" and result.notes  # dynamo was tried first
    proto = onnx.load(str(result.path))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, size, size]
    assert "LayerNormalization" in {n.op_type for n in proto.graph.node}
    sess = ort_session(result.path)
    for batch in (1, 5):
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"images": x.numpy()})[0]
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


def test_metadata_props_mirror(tmp_path) -> None:
    model = timm.create_model("vit_nano_patch8_32", num_classes=3).eval()
    facts = {"task": "classification", "class_names": ["a", "b", "c"], "batch": {"max": 8}}
    out = export_onnx(
        model, 32, ["logits"], tmp_path / "m.onnx", exporter="torchscript", metadata=facts
    )
    meta = read_metadata(out.path)
    assert meta["class_names"] == ["a", "b", "c"] and meta["exporter"] == "torchscript"
    props = {p.key: p.value for p in onnx.load(str(out.path)).metadata_props}
    assert props["task"] == "classification"


def test_detector_parity(tmp_path) -> None:
    from simmim_deploy.models.detector import build_detector

    torch.manual_seed(0)
    det = build_detector("vit_nano_patch8_32", num_classes=3, img_size=32).eval()
    names = ["boxes", "scores", "labels", "num_detections"]
    result = export_onnx(det, 32, names, tmp_path / "det.onnx", exporter="torchscript")
    sess = ort_session(result.path)
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = [t.numpy() for t in det(x)]
        got = sess.run(None, {"images": x.numpy()})
        assert [g.shape for g in got] == [r.shape for r in ref]
        np.testing.assert_array_equal(got[3], ref[3])
        np.testing.assert_allclose(got[1], ref[1], atol=1e-4)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_detector_nms_gets_the_score_threshold_and_outputs_stay(exporter: str, tmp_path) -> None:
    """The exported NonMaxSuppression carries the model's score_thresh (so ONNX Runtime skips the
    zeroed candidates instead of comparing each with every kept box); outputs equal PyTorch."""
    from simmim_deploy.models.detector import build_detector

    torch.manual_seed(0)
    det = build_detector(
        "vit_nano_patch8_32", num_classes=3, img_size=32, post={"score_thresh": 0.3}
    ).eval()
    with torch.no_grad():  # a spread of scores: some candidates above 0.3, most below
        det.head.cls_logits.bias.normal_(-1.0, 1.0)
    names = ["boxes", "scores", "labels", "num_detections"]
    result = export_onnx(det, 32, names, tmp_path / "det.onnx", exporter=exporter)
    proto = onnx.load(str(result.path))
    nms = [n for n in proto.graph.node if n.op_type == "NonMaxSuppression"]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert len(nms) == 1 and len(nms[0].input) == 5
    assert inits[nms[0].input[4]] == np.float32(0.3)
    sess = ort_session(result.path)
    for batch in (1, 8):
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = [t.numpy() for t in det(x)]
        got = sess.run(None, {"images": x.numpy()})
        assert ref[3].min() > 0 and ref[3].max() < ref[1].shape[1], "needs some and not all"
        np.testing.assert_array_equal(got[3], ref[3])
        np.testing.assert_array_equal(got[2], ref[2])
        np.testing.assert_allclose(got[1], ref[1], atol=1e-5)
        np.testing.assert_allclose(got[0], ref[0], atol=1e-4)
