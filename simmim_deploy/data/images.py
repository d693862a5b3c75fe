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
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.preprocess import to_rgb

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


def median_short_side(
    items: Sequence[str | os.PathLike[str] | Image.Image], sample: int = 64
) -> int | None:
    """The median short side in pixels of up to ``sample`` evenly spaced ``items`` (files are
    read for their header only; unreadable ones are left out; None when none can be read)."""
    step = max(1, len(items) // sample)
    sides = []
    for item in list(items)[::step][:sample]:
        if isinstance(item, Image.Image):
            sides.append(min(item.size))
            continue
        bad = (OSError, SyntaxError, ValueError, UnidentifiedImageError)
        with contextlib.suppress(*bad), Image.open(item) as img:  # lazy: header only
            sides.append(min(img.size))
    return int(sorted(sides)[len(sides) // 2]) if sides else None


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

    def nothing_readable(self, what: str) -> UserError:
        """The error for data of which every file was skipped: writes ``skipped.txt`` now
        (the per-process records live in a hidden folder) and names it."""
        count = self.finalize()
        return UserError(
            f"no readable image in {what}: {count} file(s) skipped, each listed with its reason "
            f"in {self.run_dir / 'skipped.txt'}"
        )

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
