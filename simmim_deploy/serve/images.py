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
"""

from __future__ import annotations

import io
from os import PathLike

from PIL import Image, ImageOps, UnidentifiedImageError

from simmim_deploy.core.errors import UserError
from simmim_deploy.core.preprocess import to_rgb

# 40 megapixels: above any camera a client is likely to send, far below a decompression bomb.
DEFAULT_MAX_PIXELS = 40_000_000
_ORIENTATION = 0x0112  # EXIF tag
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


class ImageError(UserError):
    """The bytes are not a decodable image (not an image, truncated, empty)."""


class ImageTooLarge(ImageError):
    """The image has more pixels than allowed (decompression bomb or simply too big)."""


def load_image(
    source: str | PathLike[str] | bytes, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode a path or encoded bytes to an upright 8-bit RGB image.

    Args:
        source: a file path or the encoded bytes of an image.
        max_pixels: refuse images with more pixels than this (checked before decoding).

    Returns:
        A fully loaded ``PIL.Image`` in mode ``RGB`` (``H x W x 3`` uint8 as an array).

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
            img.load()
            # exif_transpose copies even when nothing rotates: only call it when needed.
            if img.getexif().get(_ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)
            return to_rgb(img)
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
