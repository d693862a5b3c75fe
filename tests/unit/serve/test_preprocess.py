"""Serving preprocessing equals the torchvision eval pipeline; letterbox maps boxes back."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from simmim_deploy.core.boxes import boxes_to_original
from simmim_deploy.serve.images import ImageError, ImageTooLarge, load_image
from simmim_deploy.serve.postprocess import topk
from simmim_deploy.serve.preprocess import PreprocessSpec, letterbox, resize_center_crop
from tests.unit.serve.conftest import real_photos

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ODD_SIZES = [(37, 53), (101, 67), (33, 31), (250, 17), (20, 20)]


def _torchvision(img: Image.Image, resize: int, crop: int, interpolation: str):
    from torchvision import transforms as T

    mode = getattr(T.InterpolationMode, interpolation.upper())
    pipe = T.Compose(
        [T.Resize(resize, mode), T.CenterCrop(crop), T.ToTensor(), T.Normalize(MEAN, STD)]
    )
    return pipe(img).numpy()


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size", ODD_SIZES)
def test_resize_center_crop_equals_torchvision(interpolation: str, size: tuple[int, int]) -> None:
    crop = 32
    resize = int(crop / 0.875)
    spec = PreprocessSpec("resize_center_crop", interpolation, resize=resize, crop=crop)
    for photo in real_photos()[:2]:
        img = Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS)
        ours = resize_center_crop(img, spec)
        ref = _torchvision(img, resize, crop, interpolation)
        assert ours.shape == ref.shape == (3, crop, crop)
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, ref)


def test_crop_larger_than_resize_pads_like_torchvision() -> None:
    img = Image.fromarray(real_photos()[0]).resize((41, 29))
    spec = PreprocessSpec("resize_center_crop", "bilinear", resize=20, crop=32)
    np.testing.assert_array_equal(
        resize_center_crop(img, spec), _torchvision(img, 20, 32, "bilinear")
    )


def test_letterbox_pads_bottom_right_and_maps_boxes_back() -> None:
    img = Image.fromarray(real_photos()[1]).resize((100, 50))  # landscape 2:1
    spec = PreprocessSpec("letterbox", "bilinear", size=32, pad_value=-9.0)
    arr, lb = letterbox(img, spec)
    assert arr.shape == (3, 32, 32)
    assert (arr[:, 16:, :] == -9.0).all() and (arr[:, :16, :] != -9.0).any()
    assert lb.original == (100, 50) and lb.resized == (32, 16) and lb.pad == (0, 0)
    assert lb.scale == pytest.approx(0.32)
    boxes_in = np.array([[0, 0, 16, 8], [8, 4, 40, 40]], dtype=np.float32)
    back = boxes_to_original(boxes_in, lb.scale, lb.pad, lb.original)
    np.testing.assert_allclose(back[0], [0, 0, 50, 25])
    np.testing.assert_allclose(back[1], [25, 12.5, 100, 50])  # clipped to the image


def test_topk_orders_scores_and_names_classes() -> None:
    logits = np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]], dtype=np.float32)
    out = topk(logits, 2, ["a", "b", "c"])
    assert [c["label"] for c in out[0]] == ["b", "c"]
    assert out[1][0] == {"label": "a", "index": 0, "score": pytest.approx(0.98670, abs=1e-4)}
    assert sum(c["score"] for c in topk(logits, 9, ["a", "b", "c"])[0]) == pytest.approx(1.0)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_training_loader_and_runtime_decode_every_mode_alike(tmp_path) -> None:
    """One ``core.preprocess.to_rgb`` behind both decoders; alpha on white, 16 bit scaled."""
    from simmim_deploy.data.images import load_rgb

    photo = Image.fromarray(real_photos()[2]).resize((24, 16))
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((24, 16)))
    palette = photo.convert("P")
    palette.info["transparency"] = 3
    gray16 = Image.fromarray((np.asarray(photo.convert("L"), np.uint16) * 250).astype(np.uint16))
    cases = {"l.png": photo.convert("L"), "rgba.png": rgba, "la.png": photo.convert("LA"),
             "p.png": palette, "cmyk.tiff": photo.convert("CMYK"), "i16.png": gray16,
             "one.png": photo.convert("1")}  # fmt: skip
    for name, img in cases.items():
        img.save(tmp_path / name)
        ours = np.asarray(load_image((tmp_path / name).read_bytes()))
        theirs = np.asarray(load_rgb(tmp_path / name))
        np.testing.assert_array_equal(ours, theirs, err_msg=name)
    top = np.asarray(load_image((tmp_path / "rgba.png").read_bytes()))[0]
    assert (top >= 240).all(), "(nearly) transparent pixels composite on white"
    wide = np.asarray(load_image((tmp_path / "i16.png").read_bytes()))
    assert wide.max() > 200 and wide.dtype == np.uint8, "16-bit values are scaled, not clipped"


def test_decoding_modes_exif_and_limits() -> None:
    photo = Image.fromarray(real_photos()[0]).resize((40, 20))
    for mode in ("L", "RGBA", "P", "CMYK", "I;16"):
        fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
        img = load_image(
            _encode(
                photo.convert(mode) if mode != "I;16" else photo.convert("L").convert("I;16"), fmt
            )
        )
        assert img.mode == "RGB" and img.size == (40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rotated = load_image(_encode(photo, "JPEG", exif=exif.tobytes()))
    assert rotated.size == (20, 40), "EXIF orientation must be applied"
    with pytest.raises(ImageTooLarge):
        load_image(_encode(Image.new("L", (3000, 3000)), "PNG"), max_pixels=1_000_000)
    data = _encode(photo, "JPEG")
    for bad in (b"", b"not an image at all", data[: len(data) // 2]):
        with pytest.raises(ImageError):
            load_image(bad)


@pytest.mark.parametrize(
    ("mean", "std"),
    [(MEAN, STD), ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ((0.1, 0.7, 0.33), (0.9, 0.05, 3.0))],
)
def test_normalize_table_equals_totensor_normalize_at_every_level(mean, std) -> None:
    """normalize() looks uint8 levels up in a table: every level of every channel must give
    torchvision's bits (ToTensor + Normalize), and a non-uint8 input takes the arithmetic path."""
    from torchvision import transforms as T

    from simmim_deploy.core.preprocess import normalize

    levels = np.stack([np.roll(np.arange(256, dtype=np.uint8), 85 * c) for c in range(3)], -1)
    hwc = np.ascontiguousarray(levels.reshape(16, 16, 3))
    spec = PreprocessSpec("resize_center_crop", resize=16, crop=16, mean=mean, std=std)
    ours = normalize(hwc, spec)
    ref = T.Normalize(mean, std)(T.ToTensor()(Image.fromarray(hwc))).numpy()
    assert ours.dtype == np.float32 and ours.flags.c_contiguous and ours.shape == (3, 16, 16)
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(normalize(hwc.astype(np.float32), spec), ref)
    assert ours.flags.writeable and ours.flags.owndata  # a fresh array, not a view of the table
