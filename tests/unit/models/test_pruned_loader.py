"""The one checkpoint loader rebuilds pruned detectors too (``evaluate`` could not before)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simmim_deploy.models  # noqa: F401  (registers the tiny encoders)
from simmim_deploy.core.checkpoint_meta import CheckpointMeta
from simmim_deploy.models.detector import build_detector, detector_meta
from simmim_deploy.models.factory import load_task_checkpoint

pytest.importorskip("torch_pruning")


def test_pruned_detector_reloads_with_the_same_outputs(tmp_path) -> None:
    from simmim_deploy.export.prune import prune_model

    torch.manual_seed(0)
    model = build_detector("vit_nano_patch8_32", 3, 32, head={"channels": 16, "num_convs": 1})
    model.eval()
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    arch = prune_model(model, 32, ratio=0.5, drop_blocks=1, images=x)
    assert arch["dropped"], "the test needs a dropped block"
    meta = CheckpointMeta.from_dict(detector_meta(model, ["a", "b", "c"], "vit_nano_patch8_32"))
    path = tmp_path / "pruned.pt"
    torch.save({"model": model.state_dict(), "meta": {**meta.to_dict(), "pruned_arch": arch}}, path)

    loaded, loaded_meta = load_task_checkpoint(path)  # what evaluate and export call
    assert loaded_meta["pruned_arch"] == arch
    with torch.no_grad():
        want = model(torch.from_numpy(x))
        got = loaded(torch.from_numpy(x))
    for a, b in zip(want, got, strict=True):
        torch.testing.assert_close(a, b)
