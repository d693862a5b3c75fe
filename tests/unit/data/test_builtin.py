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
    assert len(resolve_data_arg("builtin:photos").images) == len(load_builtin("photos").images)
    with pytest.raises(UserError, match="not found"):
        resolve_data_arg(tmp_path / "missing")


def test_pretraining_never_sees_the_digits_evaluate_scores():
    from simmim_deploy.data.classification import load_eval_images

    pretrain = resolve_data_arg("builtin:mnist")  # what train pretrain --data builtin:mnist reads
    scored = load_eval_images("builtin:mnist", [str(d) for d in range(10)])  # what evaluate reads
    assert len(pretrain.images) == 4000 and len(scored) == 1000
    seen = {im.tobytes() for im in pretrain.images}
    assert not any(im.tobytes() in seen for im in scored.items)
    everything = {im.tobytes() for im in load_builtin("mnist").images}
    assert seen | {im.tobytes() for im in scored.items} == everything
    assert np.bincount(pretrain.labels).tolist() == [400] * 10  # stratified: 20 % of each class
