"""Convert YOLO txt and Pascal VOC XML detection data to COCO JSON (written atomically).

From the command line these run on their own when ``--data`` is ``yolo:PATH`` or ``voc:PATH``
(the COCO file goes into the run's ``data/`` folder; the images stay where they are). From
Python call :func:`convert_yolo` / :func:`convert_voc` and read the result with
:func:`simmim_deploy.data.coco.read_coco` (``images_dir`` = the returned images folder).

YOLO layout: ``PATH/images/[SPLIT/]*.jpg`` + ``PATH/labels/[SPLIT/]*.txt`` (one
``class cx cy w h`` line per object, normalised to 0..1) + class names in ``PATH/classes.txt``
(one per line) or ``PATH/data.yaml`` (``names:``). VOC layout: ``PATH/JPEGImages/`` +
``PATH/Annotations/*.xml`` (+ optional ``PATH/ImageSets/Main/SPLIT.txt``); ``difficult``
objects become crowd (ignored) annotations. Unreadable images are skipped and counted.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from PIL import Image

from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.core.errors import UserError
from simmim_deploy.data.images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


def _image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the header, or None for an unreadable file."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError, SyntaxError):
        return None


def _write_coco(
    out_json: Path, images: list[dict], annotations: list[dict], names: list[str]
) -> Path:
    doc = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for i, n in enumerate(names)],
    }
    atomic_write_text(out_json, json.dumps(doc))
    return out_json


def yolo_class_names(root: Path) -> list[str]:
    """Class names from ``classes.txt`` / ``obj.names`` or ``data.yaml`` (``names:``)."""
    for name in ("classes.txt", "obj.names"):
        if (root / name).is_file():
            lines = (root / name).read_text(encoding="utf-8").splitlines()
            return [line.strip() for line in lines if line.strip()]
    if (root / "data.yaml").is_file():
        import yaml

        names = (yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8")) or {}).get(
            "names"
        )
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names)]
        if isinstance(names, list):
            return [str(n) for n in names]
    raise UserError(f"{root}: no class names; add classes.txt (one name per line) or data.yaml")


def convert_yolo(
    root: str | Path, out_json: str | Path, split: str | None = None
) -> tuple[Path, Path, int]:
    """Convert a YOLO folder (or one split of it) to a COCO annotation file.

    Args:
        root: YOLO dataset folder.
        out_json: COCO file to write.
        split: sub-folder of ``images/`` and ``labels/`` (``train``, ``val``), or None.

    Returns:
        ``(out_json, images_dir, skipped)``: ``file_name`` is relative to ``images_dir``.

    Raises:
        UserError: missing folders, class names, or a malformed label line.
    """
    root = Path(root)
    images_dir = root / "images" / (split or "")
    labels_dir = root / "labels" / (split or "")
    if not images_dir.is_dir():
        raise UserError(f"{images_dir} not found (YOLO layout: images/ + labels/ + classes.txt)")
    names = yolo_class_names(root)
    images: list[dict] = []
    anns: list[dict] = []
    skipped = 0
    files = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in files:
        size = _image_size(path)
        if size is None:
            skipped += 1
            continue
        rel = path.relative_to(images_dir)
        image_id = len(images) + 1
        images.append(
            {"id": image_id, "file_name": rel.as_posix(), "width": size[0], "height": size[1]}
        )
        label_file = (labels_dir / rel).with_suffix(".txt")
        if label_file.is_file():
            anns += _yolo_objects(label_file, image_id, size, len(names), len(anns))
    if skipped:
        log.warning("%s: skipped %d unreadable images", images_dir, skipped)
    return _write_coco(Path(out_json), images, anns, names), images_dir, skipped


def _yolo_objects(
    path: Path, image_id: int, size: tuple[int, int], num_classes: int, first_id: int
) -> list[dict[str, Any]]:
    width, height = size
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = int(parts[0])
            cx, cy, w, h = (float(v) for v in parts[1:5])
        except (ValueError, IndexError):
            raise UserError(f"{path}:{n}: expected 'class cx cy w h', got {line!r}") from None
        if not 0 <= cls < num_classes:
            raise UserError(f"{path}:{n}: class {cls} outside the {num_classes} class names")
        x1, y1 = max(0.0, (cx - w / 2) * width), max(0.0, (cy - h / 2) * height)
        x2, y2 = min(width, (cx + w / 2) * width), min(height, (cy + h / 2) * height)
        box = [x1, y1, x2 - x1, y2 - y1]
        out.append(
            {
                "id": first_id + len(out) + 1,
                "image_id": image_id,
                "category_id": cls,
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": 0,
            }
        )
    return out


def convert_voc(
    root: str | Path,
    out_json: str | Path,
    split: str | None = None,
    class_names: list[str] | None = None,
) -> tuple[Path, Path, int]:
    """Convert a Pascal VOC folder (or one ``ImageSets/Main`` split) to a COCO annotation file.

    Args:
        root: VOC folder with ``JPEGImages/`` and ``Annotations/``.
        out_json: COCO file to write.
        split: name of an ``ImageSets/Main/SPLIT.txt`` list, or None for every XML file.
        class_names: class order; default ``ROOT/labels.txt`` if present, else the sorted names
            found in the XML files.

    Returns:
        ``(out_json, images_dir, skipped)``.
    """
    root = Path(root)
    ann_dir, images_dir = root / "Annotations", root / "JPEGImages"
    if not ann_dir.is_dir() or not images_dir.is_dir():
        raise UserError(f"{root}: VOC layout needs Annotations/ and JPEGImages/")
    if split:
        listing = root / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.is_file():
            raise UserError(f"{listing} not found (the VOC split list for '{split}')")
        ids = [s.split()[0] for s in listing.read_text(encoding="utf-8").splitlines() if s.strip()]
        xml_files = [ann_dir / f"{i}.xml" for i in ids]
    else:
        xml_files = sorted(ann_dir.glob("*.xml"))
    parsed = [_parse_voc(p) for p in xml_files]
    if class_names is None and (root / "labels.txt").is_file():
        lines = (root / "labels.txt").read_text(encoding="utf-8").splitlines()
        class_names = [s.strip() for s in lines if s.strip()]
    names = class_names or sorted({obj[0] for _, objs in parsed for obj in objs})
    index = {n: i for i, n in enumerate(names)}
    images: list[dict] = []
    anns: list[dict] = []
    skipped = 0
    for file_name, objects in parsed:
        size = _image_size(images_dir / file_name)
        if size is None:
            skipped += 1
            continue
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": file_name, "width": size[0], "height": size[1]})
        for name, difficult, (x1, y1, x2, y2) in objects:
            if name not in index:
                raise UserError(f"{file_name}: object class '{name}' is not in the class names")
            box = [x1, y1, x2 - x1, y2 - y1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": index[name],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": int(difficult),
                }
            )
    if skipped:
        log.warning("%s: skipped %d unreadable images", images_dir, skipped)
    return _write_coco(Path(out_json), images, anns, names), images_dir, skipped


def _parse_voc(path: Path) -> tuple[str, list[tuple[str, bool, tuple[float, ...]]]]:
    """``(file_name, [(class, difficult, xyxy)])``; VOC pixels are 1-based, made 0-based."""
    try:
        tree = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise UserError(f"{path}: not a readable VOC XML file ({exc})") from None
    file_name = (tree.findtext("filename") or f"{path.stem}.jpg").strip()
    objects = []
    for obj in tree.iter("object"):
        box = obj.find("bndbox")
        name = (obj.findtext("name") or "").strip()
        if box is None or not name:
            raise UserError(f"{path}: an <object> lacks <name> or <bndbox>")
        try:
            x1, y1, x2, y2 = (
                float(box.findtext(k) or "") for k in ("xmin", "ymin", "xmax", "ymax")
            )
        except ValueError:
            raise UserError(
                f"{path}: <bndbox> of '{name}' needs numeric xmin/ymin/xmax/ymax"
            ) from None
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append((name, difficult, (x1 - 1.0, y1 - 1.0, x2, y2)))
    return file_name, objects
