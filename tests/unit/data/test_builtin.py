"""Built-in real data sets: present offline, right sizes and labels, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from simmim_deploy.core.errors import UserError
from simmim_deploy.data.builtin import list_builtin, load_builtin, resolve_data_arg


def test_list_builtin():
    assert {"mnist", "digits", "photos"} <= set(list_builtin())


def test_mnist_is_5000_real_labelled_digits():
    data = load_builtin("mnist")
    assert len(data.images) == 5000 and data.images[0].size == (28, 28)
    assert data.images[0].mode == "RGB"
    assert data.labels is not None and data.labels.shape == (5000,)
    assert np.bincount(data.labels).tolist() == [500] * 10  # balanced, all ten classes
    assert data.class_names == [str(d) for d in range(10)]
    # real digits: mostly black background with bright strokes, not noise
    pixels = np.asarray(data.images[0])[..., 0]
    assert (pixels == 0).mean() > 0.5 and pixels.max() > 200


def test_digits_scaled_to_8_bit():
    data = load_builtin("builtin:digits")
    assert len(data.images) == 1797 and data.images[0].size == (8, 8)
    assert max(np.asarray(im).max() for im in data.images[:50]) == 255
    assert set(data.labels.tolist()) == set(range(10))


def test_photos_are_unlabelled_real_rgb():
    data = load_builtin("photos")
    assert len(data.images) >= 10 and data.labels is None and data.class_names is None
    assert all(im.mode == "RGB" and min(im.size) >= 64 for im in data.images)


def test_unknown_name_suggests_close_match():
    with pytest.raises(UserError, match="did you mean 'mnist'"):
        load_builtin("mnsit")


def test_resolve_data_arg(tmp_path):
    assert len(resolve_data_arg("builtin:digits").images) == 1797
    with pytest.raises(UserError, match="not found"):
        resolve_data_arg(tmp_path / "missing")
