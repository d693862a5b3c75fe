"""Structured pruning: multiples of 8, reload from pruned_arch with weights_only, same outputs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import timm
import torch

import simmim_deploy.models  # noqa: F401
from simmim_deploy.export.prune import distill, prune_model
from simmim_deploy.models.pruned_arch import apply_pruned_arch, find_blocks

pytest.importorskip("torch_pruning")


def _vit():
    # ViT-S widths (head_dim 64, MLP 1536) at 32 px and depth 2: real head/channel arithmetic.
    return timm.create_model(
        "vit_small_patch16_224", num_classes=10, img_size=32, patch_size=16, depth=2
    ).eval()


def test_prune_shapes_and_reload(tmp_path) -> None:
    torch.manual_seed(0)
    model = _vit()
    teacher = copy.deepcopy(model)
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    arch = prune_model(model, 32, ratio=0.3, drop_blocks=1, images=x)
    assert len(arch["dropped"]) == 1
    for entry in arch["blocks"].values():
        assert entry["mlp_hidden"] % 8 == 0 and entry["mlp_hidden"] < 1536
        assert entry["num_heads"] < 6 and (entry["num_heads"] * entry["head_dim"]) % 8 == 0
    losses = distill(model, teacher, x, epochs=2)
    assert len(losses) == 2 and all(np.isfinite(losses))
    path = tmp_path / "pruned.pt"
    torch.save({"model": model.state_dict(), "meta": {"pruned_arch": arch}}, path)
    ckpt = torch.load(path, weights_only=True)
    fresh = apply_pruned_arch(_vit(), ckpt["meta"]["pruned_arch"])
    fresh.load_state_dict(ckpt["model"])
    with torch.no_grad():
        torch.testing.assert_close(fresh(torch.from_numpy(x)), model(torch.from_numpy(x)))


def test_swin_mlp_pruning() -> None:
    model = timm.create_model("swin_nano_patch4_window4_64", num_classes=10).eval()
    before = {n: b.mlp.fc1.out_features for n, b in find_blocks(model).items()}
    arch = prune_model(model, 64, ratio=0.3)
    for name, entry in arch["blocks"].items():
        assert entry["mlp_hidden"] % 8 == 0 and entry["mlp_hidden"] <= before[name]
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
