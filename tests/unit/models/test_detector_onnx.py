"""The detector's inference graph (post-processing included) exports to ONNX with a dynamic
batch and matches PyTorch in ONNX Runtime at batch 1 and 3."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from simmim_deploy.core.checkpoint_meta import CheckpointMeta
from simmim_deploy.models.detector import build_detector, build_detector_from_meta, detector_meta

OUTPUTS = ["boxes", "scores", "labels", "num_detections"]


TINY_BEIT = dict(depth=1, embed_dim=64, num_heads=2, patch_size=8)


def _detector(name: str, size: int, model_kwargs: dict | None = None):
    torch.manual_seed(0)
    model = build_detector(
        name,
        3,
        size,
        head={"channels": 32, "num_convs": 1},
        post={"max_dets": 20},
        model_kwargs=model_kwargs,
    )
    # Give the head a spread of scores so NMS and the threshold have real work to do.
    with torch.no_grad():
        model.head.cls_logits.bias.normal_(0.0, 1.0)
    return model.eval()


def _export(model, size: int, path, dynamo: bool) -> None:
    x = torch.randn(2, 3, size, size)
    if dynamo:
        shapes = ({0: torch.export.Dim("batch", min=1, max=256)},)
        kwargs = {"dynamic_shapes": shapes}
    else:
        axes = {n: {0: "batch"} for n in ["images", *OUTPUTS]}
        kwargs = {"dynamic_axes": axes}
    torch.onnx.export(
        model, (x,), str(path), opset_version=18, dynamo=dynamo,
        input_names=["images"], output_names=OUTPUTS, **kwargs,
    )  # fmt: skip


def _check_parity(model, size: int, path) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch_dim = session.get_inputs()[0].shape[0]
    assert isinstance(batch_dim, str), "batch axis must stay symbolic"
    for batch in (1, 3):
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = [t.numpy() for t in model(x)]
        got = session.run(None, {"images": x.numpy()})
        assert ref[3].min() > 0, "the check needs real detections"
        np.testing.assert_array_equal(got[3], ref[3])  # num_detections
        np.testing.assert_array_equal(got[2], ref[2])  # labels
        np.testing.assert_allclose(got[1], ref[1], atol=1e-5)  # scores
        np.testing.assert_allclose(got[0], ref[0], atol=1e-3)  # boxes, pixels


@pytest.mark.parametrize(
    ("name", "size", "kwargs"),
    [
        ("vit_nano_patch8_32", 32, None),
        ("beit_base_patch16_224", 32, TINY_BEIT),
        ("swin_nano_patch4_window4_64", 64, None),
    ],
    ids=["vit", "beit", "swin"],
)
def test_torchscript_export_matches_pytorch(name, size, kwargs, tmp_path):
    model = _detector(name, size, kwargs)
    _export(model, size, tmp_path / "det.onnx", dynamo=False)
    _check_parity(model, size, tmp_path / "det.onnx")


@pytest.mark.slow  # ~20-40 s on 2 cores: torch.export tracing dominates
def test_dynamo_export_matches_pytorch(tmp_path):
    model = _detector("vit_nano_patch8_32", 32)
    _export(model, 32, tmp_path / "det.onnx", dynamo=True)
    _check_parity(model, 32, tmp_path / "det.onnx")


def test_meta_rebuilds_the_same_architecture():
    model = _detector("vit_nano_patch8_32", 32)
    meta = detector_meta(model, ["a", "b", "c"], "vit_nano_patch8_32")
    assert meta["task"] == "detection"
    assert CheckpointMeta.from_dict(meta).preprocess().mode == "letterbox"
    rebuilt = build_detector_from_meta(meta)
    rebuilt.load_state_dict(model.state_dict())  # strict: same names and shapes
    assert all(k.startswith(("backbone.", "neck.", "head.")) for k in model.state_dict())
    assert "backbone.patch_embed.proj.weight" in model.state_dict()
