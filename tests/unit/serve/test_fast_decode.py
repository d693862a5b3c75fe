"""Reduced-size JPEG decoding (``--fast-decode``): smaller decodes, same geometry, close pixels."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from simmim_deploy.serve.images import decode_image, load_image
from simmim_deploy.serve.preprocess import PreprocessSpec
from simmim_deploy.serve.runtime import prepare_image
from tests.unit.serve.conftest import real_photos

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLS = PreprocessSpec.eval_transform("classification", 112, MEAN, STD, "bicubic", 0.875)  # 128
DET = PreprocessSpec.eval_transform("detection", 128, MEAN, STD, "bilinear", 1.0)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(size: tuple[int, int], index: int = 2) -> Image.Image:
    return Image.fromarray(real_photos()[index]).resize(size, Image.Resampling.LANCZOS)


def test_jpeg_is_decoded_smaller_but_never_below_min_side() -> None:
    for size, scale in (((1024, 768), 4), ((640, 480), 2), ((2048, 1536), 8), ((200, 150), 1)):
        data = _encode(_photo(size), "JPEG", quality=90)
        got = decode_image(data, min_side=CLS.resize)
        assert (got.width, got.height) == size, "the full image's size is reported"
        assert got.image.size == (-(-size[0] // scale), -(-size[1] // scale))
        assert min(got.image.size) >= min(CLS.resize, *size)
        assert decode_image(data).image.size == size, "min_side 0: full decode"


def test_other_formats_and_exif_rotated_jpegs() -> None:
    png = decode_image(_encode(_photo((1024, 768)), "PNG"), min_side=128)
    assert png.image.size == (1024, 768), "only JPEG has DCT scaling"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: displayed rotated by 90 degrees
    data = _encode(_photo((1024, 768)), "JPEG", exif=exif.tobytes())
    got = decode_image(data, min_side=128)
    assert (got.width, got.height) == (768, 1024), "upright size of the full image"
    assert got.image.size == (192, 256), "upright, 1/4 scale"
    full = np.asarray(load_image(data).resize(got.image.size, Image.Resampling.BOX), np.float32)
    assert np.abs(np.asarray(got.image, np.float32) - full).mean() < 4.0, "same orientation"


def test_fast_classifier_input_is_close_to_the_full_decode() -> None:
    for index in range(4):
        data = _encode(_photo((1024, 768), index), "JPEG", quality=90)
        fast = prepare_image(data, CLS, fast_decode=True)
        full = prepare_image(data, CLS, fast_decode=False)
        assert (fast.width, fast.height) == (full.width, full.height) == (1024, 768)
        diff = np.abs(fast.array - full.array)
        assert fast.array.shape == full.array.shape == (3, 112, 112)
        assert diff.mean() < 0.03, f"photo {index}: mean |diff| {diff.mean():.4f} (std units)"
        assert diff.mean() > 0, "a reduced decode really happened"


def test_detection_and_small_images_always_decode_in_full() -> None:
    data = _encode(_photo((1024, 768)), "JPEG", quality=90)
    fast, full = (
        prepare_image(data, DET, fast_decode=True),
        prepare_image(data, DET, fast_decode=False),
    )
    np.testing.assert_array_equal(fast.array, full.array)
    assert fast.letterbox == full.letterbox
    small = _encode(_photo((150, 140)), "JPEG", quality=90)  # already near the resize size
    np.testing.assert_array_equal(
        prepare_image(small, CLS, fast_decode=True).array,
        prepare_image(small, CLS, fast_decode=False).array,
    )


def test_runtime_reports_the_decode_it_uses(cls_bundle, det_bundle) -> None:
    from simmim_deploy.serve.runtime import Runtime

    assert Runtime(cls_bundle, "ort-cpu").describe()["decode"] == "fast"
    assert Runtime(cls_bundle, "ort-cpu", fast_decode=False).describe()["decode"] == "full"
    assert Runtime(det_bundle, "ort-cpu").describe()["decode"] == "full"


def test_greyscale_is_resized_in_one_band_with_the_rgb_result() -> None:
    """prepare_image keeps 8-bit greyscale as one band through the resize; the network input
    must be bit-identical to that of the same pixels stored as RGB (both tasks, odd sizes, a
    crop larger than the image, JPEG with fast decoding)."""
    tiny = PreprocessSpec.eval_transform("classification", 48, MEAN, STD, "bicubic", 0.875)
    for size in ((28, 28), (37, 53), (640, 480)):
        grey = _photo(size).convert("L")
        rgb = grey.convert("RGB")
        assert decode_image(_encode(grey, "PNG"), keep_grey=True).image.mode == "L"
        assert decode_image(_encode(grey, "PNG")).image.mode == "RGB"
        for spec in (CLS, DET, tiny):
            ours = prepare_image(_encode(grey, "PNG"), spec)
            ref = prepare_image(_encode(rgb, "PNG"), spec)
            np.testing.assert_array_equal(ours.array, ref.array)
            assert ours.array.shape == (3, *spec.input_hw)
            assert (ours.width, ours.height, ours.letterbox) == (
                ref.width,
                ref.height,
                ref.letterbox,
            )
        jpeg = _encode(grey, "JPEG", quality=90)
        decoded = decode_image(jpeg, min_side=CLS.resize)  # the same DCT-scaled pixels, as RGB
        ours = prepare_image(jpeg, CLS).array
        np.testing.assert_array_equal(ours, prepare_image(_encode(decoded.image, "PNG"), CLS).array)
