"""Head and strides chosen from the training boxes (sizes measured after letterboxing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simmim_deploy.core.errors import UserError
from simmim_deploy.data.aug_presets import resolve_aug
from simmim_deploy.data.coco import CocoImage
from simmim_deploy.models.det_plan import (
    allowed_strides,
    box_statistics,
    choose_jitter,
    encoder_strides,
    is_small_dense,
    plan_head,
)
from simmim_deploy.train.detect import plan_run_detector
from simmim_deploy.train.detect_config import DetectConfig


def _records(sides: list[list[float]], width: int = 256, height: int = 128) -> list[CocoImage]:
    """One image per list: square boxes of these sides, on a ``width x height`` image."""
    out = []
    for i, image_sides in enumerate(sides):
        boxes = np.array([[2 * k, 0, 2 * k + s, s] for k, s in enumerate(image_sides)], np.float32)
        out.append(
            CocoImage(i, Path(f"{i}.png"), width, height, boxes.reshape(-1, 4),
                      np.zeros(len(image_sides), np.int64), np.zeros(len(image_sides), bool))
        )  # fmt: skip
    return out


def test_sizes_are_measured_in_network_input_pixels():
    # 256 px wide images letterboxed to 128: every box shrinks by half
    stats = box_statistics(_records([[40, 40, 40], [80]]), img_size=128)
    assert stats.num_boxes == 4 and stats.num_images == 2 and stats.per_image == 2
    assert stats.median == pytest.approx(20) and stats.largest == pytest.approx(40)


def test_small_dense_objects_get_a_stride_4_centernet():
    # 15-36 px objects, 8 an image, at a 128 px input (the microscopy set)
    sides = [list(np.linspace(15, 36, 8)) for _ in range(21)]
    stats = box_statistics(_records(sides, 128, 128), img_size=128)
    allowed = allowed_strides(16, None, 128)
    plan = plan_head(stats, allowed)
    assert (plan.type, plan.strides) == ("centernet", (4,))
    assert "centernet" in plan.reason and "median" in plan.reason
    fcos = plan_head(stats, allowed, head="fcos")
    assert fcos.strides == (4, 8, 16)  # a stride-4 level for the small ones
    assert choose_jitter(stats)[0] == 1.0  # small objects are not shrunk further


def test_large_sparse_objects_keep_fcos_on_coarser_levels_that_divide_the_input():
    sides = [[120.0], [160.0], [200.0], [90.0]]
    stats = box_statistics(_records(sides, 224, 224), img_size=224)
    plan = plan_head(stats, allowed_strides(16, None, 224))
    assert plan.type == "fcos"
    assert plan.strides == (8, 16, 32)  # 64 does not divide 224: a finer third level
    assert all(224 % s == 0 for s in plan.strides)
    assert choose_jitter(stats)[0] == 0.75


def test_explicit_choices_are_kept_and_bad_ones_refused():
    stats = box_statistics(_records([[20, 20, 20]], 128, 128), img_size=128)
    plan = plan_head(stats, allowed_strides(16, None, 128), head="fcos", strides=(8, 16, 32))
    assert plan.strides == (8, 16, 32) and "as given" in plan.reason
    with pytest.raises(UserError, match="auto, fcos, centernet"):
        plan_head(stats, (4, 8), head="yolo")


def test_encoders_limit_the_strides():
    vit, vit_stages = encoder_strides("vit_nano_patch8_32", 32)
    assert not vit_stages and {4, 8, 16} <= set(vit) and 3 not in vit
    swin, swin_stages = encoder_strides("swin_nano_patch4_window4_64", 64)
    assert swin_stages and set(swin) <= {4, 8, 16, 32}
    stats = box_statistics(_records([[8, 8, 8, 8]], 64, 64), img_size=64)
    plan = plan_head(stats, swin, hierarchical=True)
    assert plan.type == "centernet" and plan.strides[0] == 4 and len(plan.strides) > 1


@pytest.mark.parametrize(
    ("sides", "want"),
    [
        ([[15, 20, 25, 36]] * 6, "orientation-free"),  # small (<= 32 px at 128) and dense
        ([[15], [20], [25], [36]], "natural"),  # small but one an image: sparse
        ([[60, 70], [80, 90]], "natural"),  # dense but large
    ],
)
def test_aug_auto_follows_the_small_dense_rule_of_the_head(sides, want):
    stats = box_statistics(_records(sides, 128, 128), img_size=128)
    head = plan_head(stats, allowed_strides(16, None, 128)).type
    assert (head == "centernet") == (want == "orientation-free") == is_small_dense(stats)
    assert resolve_aug("auto", is_small_dense(stats))[0] == want
    assert resolve_aug("none", is_small_dense(stats)) == ("none", "as given")
    # --hflip 0 (mirrored digits are not digits): auto turns nothing, small and dense or not.
    assert resolve_aug("auto", is_small_dense(stats), hflip=0.0)[0] == "none"
    assert resolve_aug("auto", is_small_dense(stats), hflip=0.5)[0] == want
    assert (
        resolve_aug("orientation-free", is_small_dense(stats), hflip=0.0)[0] == "orientation-free"
    )


def test_aug_auto_without_boxes_is_natural_and_bad_names_are_refused():
    assert resolve_aug("auto") == ("natural", "auto: no boxes to judge by")  # classify, pretrain
    assert resolve_aug("orientation-free")[0] == "orientation-free"
    with pytest.raises(ValueError, match="natural, orientation-free, none"):
        resolve_aug("upright")


def test_train_detect_records_the_resolved_aug_and_says_why():
    train = type("Split", (), {"images": _records([[15, 20, 25, 36]] * 6, 128, 128)})()
    cfg = DetectConfig(data="d", out="o", model="vit_tiny_patch16_224", img_size=128)
    assert cfg.aug == "auto"  # the default
    planned, note = plan_run_detector(cfg, train)
    assert planned.aug == "orientation-free" and planned.head == "centernet"
    assert "aug orientation-free (auto: small dense objects" in note
    kept, note = plan_run_detector(
        DetectConfig(data="d", out="o", aug="natural", model="vit_tiny_patch16_224", img_size=128),
        train,
    )
    assert kept.aug == "natural" and "aug natural (as given)" in note
