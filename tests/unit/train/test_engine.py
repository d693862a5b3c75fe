"""The training loop: accumulation equivalence, AMP paths, logging, tiny-data errors."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from simmim_deploy.core.errors import UserError
from simmim_deploy.train.engine import (
    EngineConfig,
    TrainTask,
    fit,
    seed_everything,
    steps_per_epoch,
)


class _Data(torch.utils.data.Dataset):
    def __init__(self, n: int = 32) -> None:
        self.x = torch.randn(n, 6, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.x[i].sum(0, keepdim=True)


class _Regression(TrainTask):
    def loss(self, model, batch):
        x, y = batch
        pred = model(x)
        return ((pred.float() - y) ** 2).mean(), {"pred_mean": pred.detach().float().mean()}


def _fit(out, **kwargs):
    seed_everything(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    cfg = EngineConfig(device="cpu", progress=False, clip_grad=None, **kwargs)
    result = fit(model, _Regression(), _Data(), cfg, opt, None, out)
    return model, result


def test_accumulation_matches_the_large_batch(tmp_path):
    big, _ = _fit(tmp_path / "big", epochs=1, batch_size=8)
    acc, result = _fit(tmp_path / "acc", epochs=1, batch_size=4, accumulation=2)
    assert result.global_step == 4 and result.images_seen == 32
    for a, b in zip(big.parameters(), acc.parameters(), strict=True):
        # same samples per step (the order depends only on the seed), averaged the same way
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(tmp_path, precision):
    model, result = _fit(tmp_path, epochs=2, batch_size=8, precision=precision)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights


def test_metrics_rows_and_task_logs(tmp_path):
    _, result = _fit(tmp_path, epochs=2, batch_size=8, log_every_steps=2)
    with open(tmp_path / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    step_rows = [r for r in rows if r["loss"]]
    assert [int(r["step"]) for r in step_rows] == [2, 4, 6, 8]
    assert all(r["pred_mean"] and float(r["images_per_s"]) > 0 for r in step_rows)
    assert [r["train_loss"] != "" for r in rows].count(True) == 2  # one row per epoch
    assert result.epochs_completed == 2 and not result.stopped_early


def test_too_little_data_is_a_user_error():
    cfg = EngineConfig(epochs=1, batch_size=16, accumulation=4)
    with pytest.raises(UserError, match="too few"):
        steps_per_epoch(40, cfg, world_size=1)
    assert steps_per_epoch(130, cfg, world_size=2) == 1


def test_precision_auto_follows_native_bf16() -> None:
    from simmim_deploy.core.cpu import CpuInfo, parse_cpuinfo
    from simmim_deploy.train.precision import resolve_precision

    cpu = torch.device("cpu")
    _, amx = parse_cpuinfo("model name\t: Xeon\nflags\t\t: avx2 avx512f amx_bf16 amx_tile\n")
    _, avx2 = parse_cpuinfo("model name\t: Xeon\nflags\t\t: avx2 avx512f\n")
    chosen, why = resolve_precision("auto", cpu, CpuInfo("Xeon", amx, 2))
    assert chosen == "bf16" and "AMX-BF16" in why
    chosen, why = resolve_precision("auto", cpu, CpuInfo("Xeon", avx2, 2))
    assert chosen == "fp32" and "no AMX-BF16/AVX512-BF16" in why
    assert resolve_precision("fp16", cpu, CpuInfo("Xeon", avx2, 2))[0] == "fp16"  # as asked


class _Patient(_Regression):
    """Validation scores that peak at epoch 2; stops after 2 validations without a better one."""

    def __init__(self, out) -> None:
        from simmim_deploy.train.checkpointing import BestCheckpoint

        self.keeper = BestCheckpoint(out / "best.pt", "score", resume=False)
        self.scores = [1.0, 3.0, 2.0, 2.5, 0.5, 0.4, 4.0, 5.0]
        self.done = 0

    def evaluate(self, model, epoch):
        self.done = epoch + 1
        metrics = {"score": self.scores[epoch], "epoch": epoch + 1}
        self.keeper.update(model, {}, metrics)
        return {"score": metrics["score"]}

    def stop_reason(self):
        return self.keeper.patience_spent(2, "score", self.done, 8)


def test_early_stopping_keeps_the_best_checkpoint(tmp_path):
    seed_everything(0)
    model = nn.Sequential(nn.Linear(6, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    cfg = EngineConfig(epochs=8, batch_size=8, device="cpu", progress=False)
    task = _Patient(tmp_path)
    result = fit(model, task, _Data(), cfg, opt, None, tmp_path)
    # stale after epoch 4 already, but never stopped in the first half of the run
    assert result.epochs_completed == 5 and not result.stopped_early  # a completed run
    assert "did not improve in 3 validations" in result.early_stop
    assert "best 3.00 at epoch 2" in result.early_stop
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["metrics"] == {"score": 3.0, "epoch": 2}
