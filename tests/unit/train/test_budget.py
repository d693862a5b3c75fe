"""Run length, warmup cap, validation cadence and patience chosen from the data size."""

from __future__ import annotations

import pytest

from simmim_deploy.train.budget import choose_batch, plan_budget


def test_small_data_gets_enough_steps_and_early_stopping() -> None:
    # 140 images at batch 32: 4 steps an epoch; 12 epochs would be 48 steps
    plan = plan_budget(
        None, None, base_epochs=12, base_warmup=1.0, steps_per_epoch=4, num_samples=140
    )
    assert plan.epochs == 75 and plan.epochs * 4 >= 300
    assert plan.warmup_epochs == 1.0 and plan.eval_every == 1
    assert plan.patience == 25  # a third of 75 validations
    assert any("epochs 75 (not given)" in n for n in plan.notes)
    assert any("early stopping on" in n for n in plan.notes)


def test_large_data_keeps_the_recipe_and_explicit_values_win() -> None:
    # ImageNet at batch 2048: 625 steps an epoch: the official 100 epochs, 20 warmup, no patience
    plan = plan_budget(
        None, None, base_epochs=100, base_warmup=20.0, steps_per_epoch=625, num_samples=1_281_167
    )
    assert (plan.epochs, plan.warmup_epochs, plan.eval_every, plan.patience) == (100, 20.0, 2, 0)
    assert plan.notes == ()
    given = plan_budget(
        3, 1.0, base_epochs=100, base_warmup=20.0, steps_per_epoch=1, num_samples=10,
        eval_every=1, patience=0,
    )  # fmt: skip
    assert (given.epochs, given.eval_every, given.patience) == (3, 1, 0)
    assert (
        given.warmup_epochs == pytest.approx(0.6) and "capped" in given.notes[0]
    )  # 20 % of 3 epochs


def test_classify_asks_for_more_steps_than_the_other_commands() -> None:
    from simmim_deploy.train.classify_config import ClassifyConfig
    from simmim_deploy.train.detect_config import DetectConfig
    from simmim_deploy.train.pretrain import PretrainConfig

    assert ClassifyConfig.AUTO_LENGTH == (2400, 400)
    assert DetectConfig.AUTO_LENGTH == PretrainConfig.AUTO_LENGTH == (300, 200)
    # 100 labelled images at batch 16: 6 steps an epoch -> 400 epochs (2,400 steps)
    plan = plan_budget(
        None, None, base_epochs=100, base_warmup=20.0, steps_per_epoch=6, num_samples=100,
        length=(2400, 400),
    )  # fmt: skip
    assert (plan.epochs, plan.warmup_epochs, plan.eval_every, plan.patience) == (400, 20.0, 8, 16)
    tiny = plan_budget(
        None, None, base_epochs=100, base_warmup=20.0, steps_per_epoch=1, num_samples=20,
        length=(2400, 400),
    )  # fmt: skip
    assert tiny.epochs == 400


def test_auto_epochs_are_bounded_and_pretraining_has_no_patience() -> None:
    tiny = plan_budget(
        None, None, base_epochs=10, base_warmup=1.0, steps_per_epoch=1, num_samples=20,
        validates=False,
    )  # fmt: skip
    assert tiny.epochs == 200 and tiny.patience is None and tiny.eval_every is None


def test_batch_is_halved_until_an_epoch_has_four_steps_unless_given() -> None:
    # 100 images at 64 would be 1 step an epoch (36 images dropped); 16 makes 6
    batch, note = choose_batch(None, 100, default=64)
    assert batch == 16 and "batch size 16 (not given)" in note and "1 step(s)" in note
    assert choose_batch(None, 5000, default=64) == (64, None)  # large: the default, silently
    assert choose_batch(None, 19, default=16)[0] == 4  # detection tiles: 4 steps of 4
    assert choose_batch(None, 3, default=16)[0] == 1  # never below one image
    assert choose_batch(None, 1000, default=64, world=4)[0] == 32  # 250 per rank: 7 of 32
    assert choose_batch(None, 512, default=64, accumulation=4)[0] == 32  # 4 steps of 4 x 32
    assert choose_batch(64, 100, default=64) == (64, None)  # given: never changed
