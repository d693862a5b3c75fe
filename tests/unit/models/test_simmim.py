"""SimMIM wrapper and adapter: parity with timm, shapes per family, masking semantics."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from simmim_deploy import MaskGenerator, SimMIM, build_simmim
from simmim_deploy.core.errors import UserError
from simmim_deploy.models import adapter

# small members of every supported family (timm kwargs override the registered sizes)
TINY = {
    "vit": ("vit_nano_patch8_32", {}),
    "vit_reg": ("vit_nano_patch8_32", {"reg_tokens": 2}),
    "vit_dynamic": ("vit_nano_patch8_32", {"dynamic_img_size": True}),
    "beit": (
        "beit_base_patch16_224",
        dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3),
    ),
    "eva": (
        "eva02_tiny_patch14_224",
        dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3),
    ),
    "swin": ("swin_nano_patch4_window4_64", {}),
    "swinv2": (
        "swinv2_tiny_window8_256",
        dict(img_size=64, window_size=4, embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8)),
    ),
}


def _build(key: str) -> SimMIM:
    torch.manual_seed(0)
    name, kwargs = TINY[key]
    return build_simmim(name, **kwargs).eval()


def _mask(model: SimMIM, batch: int, seed: int = 0) -> torch.Tensor:
    gen = MaskGenerator(model.img_size, model.patch_size * 2, model.patch_size, 0.6)
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([gen(rng) for _ in range(batch)]))


def _timm_feature_map(encoder, images):
    """Reference from timm's own forward_features, reshaped independently of the adapter."""
    feats = encoder.forward_features(images)
    if feats.ndim == 4:  # NHWC
        return feats.permute(0, 3, 1, 2)
    n_prefix = encoder.num_prefix_tokens
    stride = adapter.encoder_stride(encoder)
    h, w = images.shape[2] // stride, images.shape[3] // stride
    return feats[:, n_prefix:].reshape(images.shape[0], h, w, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize("key", list(TINY))
def test_zero_mask_equals_plain_timm_encoder(key):
    model = _build(key)
    x = torch.randn(2, 3, model.img_size, model.img_size)
    zero = torch.zeros(2, model.img_size // model.patch_size, model.img_size // model.patch_size)
    with torch.no_grad():
        want = _timm_feature_map(model.encoder, x)
        got = adapter.forward_masked_feature_map(model.encoder, x, zero, model.mask_token)
        plain = model.forward_feature_map(x)
    assert got.shape == want.shape == plain.shape
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(plain, want, atol=1e-5)


@pytest.mark.parametrize(
    ("key", "stride", "channels"),
    [("vit", 8, 48), ("beit", 8, 48), ("swin", 32, 192), ("swinv2", 32, 192)],
)
def test_decoder_shapes(key, stride, channels):
    model = _build(key)
    assert model.encoder_stride == stride and model.num_features == channels
    conv = model.decoder[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (
        channels,
        stride**2 * 3,
        (1, 1),
    )
    x = torch.randn(2, 3, model.img_size, model.img_size)
    with torch.no_grad():
        out = model(x, _mask(model, 2))
    assert out.shape == x.shape


@pytest.mark.parametrize("key", ["vit", "swin"])
def test_encoder_state_dict_loads_into_timm_strict(key):
    model = _build(key)
    name, kwargs = TINY[key]
    fresh = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    fresh.load_state_dict(model.encoder.state_dict(), strict=True)
    assert not any(k.startswith("encoder.") for k in model.encoder.state_dict())
    assert set(model.state_dict()) == {f"encoder.{k}" for k in fresh.state_dict()} | {
        "mask_token",
        "decoder.0.weight",
        "decoder.0.bias",
    }


def test_mask_token_init_and_attributes():
    model = _build("swin")
    assert model.mask_token.shape == (1, 1, 24)
    assert 0.005 < model.mask_token.std().item() < 0.05  # trunc_normal_(std=0.02)
    assert model.patch_size == 4 and model.img_size == 64
    assert model.data_config["input_size"] == (3, 64, 64)
    assert model.model_name == "swin_nano_patch4_window4_64"


def test_blending_touches_only_masked_tokens():
    # with no transformer blocks every token is processed on its own, so the effect of the
    # mask stays where it was put: visible tokens unchanged, masked ones independent of pixels
    model = build_simmim("vit_nano_patch8_32", depth=0).eval()
    x1, x2 = torch.randn(2, 1, 3, 32, 32)
    mask = _mask(model, 1)
    with torch.no_grad():
        plain = model.forward_feature_map(x1)
        m1 = adapter.forward_masked_feature_map(model.encoder, x1, mask, model.mask_token)
        m2 = adapter.forward_masked_feature_map(model.encoder, x2, mask, model.mask_token)
    where = mask.bool()[:, None].expand_as(plain)
    assert torch.equal(m1[~where], plain[~where])
    assert not torch.allclose(m1[where], plain[where])
    assert torch.allclose(m1[where], m2[where])  # masked tokens carry no pixel information


def test_mask_changes_reconstruction_and_gradients_reach_mask_token():
    model = _build("vit")
    x = torch.randn(2, 3, 32, 32)
    mask = _mask(model, 2)
    out = model(x, mask)
    with torch.no_grad():
        unmasked = model(x, torch.zeros_like(mask))
    assert not torch.allclose(out, unmasked)
    out.abs().mean().backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0


def test_wrong_mask_shape_is_refused():
    model = _build("vit")
    with pytest.raises(ValueError, match="does not match"):
        model(torch.randn(2, 3, 32, 32), torch.zeros(2, 8, 8))


def test_unknown_model_name_suggests_close_match():
    with pytest.raises(UserError, match="did you mean 'vit_small_patch16_224'"):
        build_simmim("vit_smal_patch16_224")


def test_unsupported_family_is_refused():
    with pytest.raises(UserError, match="not supported"):
        build_simmim("resnet10t")


def test_drop_path_defaults_follow_recipe():
    vit = build_simmim("vit_nano_patch8_32")
    assert vit.encoder.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    swin = build_simmim("swin_nano_patch4_window4_64")
    assert all(
        not hasattr(b.drop_path1, "drop_prob") or b.drop_path1.drop_prob == 0.0
        for stage in swin.encoder.layers
        for b in stage.blocks
    )
    custom = build_simmim("vit_nano_patch8_32", drop_path_rate=0.0)
    assert not hasattr(custom.encoder.blocks[-1].drop_path1, "drop_prob")


def test_official_geometries_build():
    # the recipes' real sizes: construction only (cheap), plus one ViT-T/16 forward at 192
    vit = build_simmim("vit_tiny_patch16_224", img_size=192).eval()
    assert (vit.patch_size, vit.encoder_stride, vit.img_size) == (16, 16, 192)
    gen = MaskGenerator(192, 32, vit.patch_size)
    mask = torch.from_numpy(gen(np.random.default_rng(0)))[None]
    with torch.no_grad():
        assert vit(torch.randn(1, 3, 192, 192), mask).shape == (1, 3, 192, 192)
    swin = build_simmim("swin_base_patch4_window7_224", img_size=192, window_size=6)
    assert (swin.patch_size, swin.encoder_stride, swin.num_features) == (4, 32, 1024)
    assert swin.data_config["input_size"] == (3, 192, 192)
    beit = build_simmim("beit_base_patch16_224")
    assert (beit.patch_size, beit.encoder_stride, beit.num_features) == (16, 16, 768)
