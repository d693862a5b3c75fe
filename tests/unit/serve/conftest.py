"""Real bundles and real images for the serving tests.

Until every test can use ``simmim-deploy export``, the bundles are built here the same way: a
tiny timm classifier exported with ``torch.onnx.export`` (TorchScript exporter, opset 17, batch
the only dynamic axis) plus a manifest per ``simmim_deploy/core/manifest.py``; and a tiny
detector whose graph emits the documented (boxes, scores, labels, num_detections) outputs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simmim_deploy.core.manifest import sha256_file, write_manifest

CLASSES = ["cat", "dog", "bird"]
# Detector outputs, in 32 px letterboxed-input pixels; the last two rows are padding.
DET_BOXES = [[0, 0, 16, 16], [8, 4, 32, 20], [2, 2, 6, 6], [0, 0, 0, 0], [0, 0, 0, 0]]
DET_SCORES = [0.9, 0.6, 0.2, 0.0, 0.0]
DET_LABELS = [1, 0, 2, 0, 0]
DET_NUM = 3


def _manifest(task: str, preprocess: dict, outputs: list[dict], onnx: Path) -> dict:
    return {
        "format_version": 1,
        "task": task,
        "model_name": "vit_nano_patch8_32",
        "class_names": CLASSES,
        "input": {"name": "images", "shape": ["batch", 3, 32, 32], "dtype": "float32",
                  "layout": "NCHW", "channel_order": "RGB"},
        "preprocess": {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406],
                       "std": [0.229, 0.224, 0.225], **preprocess},
        "outputs": outputs,
        "artefacts": {"fp32": {"file": onnx.name, "sha256": sha256_file(onnx),
                               "bytes": onnx.stat().st_size, "precision": "fp32",
                               "float_ops": [], "verified": True}},
        "engines": [],
        "batch": {"min": 1, "opt": 8, "max": 32},
        "versions": {},
        "created": "2026-01-01T00:00:00Z",
    }  # fmt: skip


def _outputs(onnx: Path) -> list[dict]:
    """Manifest ``outputs`` as export writes them (names, dtypes, fixed dims from a real run)."""
    import onnxruntime as ort

    from simmim_deploy.export.facts import output_specs

    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"images": np.zeros((2, 3, 32, 32), np.float32)})
    return output_specs(session, reference)


def _export(model, path: Path, output_names: list[str]) -> None:
    import torch

    model.eval()
    dynamic = {"images": {0: "batch"}, **{n: {0: "batch"} for n in output_names}}
    with warnings.catch_warnings():  # TracerWarnings about constants are expected here
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(2, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
            input_names=["images"], output_names=output_names, dynamic_axes=dynamic,
        )  # fmt: skip


def build_cls_bundle(bundle: Path) -> Path:
    """Write a classification bundle: vit_nano_patch8_32, 3 classes, 36 -> 32 bicubic crop."""
    import timm
    import torch

    import simmim_deploy.models  # noqa: F401  (registers the tiny timm models)

    torch.manual_seed(0)
    model = timm.create_model("vit_nano_patch8_32", num_classes=3, pretrained=False)
    _export(model, bundle / "model.onnx", ["logits"])
    pre = {"mode": "resize_center_crop", "resize": int(32 / 0.875), "crop": 32,
           "interpolation": "bicubic"}  # fmt: skip
    outputs = [{"name": "logits", "shape": ["batch", 3], "dtype": "float32", "meaning": "logits"}]
    write_manifest(bundle, _manifest("classification", pre, outputs, bundle / "model.onnx"))
    return bundle


@pytest.fixture(scope="session")
def cls_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classification bundle (see :func:`build_cls_bundle`)."""
    return build_cls_bundle(tmp_path_factory.mktemp("cls bundle"))


class _TinyDetector:
    """Builds a torch module with fixed, documented detection outputs (input still used)."""

    @staticmethod
    def build():
        import torch

        class Det(torch.nn.Module):
            def forward(self, x):
                b = x.shape[0]
                tie = (x.mean(dim=(1, 2, 3)) * 0.0)[:, None]  # keeps the batch axis symbolic
                boxes = torch.tensor(DET_BOXES, dtype=torch.float32)[None] + tie[:, :, None]
                scores = torch.tensor(DET_SCORES)[None] + tie
                labels = torch.tensor(DET_LABELS)[None].expand(b, -1)
                num = torch.full_like(tie[:, 0], DET_NUM).to(torch.int64)
                return boxes, scores, labels, num

        return Det()


def build_det_bundle(bundle: Path) -> Path:
    """Write a detection bundle (letterbox 32) whose graph emits fixed boxes for any image."""
    names = ["boxes", "scores", "labels", "num_detections"]
    _export(_TinyDetector.build(), bundle / "model.onnx", names)
    pre = {"mode": "letterbox", "size": 32, "interpolation": "bilinear", "pad_value": 0.0}
    write_manifest(
        bundle, _manifest("detection", pre, _outputs(bundle / "model.onnx"), bundle / "model.onnx")
    )
    return bundle


@pytest.fixture(scope="session")
def det_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detection bundle (see :func:`build_det_bundle`)."""
    return build_det_bundle(tmp_path_factory.mktemp("det bundle"))


def real_photos() -> list[np.ndarray]:
    """Real photographs shipped inside scikit-image (no download), HWC uint8 RGB."""
    from skimage import data

    return [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos at odd sizes as JPEG/PNG in nested folders (a path with spaces)."""
    root = tmp_path_factory.mktemp("photos with space")
    sizes = [(37, 53), (101, 67), (64, 64), (45, 90), (33, 31)]
    for i, (w, h) in enumerate(sizes):
        photo = Image.fromarray(real_photos()[i % 4]).resize((w, h), Image.Resampling.LANCZOS)
        sub = root / ("nested" if i % 2 else "")
        sub.mkdir(exist_ok=True)
        photo.save(sub / f"img_{i}.{'png' if i == 3 else 'jpg'}", quality=90)
    return root
