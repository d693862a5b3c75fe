"""Every shipped detection recipe loads into ``DetectConfig`` and builds its detector's head."""

from __future__ import annotations

from pathlib import Path

import pytest

from simmim_deploy.core.config import load_config
from simmim_deploy.models.detector import HeadConfig
from simmim_deploy.train.detect_config import DetectConfig

RECIPES = sorted((Path(__file__).resolve().parents[3] / "train").glob("detect_*.yaml"))


def test_the_recipes_are_there():
    assert "detect_vit_micro_builtin.yaml" in {p.name for p in RECIPES}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_loads_and_its_pyramid_fits_the_input(recipe: Path, tmp_path: Path):
    cfg = load_config(DetectConfig, recipe, {"out": str(tmp_path / "run"), "data": "x"})
    HeadConfig(strides=tuple(cfg.strides), range_mult=cfg.range_mult)
    if cfg.img_size is not None:
        assert all(cfg.img_size % s == 0 for s in cfg.strides)
