"""`predict` on real ONNX bundles: JSON line shapes, errors, sources, partial batches, vis."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from simmim_deploy.core.errors import UserError
from simmim_deploy.serve.predict import expand_sources, predict
from simmim_deploy.serve.runtime import Runtime
from tests.unit.serve.conftest import CLASSES, DET_BOXES, DET_NUM, DET_SCORES


@pytest.fixture
def mixed_dir(image_dir: Path, spaced_tmp: Path) -> Path:
    root = spaced_tmp / "mixed"
    shutil.copytree(image_dir, root)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "notes.md").write_text("ignored: not an image suffix")
    return root


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_classification_lines_errors_and_partial_batch(cls_bundle: Path, mixed_dir: Path) -> None:
    out = mixed_dir.parent / "out dir" / "results.jsonl"
    # 6 image files (one broken) at batch 4: one full batch and a partial one of 1.
    summary = predict(cls_bundle, [str(mixed_dir)], batch_size=4, top_k=2, out=out)
    lines = _lines(out)
    assert summary["images"] == len(lines) == 6
    assert summary["errors"] == 1 and summary["ok"] == 5
    assert summary["runtime"]["backend"]["providers_used"] == ["CPUExecutionProvider"]
    assert [r["path"] for r in lines] == expand_sources([str(mixed_dir)])  # input order kept
    broken = [r for r in lines if "error" in r]
    assert len(broken) == 1 and set(broken[0]) == {"path", "error"}
    assert broken[0]["path"].endswith("broken.jpg")
    good = [r for r in lines if "error" not in r]
    for r in good:
        assert set(r) == {"path", "width", "height", "topk"}
        assert len(r["topk"]) == 2 and r["topk"][0]["score"] >= r["topk"][1]["score"]
        assert set(r["topk"][0]) == {"label", "index", "score"}
        assert r["topk"][0]["label"] == CLASSES[r["topk"][0]["index"]]
    # The batched results equal a direct ONNX Runtime run of each image alone.
    rt = Runtime(cls_bundle)
    sess = ort.InferenceSession(str(cls_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    for r in good:
        prep = rt.prepare(r["path"])
        assert (r["width"], r["height"]) == (prep.width, prep.height)
        logits = sess.run(None, {"images": prep.array[None]})[0][0]
        assert r["topk"][0]["index"] == int(np.argmax(logits))


def test_explicit_provider_without_it_is_a_user_error(cls_bundle: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    with pytest.raises(UserError, match="needs CUDAExecutionProvider"):
        Runtime(cls_bundle, "ort-cuda")
    with pytest.raises(UserError, match="no TensorRT engine"):
        Runtime(cls_bundle, "trt")
    assert Runtime(cls_bundle, "auto").describe()["backend"]["providers_used"][-1] == (
        "CPUExecutionProvider"
    )


def test_engine_without_tensorrt_falls_back_with_a_note(cls_bundle: Path, tmp_path: Path) -> None:
    from simmim_deploy.core.environment import real_tensorrt
    from simmim_deploy.core.errors import MissingExtraError

    if real_tensorrt() is not None:
        pytest.skip("TensorRT is installed here")
    bundle = tmp_path / "with engine"
    shutil.copytree(cls_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["engines"] = [{"file": "model.sm89.trt10.13.fp16.engine", "precision": "fp16",
                            "compute_capability": "8.9", "tensorrt_version": "10.13"}]  # fmt: skip
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MissingExtraError, match="simmim-deploy\\[tensorrt\\]"):
        Runtime(bundle, "trt")
    described = Runtime(bundle, "auto").describe()["backend"]
    assert described["backend"] == "onnxruntime"
    assert "TensorRT engine not used" in described["notes"][0]


def test_sources_files_globs_lists(image_dir: Path, tmp_path: Path) -> None:
    every = expand_sources([str(image_dir)])
    assert len(every) == 5
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my images\n{every[0]}\n\n{every[1]}\nmissing.jpg\n")
    assert expand_sources([str(listing)]) == [every[0], every[1], str(tmp_path / "missing.jpg")]
    assert expand_sources([str(image_dir / "**" / "*.png")]) == [
        p for p in every if p.endswith(".png")
    ]
    assert expand_sources([every[2], every[2]]) == [every[2], every[2]]
    with pytest.raises(UserError, match="no such file"):
        expand_sources([str(image_dir / "nope")])
    with pytest.raises(UserError, match="matches no file"):
        expand_sources([str(image_dir / "*.gif")])


def test_missing_listed_file_is_an_error_line(
    cls_bundle: Path, image_dir: Path, tmp_path: Path
) -> None:
    listing = tmp_path / "list.txt"
    first = expand_sources([str(image_dir)])[0]
    listing.write_text(f"{first}\ngone.jpg\n{first}\n")
    summary = predict(cls_bundle, [str(listing)], batch_size=8)
    records = summary["results"]
    assert [("error" in r) for r in records] == [False, True, False]
    assert records[0]["topk"] == records[2]["topk"]


def test_detection_boxes_in_original_pixels_and_vis(
    det_bundle: Path, image_dir: Path, tmp_path: Path
) -> None:
    vis = tmp_path / "vis"
    summary = predict(det_bundle, [str(image_dir)], batch_size=3, score_thresh=0.5, save_vis=vis)
    records = summary["results"]
    assert summary["errors"] == 0 and len(records) == 5
    for r in records:
        assert set(r) == {"path", "width", "height", "boxes"}
        kept = [i for i in range(DET_NUM) if DET_SCORES[i] >= 0.5]
        assert [b["score"] for b in r["boxes"]] == pytest.approx([DET_SCORES[i] for i in kept])
        w, h = r["width"], r["height"]
        scale = 32 / max(w, h)  # letterbox: longer side -> 32, padding bottom/right
        for b, i in zip(r["boxes"], kept, strict=True):
            assert set(b) >= {"xyxy", "score", "label"}
            expect = np.array(DET_BOXES[i]) / scale
            np.testing.assert_allclose(b["xyxy"], np.clip(expect, 0, [w, h, w, h]), atol=0.006)
    drawn = sorted(vis.glob("*.jpg"))
    assert len(drawn) == 5


def test_summary_says_where_the_time_went(cls_bundle: Path, image_dir: Path) -> None:
    """model_busy, the model's own speed during the run and the decode time per image: the
    model cannot have run longer than the run, nor slower than the run as a whole."""
    from simmim_deploy.cli.predict_cmd import input_bound_note

    summary = predict(cls_bundle, [str(image_dir)], backend="ort-cpu", batch_size=2)
    assert 0 < summary["model_busy"] <= 1
    assert summary["inference_images_per_s"] >= summary["images_per_s"]
    assert summary["prepare_ms_per_image"] > 0 and summary["decode_workers"] >= 1
    base = {**summary, "ok": 256, "seconds": 1.0, "prepare_ms_per_image": 2.27}
    base |= {"inference_images_per_s": 278.2, "model_busy": 0.91, "decode_workers": 1}
    note = input_bound_note(base, cores=2)  # 2.27 ms x 256 images on 2 cores in 1 s: 29 %
    assert note and "29% of the 2 cores" in note and "2.27 ms an image" in note
    assert "278.2 images/s" in note
    assert input_bound_note({**base, "prepare_ms_per_image": 0.3}, cores=2) is None  # 4 %
    assert input_bound_note({**base, "seconds": 0.5}, cores=2) is None  # too short to judge
