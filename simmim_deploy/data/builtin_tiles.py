"""Built-in small-object detection sets cut from real images inside scikit-image, no download.

Both are one-class COCO sets of 128 px tiles (the detector's input size) with boxes from
classical segmentation, written down here so anyone can redo it. Each image is cut into a 5x5
grid of tiles; six tiles are the validation part (stratified: tiles ranked by object count, one
drawn per group of four), the other 19 the training part. Tiles never overlap, so no pixel is in
both parts. An object cut by a tile edge is kept, clipped, when at least half of its box lies
inside the tile (else dropped). The same seed gives the same bytes.

``builtin:nuclei-det`` (microscopy): scikit-image's immunohistochemistry image
(``skimage.data.immunohistochemistry()``: 512x512 RGB colon tissue, haematoxylin counterstain
(blue nuclei) and DAB (brown)), resized by 1.25 (bicubic); objects ~9-50 px, median ~22, ~90
in training. Class ``nucleus``:

1. ``blue = B - R`` per pixel, Gaussian-smoothed (sigma 1 px): haematoxylin-stained nuclei are
   blue (B > R), DAB-stained tissue brown (R > B), empty glass white (B ~ R).
2. Threshold ``blue > 8`` (fixed; Otsu's threshold splits brown from the rest instead), binary
   opening with a disk of radius 1, holes filled.
3. Touching nuclei split by a watershed on the distance transform, one marker per local maximum
   at least 6 px apart.
4. Regions of at least 30 px area and at most 40 px on their longer side are kept (larger
   regions are clumps, smaller ones debris). The rule finds the blue nuclei of the stroma; the
   grey nuclei inside the brown glands are not labelled, so a detector must learn the rule (a
   hard set: a from-scratch ViT-tiny reaches only a few points of mAP50 in 30 epochs).

``builtin:galaxies-det`` (bright objects on a dark field, like fluorescence microscopy):
the top-left 640x640 px of scikit-image's Hubble eXtreme Deep Field (``hubble_deep_field()``)
at native scale; objects ~5-39 px, median ~9, ~170 in training. Class ``galaxy``: mean of
R, G, B Gaussian-smoothed (sigma 1 px), threshold 40 (of 255), holes filled, connected
components of at least 20 px area and at most 40 px on their longer side (fainter specks and
the few large, merged ones are left out).

Cache: as :mod:`simmim_deploy.data.builtin_detection`, one folder per set, version and seed.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from simmim_deploy.core.atomic import atomic_directory
from simmim_deploy.core.errors import require
from simmim_deploy.data.builtin_detection import cache_root

VERSION = 1  # bump when a segmentation or the tiling changes, so stale caches are not reused
TILE = 128
GRID = 5  # tiles per side
NUM_VAL = 6
_BLUE_THRESHOLD = 8.0
_MIN_AREA, _MAX_SIDE = 30, 40
_BRIGHT_THRESHOLD, _BRIGHT_MIN_AREA = 40.0, 20


def segment_nuclei(rgb: np.ndarray) -> np.ndarray:
    """Nucleus boxes of an RGB haematoxylin/DAB image by the rule in the module docstring.

    Args:
        rgb: ``(H, W, 3)`` uint8 image.

    Returns:
        ``(G, 4)`` float32 xyxy boxes (pixel edges), in label order.
    """
    require("skimage", extra="data", purpose="builtin:nuclei-det")
    from scipy import ndimage as ndi
    from skimage import feature, filters, measure, morphology, segmentation

    img = rgb.astype(np.float32)
    blue = filters.gaussian(img[..., 2] - img[..., 0], sigma=1.0, preserve_range=True)
    mask = ndi.binary_fill_holes(ndi.binary_opening(blue > _BLUE_THRESHOLD, morphology.disk(1)))
    dist = ndi.distance_transform_edt(mask)
    peaks = feature.peak_local_max(
        filters.gaussian(dist, sigma=1.0), min_distance=6, labels=measure.label(mask),
        exclude_border=False,
    )  # fmt: skip
    markers = np.zeros(dist.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return _region_boxes(segmentation.watershed(-dist, markers, mask=mask), _MIN_AREA)


def segment_bright(rgb: np.ndarray) -> np.ndarray:
    """Boxes of bright objects on a dark field (the ``galaxies-det`` rule in the module doc);
    input and output as :func:`segment_nuclei`."""
    require("skimage", extra="data", purpose="builtin:galaxies-det")
    from scipy import ndimage as ndi
    from skimage import filters, measure

    gray = filters.gaussian(rgb.astype(np.float32).mean(-1), sigma=1.0, preserve_range=True)
    return _region_boxes(
        measure.label(ndi.binary_fill_holes(gray > _BRIGHT_THRESHOLD)), _BRIGHT_MIN_AREA
    )


def _region_boxes(labels: np.ndarray, min_area: int) -> np.ndarray:
    """xyxy boxes (pixel edges, label order) of the labelled regions of at least ``min_area``
    pixels whose longer side is at most ``_MAX_SIDE``."""
    from skimage import measure

    boxes = []
    for region in measure.regionprops(labels):
        y0, x0, y1, x1 = region.bbox
        if region.area >= min_area and max(x1 - x0, y1 - y0) <= _MAX_SIDE:
            boxes.append((x0, y0, x1, y1))
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def _nuclei_source() -> tuple[Image.Image, np.ndarray]:
    skdata = require("skimage.data", extra="data", purpose="builtin:nuclei-det")
    rgb = np.asarray(skdata.immunohistochemistry(), dtype=np.uint8)
    scale, side = 1.25, TILE * GRID
    image = Image.fromarray(rgb).resize((side, side), Image.BICUBIC)
    return image, segment_nuclei(rgb) * np.float32(scale)


def _galaxies_source() -> tuple[Image.Image, np.ndarray]:
    skdata = require("skimage.data", extra="data", purpose="builtin:galaxies-det")
    side = TILE * GRID
    rgb = np.ascontiguousarray(np.asarray(skdata.hubble_deep_field(), np.uint8)[:side, :side])
    return Image.fromarray(rgb), segment_bright(rgb)


#: set name -> (class name, source image and its boxes at tile scale)
SETS = {"nuclei-det": ("nucleus", _nuclei_source), "galaxies-det": ("galaxy", _galaxies_source)}


def _tile_boxes(boxes: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """Boxes of one tile: shifted, clipped, kept when at least half of the box is inside."""
    shifted = boxes - np.array([x0, y0, x0, y0], dtype=np.float32)
    clipped = np.clip(shifted, 0, TILE)
    area = lambda b: (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)  # noqa: E731
    keep = area(clipped) >= 0.5 * area(shifted)
    return clipped[keep & (area(clipped) > 0)]


def _write_split(folder: Path, tiles: list[tuple[Image.Image, np.ndarray]], name: str) -> None:
    (folder / "images").mkdir(parents=True)
    doc: dict = {"images": [], "annotations": [], "categories": [{"id": 1, "name": name}]}
    for i, (tile, boxes) in enumerate(tiles):
        file = f"{i:03d}.png"  # PNG: lossless, so the bytes depend only on the seed
        tile.save(folder / "images" / file)
        doc["images"].append({"id": i + 1, "file_name": file, "width": TILE, "height": TILE})
        for x1, y1, x2, y2 in boxes.tolist():
            doc["annotations"].append(
                {
                    "id": len(doc["annotations"]) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    (folder / "annotations.json").write_text(json.dumps(doc), encoding="utf-8")


def _validation_tiles(counts: list[int], seed: int) -> set[int]:
    """Stratified by object count: tiles ranked by count, one drawn from each group of
    ``len(counts) // NUM_VAL`` (so validation has rich, middling and sparse tiles like training)."""
    rng = np.random.default_rng(seed)
    ranked = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
    group = len(counts) // NUM_VAL
    return {ranked[g * group + int(rng.integers(group))] for g in range(NUM_VAL)}


def validation_origins(name: str, seed: int = 0) -> list[tuple[int, int]]:
    """Top-left ``(x, y)`` of the validation tiles of set ``name`` in its source image (tile
    scale), e.g. to keep them out of an unlabelled pre-training pool cut from the same image."""
    _, source = SETS[name]
    _, boxes = source()
    counts = [len(_tile_boxes(boxes, c * TILE, r * TILE)) for r in range(GRID) for c in range(GRID)]
    return [(i % GRID * TILE, i // GRID * TILE) for i in sorted(_validation_tiles(counts, seed))]


def generate_tile_detection(name: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiles of set ``name`` as COCO folders ``out_dir/{train,val}`` (atomically).

    Args:
        name: a key of :data:`SETS` (``nuclei-det``, ``galaxies-det``).
        out_dir: destination folder (must not exist).
        seed: seed of the validation-tile choice; the same seed gives identical files.

    Returns:
        ``out_dir``.
    """
    class_name, source = SETS[name]
    image, boxes = source()
    tiles = []
    for row in range(GRID):
        for col in range(GRID):
            x0, y0 = col * TILE, row * TILE
            crop = image.crop((x0, y0, x0 + TILE, y0 + TILE))
            tiles.append((crop, _tile_boxes(boxes, x0, y0)))
    val_idx = _validation_tiles([len(b) for _, b in tiles], seed)
    with atomic_directory(out_dir) as tmp:
        train = [t for i, t in enumerate(tiles) if i not in val_idx]
        _write_split(tmp / "train", train, class_name)
        _write_split(tmp / "val", [tiles[i] for i in sorted(val_idx)], class_name)
    return Path(out_dir)


def tile_detection_root(name: str, seed: int = 0) -> Path:
    """The cached set ``name`` for ``seed``, generated on first use."""
    root = cache_root() / f"{name}-v{VERSION}-seed{seed}"
    if not (root / "val" / "annotations.json").is_file():
        # FileExistsError: another process finished it first.
        with contextlib.suppress(FileExistsError):
            generate_tile_detection(name, root, seed)
    return root
