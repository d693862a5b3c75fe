"""CenterNet head: targets against a hand computation, exact decode of ideal maps, a loss that
trains, and an ONNX graph (peaks + NMS inside) that matches PyTorch at two batch sizes."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import torch

from simmim_deploy.models.centernet_head import decode_centernet
from simmim_deploy.models.centernet_loss import centernet_loss, heatmap_targets
from simmim_deploy.models.detector import build_detector, build_detector_from_meta, detector_meta
from simmim_deploy.models.postprocess import PostprocessConfig, postprocess

OUTPUTS = ["boxes", "scores", "labels", "num_detections"]
BOXES = torch.tensor([[[10.0, 6.0, 50.0, 18.0], [40.0, 40.0, 52.0, 60.0], [0, 0, 0, 0]]])
LABELS = torch.tensor([[0, 1, -1]])


def test_heatmap_peaks_at_centre_cells_with_box_shaped_spread():
    heat = heatmap_targets(BOXES, LABELS, num_classes=2, stride=4, h=16, w=16)
    assert heat.shape == (1, 2, 16, 16)
    # box 0: centre (30, 12) px -> cell (7, 3); 40 x 12 px = 10 x 3 cells -> sigma_x = 0.54*10/6,
    # sigma_y = 0.54*3/6 = 0.27, raised to the 0.5-cell floor
    assert heat[0, 0, 3, 7] == 1.0 and heat[0, 1, 3, 7] < 1e-6
    sx, sy = 0.54 * 10 / 6, 0.5
    want = math.exp(-((2 / sx) ** 2) / 2) * math.exp(-((1 / sy) ** 2) / 2)  # 2 cells right, 1 down
    assert abs(float(heat[0, 0, 4, 9]) - want) < 1e-6
    assert heat[0, 1, 12, 11] == 1.0  # box 1: centre (46, 50) -> cell (11, 12), class 1
    assert int((heat == 1).sum()) == 2  # the empty slot adds nothing


def _ideal_maps(boxes: torch.Tensor, labels: torch.Tensor, stride: int, side: int):
    """Logit maps a perfect head would output for these boxes."""
    heat = torch.full((1, 2, side, side), -20.0)
    size, offset = torch.zeros(1, 2, side, side), torch.zeros(1, 2, side, side)
    for (x1, y1, x2, y2), c in zip(boxes[0].tolist(), labels[0].tolist(), strict=True):
        if c < 0:
            continue
        cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
        ix, iy = int(cx), int(cy)
        heat[0, c, iy, ix] = 5.0
        size[0, :, iy, ix] = torch.tensor([(x2 - x1) / stride, (y2 - y1) / stride])
        offset[0, :, iy, ix] = torch.tensor([cx - ix, cy - iy])
    return heat, size, offset


def test_decode_recovers_boxes_from_ideal_maps():
    heat, size, offset = _ideal_maps(BOXES, LABELS, 4, 16)
    boxes, scores = decode_centernet(heat, size, offset, stride=4, img_size=64)
    out = postprocess(boxes, scores, PostprocessConfig(max_dets=5), 64)
    assert int(out[3][0]) == 2
    np.testing.assert_allclose(out[0][0, :2].numpy(), BOXES[0, :2].numpy(), atol=1e-4)
    assert out[2][0, :2].tolist() == [0, 1]
    # an ideal map scores a near-zero loss; a blank one does not
    losses = centernet_loss(heat, size, offset, BOXES, LABELS, stride=4)
    blank = centernet_loss(torch.zeros_like(heat), size * 0, offset * 0, BOXES, LABELS, 4)
    assert losses["loss"] < 0.05 < blank["loss"]


def test_a_few_steps_fit_one_image():
    torch.manual_seed(0)
    model = build_detector(
        "vit_nano_patch8_32", 2, 32, head={"type": "centernet", "strides": (4,), "channels": 32}
    )
    x = torch.randn(1, 3, 32, 32)
    boxes, labels = BOXES / 2, LABELS
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        raw = model(x, raw=True)
        loss = centernet_loss(raw["heat"], raw["size"], raw["offset"], boxes, labels, 4)["loss"]
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.3 * first


def test_onnx_graph_matches_pytorch_and_meta_rebuilds(tmp_path):
    torch.manual_seed(0)
    model = build_detector(
        "vit_nano_patch8_32", 3, 32, head={"type": "centernet", "strides": (4,), "channels": 32},
        post={"max_dets": 20},
    ).eval()  # fmt: skip
    meta = detector_meta(model, ["a", "b", "c"], "vit_nano_patch8_32")
    assert meta["head"]["type"] == "centernet"
    rebuilt = build_detector_from_meta(meta)
    assert rebuilt.centernet
    rebuilt.load_state_dict(model.state_dict())  # strict: same names and shapes
    path = tmp_path / "det.onnx"
    torch.onnx.export(
        model, (torch.randn(2, 3, 32, 32),), str(path), opset_version=18, dynamo=False,
        input_names=["images"], output_names=OUTPUTS,
        dynamic_axes={n: {0: "batch"} for n in ["images", *OUTPUTS]},
    )  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str), "batch axis must stay symbolic"
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = [t.numpy() for t in model(x)]
        got = session.run(None, {"images": x.numpy()})
        assert ref[3].min() > 0, "the check needs real detections"
        np.testing.assert_array_equal(got[3], ref[3])
        np.testing.assert_array_equal(got[2], ref[2])
        np.testing.assert_allclose(got[1], ref[1], atol=1e-5)
        np.testing.assert_allclose(got[0], ref[0], atol=1e-3)
