"""Image discovery, decoding of every common format/mode, and skipping of bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from simmim_deploy.core.errors import UserError
from simmim_deploy.data.images import (
    BadImageError,
    SkipLog,
    find_images,
    load_rgb,
    median_short_side,
)


def _photo(size: int = 24) -> np.ndarray:
    """A smooth colour gradient (survives lossy formats well enough to compare)."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([x * 10, y * 10, (x + y) * 5], axis=-1).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp", ".tiff", ".JPEG"])
def test_common_formats_load_as_rgb(tmp_path, suffix):
    path = tmp_path / f"img{suffix}"
    Image.fromarray(_photo()).save(path, format=None if suffix != ".JPEG" else "JPEG")
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == (24, 24)
    lossy = suffix.lower() in (".jpg", ".jpeg", ".webp")
    diff = np.abs(np.asarray(img, dtype=int) - _photo().astype(int)).mean()
    assert diff < (12 if lossy else 1e-9)


def test_grayscale_and_palette(tmp_path):
    Image.fromarray(np.full((8, 8), 77, np.uint8), mode="L").save(tmp_path / "g.png")
    Image.fromarray(_photo()).convert("P").save(tmp_path / "p.gif")
    gray = np.asarray(load_rgb(tmp_path / "g.png"))
    assert gray.shape == (8, 8, 3) and (gray == 77).all()
    assert load_rgb(tmp_path / "p.gif").mode == "RGB"


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[:, :2, 3] = 255  # left half opaque, right half fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = np.asarray(load_rgb(tmp_path / "a.png"))
    assert (out[:, :2] == [255, 0, 0]).all()
    assert (out[:, 2:] == [255, 255, 255]).all()


def test_cmyk_jpeg(tmp_path):
    Image.fromarray(_photo()).convert("CMYK").save(tmp_path / "c.jpg")
    img = load_rgb(tmp_path / "c.jpg")
    assert img.mode == "RGB"
    assert np.abs(np.asarray(img, dtype=int) - _photo().astype(int)).mean() < 20


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16_bit_grayscale_scaled_to_8_bit(tmp_path, suffix):
    values = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(values).save(path)
    out = np.asarray(load_rgb(path))[..., 0]
    assert out.tolist() == [[0, 100], [200, 255]]


@pytest.mark.parametrize(
    "name,content",
    [
        ("empty.png", b""),
        ("text.jpg", b"this is not an image at all"),
        ("random.webp", bytes(range(256)) * 4),
    ],
)
def test_bad_files_raise_bad_image_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadImageError):
        load_rgb(path)


def test_truncated_file_is_bad(tmp_path):
    good = tmp_path / "good.png"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(BadImageError, match="truncated|corrupt"):
        load_rgb(cut)


def test_decompression_bomb_limit_respected(tmp_path, monkeypatch):
    Image.fromarray(_photo(32)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(BadImageError, match="MAX_IMAGE_PIXELS"):
        load_rgb(tmp_path / "big.png")


def test_find_images_recursive_sorted_case_insensitive(spaced_tmp):
    (spaced_tmp / "b dir").mkdir()
    for rel in ["z.PNG", "b dir/a.jpg", "notes.txt", ".hidden.png"]:
        (spaced_tmp / rel).write_bytes(b"x")
    found = [p.relative_to(spaced_tmp).as_posix() for p in find_images(spaced_tmp)]
    assert found == ["b dir/a.jpg", "z.PNG"]


def test_find_images_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="not found") as missing:
        find_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files") as empty:
        find_images(tmp_path / "empty")
    assert "\n" not in str(missing.value) + str(empty.value)


def test_skip_log_merges_processes_exactly(tmp_path, monkeypatch):
    log = SkipLog(tmp_path)
    log.record(tmp_path / "a.png", "corrupt")
    log.record(tmp_path / "a.png", "corrupt")  # same process: once
    monkeypatch.setattr("os.getpid", lambda: 999_999)  # as another worker would
    other = SkipLog(tmp_path)
    other.record(tmp_path / "a.png", "corrupt")
    other.record(tmp_path / "b.png", "empty file")
    assert log.finalize() == 2
    lines = (tmp_path / "skipped.txt").read_text().splitlines()
    assert lines[0].startswith("# 2 file(s)") and len(lines) == 3
    assert not (tmp_path / ".skipped").exists()
    # a resumed run adds to the same list without double counting
    SkipLog(tmp_path).record(tmp_path / "b.png", "empty file")
    assert SkipLog(tmp_path).finalize() == 2


def test_median_short_side_reads_headers_and_skips_bad_files(tmp_path):
    from skimage import data as skdata

    photo = Image.fromarray(skdata.astronaut())  # a real 512 x 512 photo
    paths = []
    for i, (w, h) in enumerate([(28, 40), (64, 30), (100, 90)]):
        paths.append(tmp_path / f"{i}.png")
        photo.resize((w, h)).save(paths[-1])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    items = [*paths, tmp_path / "bad.png", photo.resize((20, 50))]
    assert median_short_side(items) == 30  # sides 20, 28, 30, 90 (bad left out): upper median
    assert median_short_side([tmp_path / "bad.png"]) is None
    assert median_short_side(paths, sample=1) == 28  # only the first of an even spread
