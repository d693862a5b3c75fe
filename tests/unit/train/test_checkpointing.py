"""Resumable checkpoints: atomic, weights_only loadable, complete, and exact on resume."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from simmim_deploy.core.errors import UserError
from simmim_deploy.train.checkpointing import (
    BestCheckpoint,
    capture_rng_state,
    last_checkpoint_path,
    load_training_state,
    restore_training_state,
    save_training_state,
)
from simmim_deploy.train.engine import EngineConfig, TrainTask, fit, seed_everything


def _parts():
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.3), nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return model, opt, sched


def test_round_trip_restores_everything(tmp_path):
    seed_everything(1)
    model, opt, sched = _parts()
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    path = last_checkpoint_path(tmp_path)
    save_training_state(
        path,
        model=model,
        optimizer=opt,
        scheduler=sched,
        scaler=None,
        progress={"epoch": 2, "step_in_epoch": 3, "global_step": 7},
        rng=[capture_rng_state()],
        meta={"model_name": "x", "img_size": 32},
    )
    expected = (random.random(), np.random.rand(), torch.rand(1))
    # weights_only=True works on the raw file (no pickled code needed)
    raw = torch.load(path, weights_only=True)
    assert raw["meta"]["model_name"] == "x"

    seed_everything(99)
    model2, opt2, sched2 = _parts()
    progress = restore_training_state(
        load_training_state(path), model=model2, optimizer=opt2, scheduler=sched2, scaler=None
    )
    assert progress["global_step"] == 7
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert sched2.last_epoch == 1
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_unreadable_checkpoint_is_user_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"\x00torn")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_training_state(bad)
    with pytest.raises(UserError, match="no checkpoint"):
        load_training_state(tmp_path / "none.pt")


class _Data(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.x = torch.randn(48, 3, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return 48

    def __getitem__(self, i):
        return self.x[i], self.x[i].sum(0, keepdim=True)


class _Regression(TrainTask):
    def loss(self, model, batch):
        x, y = batch
        return ((model(x) - y) ** 2).mean(), {}


def _train(out, stop=None, resume=False):
    seed_everything(0)
    model, opt, sched = _parts()
    cfg = EngineConfig(
        epochs=3,
        batch_size=4,
        accumulation=2,
        device="cpu",
        save_every_steps=4,
        stop_at_step=stop,
        resume=resume,
        progress=False,
    )
    fit(model, _Regression(), _Data(), cfg, opt, sched, out)
    return model.state_dict()


def test_engine_resume_mid_epoch_is_bitwise_exact(tmp_path):
    straight = _train(tmp_path / "a")
    first = _train(tmp_path / "b", stop=8)  # 6 steps per epoch: stops mid-epoch 2
    assert not all(torch.equal(first[k], straight[k]) for k in straight)
    resumed = _train(tmp_path / "b", resume=True)
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    rows = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert len(rows) == len((tmp_path / "a" / "metrics.csv").read_text().splitlines())


def test_existing_run_needs_resume(tmp_path):
    _train(tmp_path, stop=2)
    with pytest.raises(UserError, match="--resume"):
        _train(tmp_path)


def test_non_finite_loss_stops_and_keeps_last_good(tmp_path):
    class Exploding(_Regression):
        def loss(self, model, batch):
            loss, logs = super().loss(model, batch)
            return loss * (float("nan") if self.calls_after_save() else 1.0), logs

        n = 0

        def calls_after_save(self):
            self.n += 1
            return self.n > 10  # 5 steps of 2 micro-batches, saved at step 4

    seed_everything(0)
    model, opt, sched = _parts()
    cfg = EngineConfig(
        epochs=3, batch_size=4, accumulation=2, device="cpu", save_every_steps=4, progress=False
    )
    with pytest.raises(UserError, match="loss became nan at step 6"):
        fit(model, Exploding(), _Data(), cfg, opt, sched, tmp_path)
    state = load_training_state(last_checkpoint_path(tmp_path))
    assert state["progress"]["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_a_falling_validation_loss_counts_as_progress_for_early_stopping(tmp_path):
    model = nn.Linear(2, 2)
    keeper = BestCheckpoint(tmp_path / "best.pt", "top1", resume=False, progress="loss")
    scores = [(20, 2.0), (20, 1.9), (20, 1.8), (19, 1.85), (20, 1.9), (18, 2.0)]
    stale = []
    for top1, loss in scores:
        keeper.update(model, {}, {"top1": top1, "loss": loss})
        stale.append(keeper.stale)
    # top-1 never beat 20 after the first validation, but the loss fell twice more
    assert stale == [0, 0, 0, 1, 2, 3]
    assert keeper.best["loss"] == 1.8  # chosen by top-1; among its ties, the lowest loss
    assert "val top-1 and loss did not improve in 3" in keeper.patience_spent(3, "val top-1", 9, 10)
    plain = BestCheckpoint(tmp_path / "plain.pt", "top1", resume=False)
    for top1, loss in scores:
        plain.update(model, {}, {"top1": top1, "loss": loss})
    assert plain.stale == 5  # without ``progress`` only the score counts
