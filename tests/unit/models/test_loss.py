"""simmim_loss against the paper's formula written out independently (numpy loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simmim_deploy import simmim_loss
from simmim_deploy.models.loss import norm_targets

P = 4  # patch size


def _reference(x, r, mask, p, squared=False):
    """sum over masked pixels and channels of |x - r| / (masked pixels + 1e-5) / 3."""
    x, r, mask = x.numpy().astype(np.float64), r.numpy().astype(np.float64), mask.numpy()
    total, count = 0.0, 0.0
    b_, c_, h_, w_ = x.shape
    for b in range(b_):
        for i in range(h_):
            for j in range(w_):
                if mask[b, i // p, j // p]:
                    count += 1
                    for c in range(c_):
                        d = x[b, c, i, j] - r[b, c, i, j]
                        total += d * d if squared else abs(d)
    return total / (count + 1e-5) / 3


def _reference_norm(x, k):
    """Each pixel minus the mean, over the unbiased std, of its border-clipped k x k window."""
    x = x.numpy().astype(np.float64)
    out = np.empty_like(x)
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            win = x[..., max(0, i - k // 2) : i + k // 2 + 1, max(0, j - k // 2) : j + k // 2 + 1]
            mean = win.mean(axis=(-2, -1))
            var = win.var(axis=(-2, -1), ddof=1)
            out[..., i, j] = (x[..., i, j] - mean) / np.sqrt(var + 1e-6)
    return torch.from_numpy(out).float()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=g)
    r = torch.randn(2, 3, 16, 16, generator=g)
    mask = (torch.rand(2, 4, 4, generator=g) > 0.5).long()
    mask[0, 0, 0], mask[1, 0, 0] = 1, 0
    return x, r, mask


def test_l1_equals_formula(batch):
    x, r, mask = batch
    got = simmim_loss(x, r, mask, P)
    assert got.ndim == 0
    assert got.item() == pytest.approx(_reference(x, r, mask, P), rel=1e-5)


def test_l2_equals_formula(batch):
    x, r, mask = batch
    got = simmim_loss(x, r, mask, P, loss_type="l2")
    assert got.item() == pytest.approx(_reference(x, r, mask, P, squared=True), rel=1e-5)


def test_sums_over_batch_not_mean_of_images(batch):
    x, r, mask = batch
    mask = torch.zeros_like(mask)
    mask[0, :1] = 1  # image 0: 4 cells masked, image 1: 16
    mask[1] = 1
    per_image = [simmim_loss(x[i : i + 1], r[i : i + 1], mask[i : i + 1], P) for i in range(2)]
    pooled = (per_image[0] * 4 + per_image[1] * 16) / 20
    assert simmim_loss(x, r, mask, P).item() == pytest.approx(pooled.item(), rel=1e-5)


def test_zero_on_perfect_reconstruction(batch):
    x, _, mask = batch
    assert simmim_loss(x, x.clone(), mask, P).item() == 0.0


def test_ignores_unmasked_pixels(batch):
    x, r, mask = batch
    base = simmim_loss(x, r, mask, P)
    pixel = mask.repeat_interleave(P, 1).repeat_interleave(P, 2).unsqueeze(1).bool()
    r2 = torch.where(pixel, r, r + 100.0)  # garbage everywhere the mask is 0
    assert simmim_loss(x, r2, mask, P).item() == pytest.approx(base.item(), rel=1e-6)
    r3 = torch.where(pixel, r + 1.0, r)  # and masked pixels do count
    assert simmim_loss(x, r3, mask, P).item() != pytest.approx(base.item(), rel=1e-3)


def test_empty_mask_is_zero_not_nan(batch):
    x, r, mask = batch
    assert simmim_loss(x, r, torch.zeros_like(mask), P).item() == 0.0


def test_norm_target_equals_windowed_formula(batch):
    x, r, mask = batch
    assert torch.allclose(norm_targets(x, 5), _reference_norm(x, 5), atol=1e-4)
    got = simmim_loss(x, r, mask, P, norm_target=True, norm_target_patch_size=5)
    want = _reference(_reference_norm(x, 5), r, mask, P)
    assert got.item() == pytest.approx(want, rel=1e-4)


def test_norm_target_invariant_to_affine_intensity(batch):
    x, r, mask = batch
    a = simmim_loss(x, r, mask, P, norm_target=True, norm_target_patch_size=7)
    b = simmim_loss(3.0 * x + 2.0, r, mask, P, norm_target=True, norm_target_patch_size=7)
    assert a.item() == pytest.approx(b.item(), rel=1e-3)


def test_bad_options(batch):
    x, r, mask = batch
    with pytest.raises(ValueError, match="odd"):
        simmim_loss(x, r, mask, P, norm_target=True, norm_target_patch_size=4)
    with pytest.raises(ValueError, match="loss_type"):
        simmim_loss(x, r, mask, P, loss_type="ce")
