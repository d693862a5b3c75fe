"""SimMIM encoder weights (``encoder.safetensors``) initialise the detector's backbone: every
backbone tensor comes from the file, only the neck and head are new; at another input size the
position embeddings are resampled, not re-initialised."""

from __future__ import annotations

import pytest
import torch
from timm.layers import resample_abs_pos_embed

from simmim_deploy.core.errors import UserError
from simmim_deploy.models.checkpoint import save_encoder
from simmim_deploy.models.detector import build_detector
from simmim_deploy.models.simmim import build_simmim

VIT = "vit_nano_patch8_32"


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    torch.manual_seed(123)  # a different draw from the detector's own random init below
    simmim = build_simmim(VIT)
    with torch.no_grad():  # move off timm's init so a re-initialised tensor cannot pass
        for p in simmim.encoder.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path_factory.mktemp("enc") / "encoder.safetensors"
    save_encoder(simmim, path, {"model_name": VIT})
    return path, {k: v.clone() for k, v in simmim.encoder.state_dict().items()}


def _split(model):
    state = model.state_dict()
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    others = {k for k in state if not k.startswith("backbone.")}
    return backbone, others


def test_all_backbone_tensors_load_and_only_neck_and_head_are_new(encoder_file):
    path, encoder = encoder_file
    torch.manual_seed(0)
    model = build_detector(VIT, 3, 32, pretrained=str(path))
    backbone, others = _split(model)
    assert set(backbone) == set(encoder)  # nothing missing, nothing left over
    for key, value in encoder.items():
        torch.testing.assert_close(backbone[key], value, rtol=0, atol=0, msg=key)
    assert others and all(k.startswith(("neck.", "head.")) for k in others)


def test_backbone_loads_at_a_larger_input_size_with_resampled_positions(encoder_file):
    path, encoder = encoder_file
    model = build_detector(VIT, 3, 64, pretrained=str(path))  # 8x8 tokens instead of 4x4
    backbone, _ = _split(model)
    assert set(backbone) == set(encoder)
    for key, value in encoder.items():
        if key != "pos_embed":
            torch.testing.assert_close(backbone[key], value, rtol=0, atol=0, msg=key)
    prefix = model.backbone.num_prefix_tokens
    expected = resample_abs_pos_embed(encoder["pos_embed"], (8, 8), num_prefix_tokens=prefix)
    assert backbone["pos_embed"].shape == expected.shape == (1, prefix + 64, 48)
    torch.testing.assert_close(backbone["pos_embed"], expected)
    # and the detector runs at that size
    boxes, scores, labels, num = model.eval()(torch.randn(2, 3, 64, 64))
    assert boxes.shape[0] == 2 and num.shape == (2,)


def test_encoder_of_another_model_is_refused(encoder_file):
    path, _ = encoder_file
    with pytest.raises(UserError, match="check --model"):
        build_detector("vit_micro_patch8_64", 3, 64, pretrained=str(path))
