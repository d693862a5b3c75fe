"""Classifier construction and initialisation from our, official and timm checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from simmim_deploy.core.errors import UserError
from simmim_deploy.models.checkpoint import save_encoder
from simmim_deploy.models.classifier import (
    build_classifier,
    build_classifier_from_meta,
    head_prefixes,
    init_from_pretrained,
    linear_probe_train_mode,
    set_linear_probe,
)
from simmim_deploy.models.simmim import build_simmim

VIT = "vit_nano_patch8_32"
SWIN = "swin_nano_patch4_window4_64"
QKV = "blocks.1.attn.qkv.weight"


def _fresh(model: torch.nn.Module, prefixes: tuple[str, ...]) -> set[str]:
    return {k for k in model.state_dict() if k.startswith(prefixes)}


@pytest.fixture(scope="module")
def vit_simmim():
    torch.manual_seed(0)
    return build_simmim(VIT)


def test_vit_is_mean_pooled_with_fc_norm_and_head_only_missing(tmp_path: Path, vit_simmim) -> None:
    path = save_encoder(vit_simmim, tmp_path / "encoder.safetensors", {"model_name": VIT})
    model = build_classifier(VIT, num_classes=7, pretrained=str(path))
    assert model.global_pool == "avg" and not isinstance(model.fc_norm, torch.nn.Identity)
    assert head_prefixes(model) == ("head.", "fc_norm.")
    torch.testing.assert_close(model.state_dict()[QKV], vit_simmim.encoder.state_dict()[QKV])
    report = init_from_pretrained(model, str(path))
    assert set(report.missing) == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    assert set(report.unexpected) == {"norm.weight", "norm.bias"}  # token norm -> fc_norm
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_official_simmim_checkpoint_strips_encoder_and_drops_decoder(
    spaced_tmp: Path, vit_simmim
) -> None:
    # The official layout: {'model': {'encoder.*', 'encoder.mask_token', 'decoder.*'}, ...}.
    official = {
        "model": {f"encoder.{k}": v for k, v in vit_simmim.encoder.state_dict().items()},
        "epoch": 99,
    }
    official["model"]["encoder.mask_token"] = vit_simmim.mask_token.detach()
    decoder = vit_simmim.decoder.state_dict()
    official["model"].update({f"decoder.{k}": v for k, v in decoder.items()})
    path = spaced_tmp / "simmim_pretrain.pth"
    torch.save(official, path)
    model = build_classifier(VIT, num_classes=3, pretrained=str(path))
    torch.testing.assert_close(model.state_dict()[QKV], vit_simmim.encoder.state_dict()[QKV])
    report = init_from_pretrained(model, str(path))
    assert {k for k in report.missing} == _fresh(model, head_prefixes(model))


def test_timm_state_dict_with_other_head_loads(tmp_path: Path) -> None:
    src = timm.create_model(VIT, num_classes=1000)
    path = tmp_path / "timm.pth"
    torch.save(src.state_dict(), path)
    model = build_classifier(VIT, num_classes=5, pretrained=str(path))
    torch.testing.assert_close(model.state_dict()[QKV], src.state_dict()[QKV])
    assert model.head.weight.shape == (5, 48)
    # the head is freshly initialised and shrunk (BEiT/SimMIM head init scale)
    assert model.head.weight.abs().max() < 1e-3


def test_swin_window_change_resizes_relative_position_tables(tmp_path: Path) -> None:
    torch.manual_seed(0)
    simmim = build_simmim(SWIN)  # window 4 -> tables (2*4-1)^2 = 49 rows
    path = save_encoder(simmim, tmp_path / "encoder.safetensors", {"model_name": SWIN})
    model = build_classifier(SWIN, 4, img_size=128, pretrained=str(path), window_size=8)
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    assert simmim.encoder.state_dict()[key].shape[0] == 49
    assert model.state_dict()[key].shape[0] == 225  # (2*8-1)^2, resized, not re-initialised
    assert head_prefixes(model) == ("head.fc.",)
    report = init_from_pretrained(model, str(path))
    assert set(report.missing) == {"head.fc.weight", "head.fc.bias"}
    q = "layers.1.blocks.0.attn.qkv.weight"
    torch.testing.assert_close(model.state_dict()[q], simmim.encoder.state_dict()[q])
    assert model(torch.randn(1, 3, 128, 128)).shape == (1, 4)


def test_checkpoint_of_another_model_is_refused(tmp_path: Path, vit_simmim) -> None:
    path = save_encoder(vit_simmim, tmp_path / "enc.safetensors", {"model_name": VIT})
    with pytest.raises(UserError, match="check --model"):
        build_classifier("vit_micro_patch8_64", 3, pretrained=str(path))
    with pytest.raises(UserError, match="unknown timm model"):
        build_classifier("vit_nano_patch8_23", 3)


def test_linear_probe_trains_only_head_and_fc_norm() -> None:
    model = build_classifier(VIT, 3, pretrained="none", drop_path_rate=0.1)
    trainable = set(set_linear_probe(model))
    assert trainable == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    model.train()
    linear_probe_train_mode(model)
    assert model.head.training and not model.blocks[0].training
    assert not model.blocks[0].drop_path1.training  # no stochastic depth in a frozen encoder


def test_rebuild_from_meta_matches_architecture() -> None:
    model = build_classifier(SWIN, 4, img_size=128, window_size=8)
    meta = {
        "task": "classification",
        "model_name": SWIN,
        "img_size": 128,
        "num_classes": 4,
        "model_kwargs": {"window_size": 8},
    }
    rebuilt = build_classifier_from_meta(meta)
    rebuilt.load_state_dict(model.state_dict())  # strict: same architecture
    with pytest.raises(UserError, match="lacks"):
        build_classifier_from_meta({"task": "classification", "model_name": SWIN})


@pytest.mark.parametrize("name", [VIT, SWIN])
def test_head_norm_standardises_features_and_round_trips(name: str) -> None:
    torch.manual_seed(0)
    img, kwargs = (64, {"window_size": 4}) if name == SWIN else (32, {})
    model = build_classifier(name, 3, img_size=img, pretrained="none", head_norm=True, **kwargs)
    bn, linear = model.get_classifier()
    assert isinstance(bn, torch.nn.BatchNorm1d) and not bn.affine
    set_linear_probe(model)
    model.train()
    linear_probe_train_mode(model)
    assert bn.training and not model.patch_embed.training  # the parameter-free BN gathers stats
    model(torch.randn(4, 3, img, img))
    assert bn.num_batches_tracked.item() == 1 and bn.running_var.abs().sum() > 0
    meta = {"task": "classification", "model_name": name, "num_classes": 3, "img_size": img}
    meta.update(model_kwargs=kwargs, head={"type": "linear", "norm": "batchnorm"})
    build_classifier_from_meta(meta).load_state_dict(model.state_dict())  # strict
