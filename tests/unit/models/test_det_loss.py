"""FCOS target assignment and loss on hand-made boxes."""

from __future__ import annotations

import math

import torch

from simmim_deploy.models.det_loss import (
    FORCED_CENTERNESS,
    assign_targets,
    centerness_target,
    fcos_loss,
    scale_ranges,
)


def _grid(size: int = 32, stride: int = 8, hi: float = math.inf):
    c = (torch.arange(size // stride, dtype=torch.float32) + 0.5) * stride
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    points = torch.stack([xx.flatten(), yy.flatten()], 1)
    n = len(points)
    return points, torch.full((n,), float(stride)), torch.tensor([[0.0, hi]]).expand(n, 2)


def test_scale_ranges_follow_fcos_bounds():
    assert scale_ranges([8, 16, 32]) == [(0.0, 64.0), (64.0, 128.0), (128.0, math.inf)]
    assert scale_ranges([8, 16], range_mult=4) == [(0.0, 32.0), (32.0, math.inf)]


def test_points_inside_a_box_get_its_label_and_others_background():
    points, strides, ranges = _grid()  # centres 4, 12, 20, 28
    boxes = torch.tensor([[[0.0, 0.0, 16.0, 16.0], [0, 0, 0, 0]]])
    labels = torch.tensor([[2, -1]])
    t = assign_targets(points, strides, ranges, boxes, labels, num_classes=3, center_radius=None)
    grid = t.labels.reshape(4, 4)
    assert grid[:2, :2].eq(2).all()  # the four points inside
    assert (grid == 3).sum() == 12  # everything else is background
    assert torch.equal(t.boxes[0, 0], boxes[0, 0])
    # each inside point is 4 px from two sides and 12 px from the others: sqrt(4/12 * 4/12)
    ctr = t.centerness.reshape(4, 4)
    assert torch.allclose(ctr[:2, :2], torch.full((2, 2), 1 / 3))
    assert ctr[2:, :].eq(0).all() and ctr[:, 2:].eq(0).all()


def test_smallest_box_wins_and_padding_is_ignored():
    points, strides, ranges = _grid()
    boxes = torch.tensor([[[0.0, 0.0, 32.0, 32.0], [8.0, 8.0, 16.0, 16.0], [0, 0, 1, 1]]])
    labels = torch.tensor([[0, 1, -1]])
    t = assign_targets(points, strides, ranges, boxes, labels, num_classes=2, center_radius=None)
    grid = t.labels.reshape(4, 4)
    assert grid[1, 1] == 1  # (12, 12) is in both: the small box takes it
    assert grid[3, 3] == 0


def test_size_range_and_center_sampling():
    points, strides, _ = _grid()
    ranges = torch.tensor([[0.0, 8.0]]).expand(len(points), 2)
    boxes = torch.tensor([[[0.0, 0.0, 32.0, 32.0]]])
    labels = torch.tensor([[0]])
    t = assign_targets(
        points, strides, ranges, boxes, labels, 1, center_radius=None, force_nearest=False
    )
    assert (t.labels == 0).sum() == 0  # every distance exceeds the level's range
    full = torch.tensor([[0.0, math.inf]]).expand(len(points), 2)
    t = assign_targets(points, strides, full, boxes, labels, num_classes=1, center_radius=0.75)
    # radius 0.75 * 8 = 6 around (16, 16): only the points at 12 and 20 in both axes
    assert (t.labels == 0).sum() == 4


def _two_levels():
    """Strides 8 (0..16 px) and 16 (16+ px) on a 32 px input."""
    p8, s8, _ = _grid(32, 8)
    p16, s16, _ = _grid(32, 16)
    ranges = torch.cat(
        [torch.tensor([[0.0, 16.0]]).expand(16, 2), torch.tensor([[16.0, 1e9]]).expand(4, 2)]
    )
    return torch.cat([p8, p16]), torch.cat([s8, s16]), ranges


def test_object_between_grid_points_gets_its_nearest_finest_point():
    points, strides, ranges = _two_levels()  # stride-8 centres at 4, 12, 20, 28
    # 3x3 px digit strokes between the points (4, 12) / (12, 12): no point inside either box
    boxes = torch.tensor([[[13.0, 5.0, 16.0, 8.0], [6.0, 6.0, 9.0, 9.0], [0, 0, 0, 0]]])
    labels = torch.tensor([[1, 2, -1]])
    off = assign_targets(points, strides, ranges, boxes, labels, 3, 1.5, force_nearest=False)
    assert (off.labels < 3).sum() == 0  # the failure being fixed: no target at all
    t = assign_targets(points, strides, ranges, boxes, labels, 3, 1.5)
    positive = (t.labels[0] < 3).nonzero().flatten().tolist()
    # (12, 4) is nearest to (14.5, 6.5); (4, 4) to (7.5, 7.5); all on the stride-8 level
    assert positive == [0, 1]
    assert t.labels[0, 1] == 1 and t.labels[0, 0] == 2
    assert torch.equal(t.boxes[0, 1], boxes[0, 0])
    assert torch.allclose(t.centerness[0, [0, 1]], torch.full((2,), FORCED_CENTERNESS))
    # a weighted box loss, not a zero one
    n = len(points)
    bad_box = t.boxes + 3.0
    loss = fcos_loss(torch.zeros(1, n, 3), bad_box, torch.zeros(1, n), t)
    assert loss["loss_box"] > 0.1


def test_forced_point_goes_to_the_small_object_and_big_ones_keep_theirs():
    points, strides, ranges = _two_levels()
    big = [0.0, 0.0, 32.0, 32.0]
    tiny = [13.0, 13.0, 15.0, 15.0]  # no point inside; nearest is (12, 12), inside the big box
    boxes, labels = torch.tensor([[big, tiny]]), torch.tensor([[0, 1]])
    t = assign_targets(points, strides, ranges, boxes, labels, 2, None)
    assert (t.labels[0] == 1).nonzero().flatten().tolist() == [5]
    assert t.centerness[0, 5] == FORCED_CENTERNESS
    # the big object is not forced anywhere: it keeps its ordinary (coarse-level) positives
    assert (t.labels[0, 16:] == 0).all() and (t.labels[0, :16] == 0).sum() == 0
    # an object that has positives is left alone: centred point, FCOS centerness 1
    t = assign_targets(points, strides, ranges, torch.tensor([[[10.0, 10.0, 14.0, 14.0]]]),
                       torch.tensor([[1]]), 2, None)  # fmt: skip
    assert (t.labels[0] == 1).nonzero().flatten().tolist() == [5] and t.centerness[0, 5] == 1.0


def test_centerness_target_values():
    ltrb = torch.tensor([[4.0, 4.0, 4.0, 4.0], [2.0, 4.0, 6.0, 4.0]])
    assert torch.allclose(centerness_target(ltrb), torch.tensor([1.0, math.sqrt(2 / 6)]))


def test_loss_is_lower_for_the_right_answer_and_has_gradients():
    points, strides, ranges = _grid()
    boxes = torch.tensor([[[0.0, 0.0, 16.0, 16.0]]])
    labels = torch.tensor([[1]])
    t = assign_targets(points, strides, ranges, boxes, labels, num_classes=2, center_radius=None)
    n = len(points)
    pos = t.labels[0] < 2

    good_cls = torch.full((1, n, 2), -8.0)
    good_cls[0, pos, 1] = 8.0
    good_box = t.boxes.clone()
    good_ctr = torch.logit(t.centerness.clamp(1e-4, 1 - 1e-4))
    good = fcos_loss(good_cls, good_box, good_ctr, t)

    bad_cls = torch.zeros(1, n, 2, requires_grad=True)
    bad_box = (t.boxes + torch.tensor([4.0, 4.0, -4.0, 4.0])).requires_grad_()
    bad = fcos_loss(bad_cls, bad_box, torch.zeros(1, n, requires_grad=True), t)
    assert good["loss_box"] < 1e-5 and good["loss_cls"] < 0.01
    assert bad["loss"] > good["loss"] + 0.5
    bad["loss"].backward()
    assert torch.isfinite(bad_cls.grad).all() and bad_box.grad.abs().sum() > 0


def test_loss_without_objects_is_finite():
    points, strides, ranges = _grid()
    t = assign_targets(
        points, strides, ranges, torch.zeros(2, 1, 4), torch.full((2, 1), -1), 3, 1.5
    )
    assert (t.labels == 3).all()
    cls = torch.zeros(2, len(points), 3, requires_grad=True)
    out = fcos_loss(cls, torch.zeros(2, len(points), 4), torch.zeros(2, len(points)), t)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["loss_box"] == 0
