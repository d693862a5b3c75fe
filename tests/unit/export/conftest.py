"""Fixtures for the export tests: small fine-tuned checkpoints in the factory format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import simmim_deploy.models  # noqa: F401  (registers the tiny encoders)
from simmim_deploy.core.checkpoint_meta import CheckpointMeta


def classifier_meta(model_name: str, img_size: int, class_names: list[str], **kw: Any) -> dict:
    """A classification ``meta`` as ``train classify`` writes it (core.checkpoint_meta)."""
    return CheckpointMeta(
        task="classification",
        model_name=model_name,
        img_size=img_size,
        class_names=tuple(class_names),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        interpolation="bicubic",
        crop_pct=0.875,
        model_kwargs=kw,
    ).to_dict()


def save_checkpoint(path: Path, model: torch.nn.Module, meta: dict) -> Path:
    torch.save({"model": model.state_dict(), "meta": meta}, path)
    return path


@torch.no_grad()
def spread_init(model: torch.nn.Module) -> None:
    """Linear weights with std 1/sqrt(fan_in): timm's std-0.02 init gives near-constant
    features, so every image would look alike and parity numbers would mean nothing."""
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            torch.nn.init.normal_(mod.weight, std=mod.in_features**-0.5)


@torch.no_grad()
def fit_head_on_digits(
    model: torch.nn.Module, meta: dict, limit: int = 1000, ridge: float = 0.1
) -> None:
    """Fit the linear head by ridge regression on real builtin:digits features.

    A cheap stand-in for fine-tuning (one forward pass): the logits then carry a real decision
    with top-1 well above chance, which is what INT8/FP16 parity and accuracy checks need.
    """
    from simmim_deploy.export.inputs import load_image_set, preprocess

    data = load_image_set("builtin:digits", "train", limit)
    x = torch.from_numpy(preprocess(data.images, meta))
    feats = model.forward_head(model.forward_features(x), pre_logits=True).double()
    feats = torch.cat([feats, torch.ones(len(feats), 1, dtype=feats.dtype)], 1)
    onehot = torch.nn.functional.one_hot(torch.from_numpy(data.labels), 10).double() * 8 - 4
    gram = feats.T @ feats
    gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    w = torch.linalg.solve(gram, feats.T @ onehot)
    head = model.get_classifier()
    head.weight.copy_(w[:-1].T.float())
    head.bias.copy_(w[-1].float())


def build_classification_checkpoint(
    path: Path, model_name: str, img_size: int, fit_head: bool = True, seed: int = 0, **kw: Any
) -> Path:
    from simmim_deploy.models.classifier import build_classifier_from_meta

    meta = classifier_meta(model_name, img_size, [str(i) for i in range(10)], **kw)
    torch.manual_seed(seed)
    model = build_classifier_from_meta(meta).eval()
    spread_init(model)
    if fit_head:
        fit_head_on_digits(model, meta)
    return save_checkpoint(path, model, meta)


@pytest.fixture(scope="session")
def vit_digits_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vit_nano_patch8_32 with its head fitted on builtin:digits (top-1 well above chance)."""
    path = tmp_path_factory.mktemp("ckpt") / "vit nano best.pt"
    return build_classification_checkpoint(path, "vit_nano_patch8_32", 32)


@pytest.fixture(scope="session")
def digits_batch() -> np.ndarray:
    """32 held-out digits preprocessed for a 32 px classifier."""
    from simmim_deploy.export.inputs import load_image_set, preprocess

    data = load_image_set("builtin:digits", "val", 32)
    return preprocess(data.images, classifier_meta("vit_nano_patch8_32", 32, list("0123456789")))
