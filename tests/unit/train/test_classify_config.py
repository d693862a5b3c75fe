"""ClassifyConfig: conflicts refused, mode/family defaults resolved, shipped recipes load."""

from __future__ import annotations

from pathlib import Path

import pytest

from simmim_deploy.core.config import load_config
from simmim_deploy.core.errors import UserError
from simmim_deploy.train.classify_config import ClassifyConfig, resolve_defaults

RECIPES = sorted((Path(__file__).resolve().parents[3] / "train").glob("classify_*.yaml"))


def test_conflicting_options_are_refused() -> None:
    with pytest.raises(UserError, match="labels-per-class"):
        ClassifyConfig(data="d", out="o", labels_per_class=10, label_fraction=0.1)
    with pytest.raises(UserError, match="layer-decay"):
        ClassifyConfig(data="d", out="o", mode="linear", layer_decay=0.7)
    with pytest.raises(UserError, match="even"):
        ClassifyConfig(data="d", out="o", batch_size=31)
    ClassifyConfig(data="d", out="o", batch_size=31, mixup=0.0, cutmix=0.0)  # no mixup: fine
    with pytest.raises(UserError, match="warmup"):
        ClassifyConfig(data="d", out="o", epochs=5, warmup_epochs=5)


def test_defaults_follow_mode_and_family_but_never_override() -> None:
    swin = "swin_tiny_patch4_window7_224"
    enc = "encoder.safetensors"
    full = resolve_defaults(
        ClassifyConfig(data="d", out="o", model=swin, epochs=100, pretrained=enc)
    )
    assert (full.layer_decay, full.mixup, full.randaug) == (0.9, 0.8, "rand-m9-mstd0.5-inc1")
    assert full.warmup_epochs == 20.0  # official, 100 epochs
    vit = resolve_defaults(ClassifyConfig(data="d", out="o", epochs=10, mixup=0.2, pretrained=enc))
    assert (vit.layer_decay, vit.mixup, vit.warmup_epochs) == (0.65, 0.2, 2.0)
    # from scratch there is nothing pre-trained to keep: no layer-wise decay unless given
    assert resolve_defaults(ClassifyConfig(data="d", out="o")).layer_decay == 1.0
    given = ClassifyConfig(data="d", out="o", layer_decay=0.8)
    assert resolve_defaults(given).layer_decay == 0.8
    linear = resolve_defaults(ClassifyConfig(data="d", out="o", mode="linear"))
    assert (linear.mixup, linear.drop_path, linear.layer_decay, linear.head_norm) == (
        0.0,
        0.0,
        None,
        True,
    )
    assert vit.head_norm is False  # full fine-tune: the plain head of the official recipe
    assert (
        resolve_defaults(ClassifyConfig("d", "o", mode="linear", head_norm=False)).head_norm
        is False
    )
    assert full.lr == 1.25e-3 and linear.lr == 1e-2  # per 512 images, the mode's
    assert resolve_defaults(ClassifyConfig(data="d", out="o", lr=3e-3)).lr == 3e-3


def test_old_recipe_keys_name_the_new_one() -> None:
    with pytest.raises(UserError, match="'base_lr' was renamed: use 'lr'"):
        load_config(ClassifyConfig, None, {"data": "d", "out": "o", "base_lr": 1e-3})
    with pytest.raises(UserError, match="'absolute_lr'.*lr_scaling: none"):
        load_config(ClassifyConfig, None, {"data": "d", "out": "o", "absolute_lr": 1e-3})
    with pytest.raises(UserError, match="^--data is required"):
        load_config(ClassifyConfig, None, {"out": "o"})


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_shipped_recipes_load(recipe: Path) -> None:
    cfg = load_config(ClassifyConfig, recipe, {"out": "runs/x"})
    assert cfg.epochs >= 1 and cfg.model


def test_small_sets_drop_the_imagenet_regularisers_unless_given() -> None:
    cfg = ClassifyConfig(data="d", out="o", mixup=0.5)
    small = resolve_defaults(cfg, num_train=100)
    assert (small.cutmix, small.reprob, small.crop_scale_min) == (0.0, 0.0, 0.35)
    assert small.randaug == "none"
    assert small.mixup == 0.5  # given explicitly: kept
    assert small.lr == 1.25e-3  # from scratch: the recipe's LR
    tuned = resolve_defaults(ClassifyConfig(data="d", out="o", pretrained="e.safetensors"), 100)
    assert tuned.lr == 2.5e-3 and tuned.layer_decay == 0.65  # pre-trained: twice, with decay
    given = ClassifyConfig(data="d", out="o", pretrained="e.safetensors", lr=1e-3)
    assert resolve_defaults(given, 100).lr == 1e-3
    assert resolve_defaults(ClassifyConfig("d", "o", pretrained="e.st"), 50_000).lr == 1.25e-3
    large = resolve_defaults(cfg, num_train=50_000)
    assert (large.cutmix, large.reprob, large.crop_scale_min) == (1.0, 0.25, 0.08)
    unknown = resolve_defaults(cfg)  # size unknown: the official recipe
    assert unknown.randaug == "rand-m9-mstd0.5-inc1"
    probe = resolve_defaults(ClassifyConfig(data="d", out="o", mode="linear"), num_train=100)
    assert (probe.randaug, probe.crop_scale_min) == ("none", 0.08)


def test_small_images_get_milder_crops_on_small_sets() -> None:
    cfg = ClassifyConfig(data="d", out="o")
    assert resolve_defaults(cfg, 100, short_side=28).crop_scale_min == 0.6  # digits
    assert resolve_defaults(cfg, 100, short_side=64).crop_scale_min == 0.35  # photo tiles
    assert resolve_defaults(cfg, 50_000, short_side=28).crop_scale_min == 0.08  # large: official
    given = ClassifyConfig(data="d", out="o", crop_scale_min=0.2)
    assert resolve_defaults(given, 100, short_side=28).crop_scale_min == 0.2
