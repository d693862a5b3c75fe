"""Image files: find them, decode them to 8-bit RGB, and record the ones that cannot be read.

A bad file in a folder is never fatal: :func:`load_rgb` raises :class:`BadImageError`, datasets
catch it, substitute another image and record the file in a :class:`SkipLog`. The log works
across DataLoader worker processes and distributed ranks: every process appends to its own file
under ``<run>/.skipped/`` and :meth:`SkipLog.finalize` merges them (deduplicated by path) into
``<run>/skipped.txt``, so the final count is exact however many processes saw the same file.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.core.errors import UserError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm"}
)


class BadImageError(UserError):
    """A file that cannot be decoded as an image (corrupt, truncated, empty, not an image)."""


def find_images(root: str | os.PathLike[str]) -> list[Path]:
    """List the image files under ``root`` (recursively), sorted, matched by suffix.

    Args:
        root: a folder (searched recursively) or a single image file.

    Returns:
        Sorted paths whose suffix is in :data:`IMAGE_SUFFIXES` (case-insensitive). Hidden
        files and folders (names starting with ``.``) are ignored.

    Raises:
        UserError: ``root`` does not exist or holds no image file.
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise UserError(f"data path not found: {path} (give a folder of images or builtin:NAME)")
    if path.is_file():
        files = [path] if path.suffix.lower() in IMAGE_SUFFIXES else []
    else:
        files = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and p.is_file()
        )
    if not files:
        exts = ", ".join(sorted(IMAGE_SUFFIXES))
        raise UserError(f"no image files found under {path} (looked for {exts})")
    return files


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Decode an image file to an 8-bit RGB :class:`PIL.Image.Image`.

    Grayscale, palette, CMYK, 16-bit (``I;16``, ``I``) and float images are converted; alpha is
    composited on white. EXIF orientation is applied. Multi-frame files give their first frame.
    ``PIL.Image.MAX_IMAGE_PIXELS`` is respected (a decompression bomb is a bad file).

    Raises:
        BadImageError: the file is empty, truncated, corrupt, too large or not an image.
    """
    p = Path(path)
    try:
        if p.stat().st_size == 0:
            raise BadImageError(f"{p}: empty file (0 bytes)")
        with warnings.catch_warnings():
            # Over MAX_IMAGE_PIXELS Pillow only warns; a user's limit should hold, so it's an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                img.load()  # decode now: truncated data raises here, not later in a worker
                img = ImageOps.exif_transpose(img) or img
                return to_rgb(img)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(f"{p}: larger than PIL.Image.MAX_IMAGE_PIXELS ({exc})") from None
    except UnidentifiedImageError:
        raise BadImageError(f"{p}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated or corrupt data as OSError/SyntaxError/ValueError.
        raise BadImageError(f"{p}: corrupt or truncated ({exc})") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image of any Pillow mode to 8-bit RGB (alpha composited on white)."""
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(img)
    # L, 1, CMYK, YCbCr, LAB, HSV: Pillow's own conversion is right.
    return img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale -> 8-bit RGB."""
    arr = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16"):
        arr = arr / 257.0  # full 16-bit range onto 0..255
    elif img.mode == "I":
        # Pillow opens 16-bit PNG/TIFF as "I": values up to 65535; 8-bit data stays as is.
        arr = arr / 257.0 if arr.max(initial=0) > 255 else arr
    else:  # "F": no fixed range; stretch what is there
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=0))
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


class SkipLog:
    """Record files that were skipped, from any process, and merge them into ``skipped.txt``.

    Picklable (it holds only paths), so a dataset carrying it works in DataLoader workers.
    Each process appends ``path<TAB>reason`` lines to its own file under ``<run_dir>/.skipped/``;
    :meth:`finalize` (rank 0, after the other ranks are done) merges and deduplicates them.

    Args:
        run_dir: the run's output folder; ``skipped.txt`` is written there.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.parts_dir = self.run_dir / ".skipped"
        self._seen: set[str] = set()

    def __getstate__(self) -> dict:
        return {"run_dir": self.run_dir, "parts_dir": self.parts_dir, "_seen": set()}

    def record(self, path: str | os.PathLike[str], reason: str) -> None:
        """Append one skipped file (once per process; duplicates across processes are merged)."""
        key = str(path)
        if key in self._seen:
            return
        self._seen.add(key)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        rank = os.environ.get("RANK", "0")
        part = self.parts_dir / f"rank{rank}-pid{os.getpid()}.tsv"
        line = key + "\t" + " ".join(reason.split()) + "\n"
        # One short append per line: atomic enough on POSIX (O_APPEND), survives a crash.
        with open(part, "a", encoding="utf-8") as fh:
            fh.write(line)

    def entries(self) -> dict[str, str]:
        """All recorded files so far, from every process: ``{path: reason}`` sorted by path."""
        merged: dict[str, str] = {}
        if self.parts_dir.is_dir():
            for part in sorted(self.parts_dir.glob("*.tsv")):
                for line in part.read_text(encoding="utf-8").splitlines():
                    path, _, reason = line.partition("\t")
                    if path:
                        merged.setdefault(path, reason)
        final = self.run_dir / "skipped.txt"
        if final.is_file():  # a resumed run keeps what the first part of the run skipped
            for line in final.read_text(encoding="utf-8").splitlines()[1:]:
                path, _, reason = line.partition("\t")
                if path:
                    merged.setdefault(path, reason)
        return dict(sorted(merged.items()))

    def finalize(self) -> int:
        """Merge every process's records into ``skipped.txt``; return the number of files.

        Writes nothing (and removes a stale list) when nothing was skipped.
        """
        merged = self.entries()
        final = self.run_dir / "skipped.txt"
        if merged:
            header = f"# {len(merged)} file(s) skipped: path<TAB>reason\n"
            body = "".join(f"{p}\t{r}\n" for p, r in merged.items())
            atomic_write_text(final, header + body)
        if self.parts_dir.is_dir():
            for part in self.parts_dir.glob("*.tsv"):
                part.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # another process may still be writing
                self.parts_dir.rmdir()
        return len(merged)
