"""Encoder checkpoints: our safetensors, official SimMIM files, timm state dicts, no pickle."""

from __future__ import annotations

import collections
import re

import pytest
import timm
import torch

from simmim_deploy import build_simmim
from simmim_deploy.core.errors import UserError
from simmim_deploy.models.checkpoint import (
    load_encoder_into,
    load_encoder_state,
    load_simmim_checkpoint_for_init,
    read_encoder_meta,
    save_encoder,
)

SWIN = "swin_nano_patch4_window4_64"
VIT = "vit_micro_patch8_64"


class NotATensor:
    """Any pickled object: must never be unpickled by our loaders."""


def _timm(name: str, **kwargs) -> torch.nn.Module:
    return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _official_swin_keys(sd: dict) -> dict:
    """timm Swin names -> official Swin names (downsample at the end of the previous stage)."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", k)
        out[k] = v
    return out


def test_save_and_load_own_safetensors(spaced_tmp):
    model = build_simmim(VIT)
    path = save_encoder(model, spaced_tmp / "encoder.safetensors", {"epochs": 3})
    meta = read_encoder_meta(path)
    assert meta["model_name"] == VIT and meta["img_size"] == 64 and meta["patch_size"] == 8
    assert meta["epochs"] == 3
    state = load_encoder_state(path)
    fresh = _timm(VIT)
    fresh.load_state_dict(state, strict=True)
    assert _same(fresh.state_dict(), model.encoder.state_dict())
    assert not list(spaced_tmp.glob(".*tmp"))  # atomic write left no temporary


def test_official_simmim_swin_checkpoint(tmp_path):
    torch.manual_seed(0)
    src = build_simmim(SWIN)
    enc = _official_swin_keys(src.encoder.state_dict())
    official = {f"encoder.{k}": v for k, v in enc.items()}
    official["encoder.mask_token"] = src.mask_token.detach()
    official["encoder.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, dtype=int)
    official.update({f"decoder.{k}": v for k, v in src.decoder.state_dict().items()})
    path = tmp_path / "simmim_pretrain__swin_base__img192_window6__100ep.pth"
    torch.save({"model": official, "optimizer": {}, "epoch": 99}, path)

    state = load_encoder_state(path)
    assert not any(k.startswith(("encoder.", "decoder.")) or k == "mask_token" for k in state)
    fresh = _timm(SWIN)
    report = load_encoder_into(fresh, state)
    assert report["missing"] == [] and report["unexpected"] == []
    assert _same(fresh.state_dict(), src.encoder.state_dict())

    target = build_simmim(SWIN)
    report = load_simmim_checkpoint_for_init(target, path)
    assert report["missing"] == []
    assert _same(target.state_dict(), src.state_dict())


def test_plain_timm_state_dicts(tmp_path):
    src = _timm(VIT)
    sd = src.state_dict()
    variants = {
        "raw.pth": sd,
        "wrapped.pt": {"state_dict": sd, "epoch": 1},
        "ddp.pth": {"model": {f"module.{k}": v for k, v in sd.items()}},
    }
    for name, obj in variants.items():
        torch.save(obj, tmp_path / name)
        fresh = _timm(VIT)
        fresh.load_state_dict(load_encoder_state(tmp_path / name), strict=True)
        assert _same(fresh.state_dict(), sd), name
    from safetensors.torch import save_file

    save_file(sd, str(tmp_path / "timm.safetensors"))
    assert _same(load_encoder_state(tmp_path / "timm.safetensors"), sd)


def test_classifier_head_is_reported_not_fatal():
    src = timm.create_model(VIT, pretrained=False, num_classes=10)
    report = load_encoder_into(_timm(VIT), src.state_dict())
    assert sorted(report["unexpected"]) == ["head.bias", "head.weight"]
    assert report["missing"] == []


def test_pos_embed_resized_to_new_grid():
    src = _timm(VIT)  # 64 px, 8x8 grid
    dst = _timm(VIT, img_size=96)  # 12x12 grid
    report = load_encoder_into(dst, src.state_dict())
    assert report["resized"] == ["pos_embed"]
    assert dst.pos_embed.shape == (1, 1 + 144, 96)
    assert torch.equal(dst.pos_embed[:, :1], src.pos_embed[:, :1])  # class token untouched
    # a constant position embedding stays constant under interpolation
    with torch.no_grad():
        src.pos_embed[:, 1:] = 0.25
    load_encoder_into(dst, src.state_dict())
    assert torch.allclose(dst.pos_embed[:, 1:], torch.full_like(dst.pos_embed[:, 1:], 0.25))
    with torch.no_grad():
        dst(torch.randn(1, 3, 96, 96))


def test_swin_relative_position_tables_resized_to_new_window():
    src = _timm(SWIN)  # window 4
    dst = _timm(SWIN, window_size=2)
    report = load_encoder_into(dst, src.state_dict())
    old, new = src.state_dict(), dst.state_dict()
    tables = [k for k in old if k.endswith("relative_position_bias_table")]
    changed = [k for k in tables if old[k].shape != new[k].shape]  # last stage: window = grid = 2
    assert len(changed) == 3 and sorted(report["resized"]) == sorted(changed)
    assert report["missing"] == [] and report["unexpected"] == []
    assert dst.layers[0].blocks[0].attn.relative_position_bias_table.shape[0] == 9  # (2*2-1)^2


def test_beit_shared_relative_position_bias_is_copied_to_every_block():
    small = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3)
    src = _timm(
        "beit_base_patch16_224", use_shared_rel_pos_bias=True, use_rel_pos_bias=False, **small
    )
    dst = _timm("beit_base_patch16_224", **small)  # timm default: one table per block
    report = load_encoder_into(dst, src.state_dict())
    assert not any("relative_position_bias_table" in k for k in report["missing"])
    shared = src.rel_pos_bias.relative_position_bias_table
    for blk in dst.blocks:
        assert torch.equal(blk.attn.relative_position_bias_table, shared)


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": _timm(VIT).state_dict(), "extra": NotATensor()}, path)
    with pytest.raises(UserError, match="pickled objects are refused"):
        load_encoder_state(path)
    ordered = tmp_path / "ordered.pth"  # plain containers of tensors are fine
    torch.save(collections.OrderedDict(_timm(VIT).state_dict()), ordered)
    assert load_encoder_state(ordered)


def test_unreadable_and_mismatched_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_encoder_state(tmp_path / "missing.pth")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="cannot read"):
        load_encoder_state(junk)
    with pytest.raises(UserError, match="does not fit|matches"):
        load_encoder_into(_timm(VIT), _timm("vit_nano_patch8_32").state_dict())
    with pytest.raises(UserError, match="no tensor"):
        load_encoder_into(_timm(VIT), {"foo": torch.zeros(3)})
