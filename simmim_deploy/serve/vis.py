"""Draw predictions on images with Pillow (boxes with labels, or the top classes)."""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageDraw

_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"]


def draw_record(img: Image.Image, record: dict[str, Any], max_lines: int = 3) -> Image.Image:
    """Return a copy of ``img`` with ``record``'s boxes or top classes drawn on it.

    Args:
        img: the original RGB image (the one ``record``'s coordinates refer to).
        record: a ``predict`` result line with ``boxes`` or ``topk``.
        max_lines: how many top classes to write for a classification result.
    """
    out = img.convert("RGB")
    draw = ImageDraw.Draw(out)
    for box in record.get("boxes", []):
        colour = _COLOURS[box.get("index", 0) % len(_COLOURS)]
        x1, y1, x2, y2 = box["xyxy"]
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=max(1, round(min(out.size) / 150)))
        _label(draw, (x1, y1), f"{box['label']} {box['score']:.2f}", colour)
    for line, cls in enumerate(record.get("topk", [])[:max_lines]):
        _label(draw, (0, 12 * line), f"{cls['label']} {cls['score']:.2f}", "#000000")
    return out


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, colour: str) -> None:
    left, top, right, bottom = draw.textbbox(xy, text)
    draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=colour)
    draw.text(xy, text, fill="#ffffff")
