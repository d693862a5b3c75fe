"""Image decoding for serving: any file or byte string to an upright RGB ``PIL.Image``.

Decisions, stated once:

* **Pixel limit before decoding.** Pillow reads only the header in ``Image.open``; the pixel count
  is checked against ``max_pixels`` before any pixel is decoded, so a decompression bomb (a tiny
  PNG that claims 50k x 50k pixels) costs nothing. We never touch the process-wide
  ``Image.MAX_IMAGE_PIXELS``: the limit is a per-call argument.
* **EXIF orientation is applied** (``ImageOps.exif_transpose``). Phone cameras store pixels
  sideways plus an orientation tag; every viewer shows the image upright, users label it upright,
  and boxes must land on the image as the user sees it. ``width``/``height`` in results are those
  of the upright image.
* **Any mode to RGB, exactly as training loads images** (``simmim_deploy.data.images``): alpha
  composited on white, 16-bit and float greyscale scaled to 8 bits instead of clipped, so serving
  sees what training saw.
* Animated images use their first frame. Truncated files are errors, never half-grey images.
* **Large JPEGs may be decoded at reduced size** (``min_side``): libjpeg's DCT scaling
  (Pillow's ``Image.draft``) decodes at 1/2, 1/4 or 1/8 scale, never below ``min_side`` on either
  side, so the resize that follows has less to do (``benchmarks/bench_decode.py``: 480-1024 px
  photos to a 112 px input, 5.73 -> 1.98 ms an image on one core). The pixels then differ slightly
  from a full decode + resize (the scaled DCT is a box-like pre-filter), which is why it is a
  caller's choice (``predict``/``serve`` ``--fast-decode``, on by default for classification).
  ``width``/``height`` stay those of the full upright image.
* **8-bit greyscale may stay greyscale** (``keep_grey``): the runtime resizes a greyscale image
  in one band and spreads it to three channels only at normalisation, a third of the resize
  work; Pillow's resize treats bands independently, so the network input is bit-identical to
  resizing the RGB conversion (tested).
"""

from __future__ import annotations

import io
from os import PathLike
from typing import NamedTuple

from PIL import Image, ImageOps, UnidentifiedImageError

from simmim_deploy.core.errors import UserError
from simmim_deploy.core.preprocess import to_rgb

# 40 megapixels: above any camera a client is likely to send, far below a decompression bomb.
DEFAULT_MAX_PIXELS = 40_000_000
_ORIENTATION = 0x0112  # EXIF tag
_SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees
FAST_DECODE = True  # predict/serve default: reduced-size JPEG decoding for classification
FAST_DECODE_HELP = (
    "Decode large JPEGs at 1/2-1/8 scale (libjpeg DCT scaling, never below the resize size; "
    "classification only): several times faster on camera-sized photos, pixels differ slightly "
    "from evaluate's full decode. --no-fast-decode: decode every image in full."
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


class ImageError(UserError):
    """The bytes are not a decodable image (not an image, truncated, empty)."""


class ImageTooLarge(ImageError):
    """The image has more pixels than allowed (decompression bomb or simply too big)."""


class Decoded(NamedTuple):
    """A decoded image and the size of the full upright image (``image`` may be smaller)."""

    image: Image.Image
    width: int
    height: int


def load_image(
    source: str | PathLike[str] | bytes, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode a path or encoded bytes to an upright 8-bit RGB image (see :func:`decode_image`)."""
    return decode_image(source, max_pixels).image


def decode_image(
    source: str | PathLike[str] | bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 0,
    keep_grey: bool = False,
) -> Decoded:
    """Decode a path or encoded bytes to an upright 8-bit RGB image.

    Args:
        source: a file path or the encoded bytes of an image.
        max_pixels: refuse images with more pixels than this (checked before decoding).
        min_side: > 0: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale as long as both sides
            stay >= ``min_side`` (other formats are always decoded in full).
        keep_grey: return an 8-bit greyscale image (mode ``L``) as is, not converted to RGB.

    Returns:
        The fully loaded ``PIL.Image`` in mode ``RGB`` (``H x W x 3`` uint8 as an array; ``L``
        for greyscale with ``keep_grey``) and the full upright image's width and height.

    Raises:
        ImageTooLarge: more than ``max_pixels`` pixels.
        ImageError: empty, not an image, truncated or otherwise undecodable.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("empty image (0 bytes)")
        fp: object = io.BytesIO(source)
    else:
        fp = source
    try:
        with Image.open(fp) as img:  # type: ignore[arg-type]
            _check_pixels(img.size, max_pixels)
            orientation = img.getexif().get(_ORIENTATION, 1)
            width, height = img.size
            if orientation in _SWAPS_SIDES:
                width, height = height, width
            if min_side > 0 and img.format == "JPEG":
                img.draft(None, (min_side, min_side))  # type: ignore[arg-type]
            img.load()
            # exif_transpose copies even when nothing rotates: only call it when needed.
            if orientation != 1:
                img = ImageOps.exif_transpose(img)
            return Decoded(img if keep_grey and img.mode == "L" else to_rgb(img), width, height)
    except Image.DecompressionBombError as exc:  # Pillow's own hard limit (>~179 Mpx)
        raise ImageTooLarge(f"image too large: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)") from None
    except FileNotFoundError:
        raise ImageError(f"no such file: {source}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt data
        raise ImageError(f"cannot decode image: {exc}") from None


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image too large: {width}x{height} = {width * height} pixels > limit {max_pixels}"
        )
