"""Every shipped pre-training recipe loads, validates and builds its model (on the meta device)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simmim_deploy.core.config import load_config
from simmim_deploy.core.errors import UserError
from simmim_deploy.data.masking import MaskGenerator
from simmim_deploy.models.simmim import build_simmim
from simmim_deploy.train.pretrain import PretrainConfig

RECIPES = sorted((Path(__file__).resolve().parents[3] / "train").glob("pretrain_*.yaml"))


def test_the_recipes_are_shipped():
    names = {p.name for p in RECIPES}
    assert {
        "pretrain_vit_micro_builtin.yaml",
        "pretrain_vit_base_800ep.yaml",
        "pretrain_swin_base_192_100ep.yaml",
        "pretrain_beit_base_800ep.yaml",
    } <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_builds(recipe):
    cfg = load_config(PretrainConfig, recipe)
    kwargs = {"window_size": cfg.window_size} if cfg.window_size else {}
    with torch.device("meta"):  # no memory, no time: only shapes
        model = build_simmim(
            cfg.model, img_size=cfg.img_size, drop_path_rate=cfg.drop_path, **kwargs
        )
    masks = MaskGenerator(model.img_size, cfg.mask_patch_size, model.patch_size, cfg.mask_ratio)
    assert masks.token_grid * model.patch_size == cfg.img_size


def test_official_values():
    swin = load_config(PretrainConfig, RECIPES[0].parent / "pretrain_swin_base_192_100ep.yaml")
    assert (swin.img_size, swin.window_size, swin.epochs, swin.lr) == (192, 6, 100, 2e-4)
    assert (swin.warmup_epochs, swin.warmup_lr, swin.min_lr, swin.drop_path) == (
        10,
        1e-6,
        1e-5,
        0.0,
    )
    vit = load_config(PretrainConfig, RECIPES[0].parent / "pretrain_vit_base_800ep.yaml")
    assert (vit.schedule, vit.milestones, vit.lr, vit.drop_path) == ("step", (700,), 1e-4, 0.1)


def test_conflicting_options_are_refused():
    with pytest.raises(UserError, match="--warmup-epochs"):
        PretrainConfig(epochs=2, warmup_epochs=5)
    with pytest.raises(UserError, match="--milestones"):
        PretrainConfig(schedule="step")
    with pytest.raises(UserError, match="unknown config key 'mask_ration'.*mask_ratio"):
        load_config(PretrainConfig, None, {"mask_ration": 0.5})
