"""Fixtures for the export tests: small fine-tuned checkpoints in the factory format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import simmim_deploy.models  # noqa: F401  (registers the tiny encoders)


def classifier_meta(model_name: str, img_size: int, class_names: list[str], **kw: Any) -> dict:
    """A classification ``meta`` as ``train classify`` writes it (see models/factory.py)."""
    return {
        "task": "classification",
        "model_name": model_name,
        "img_size": img_size,
        "num_classes": len(class_names),
        "class_names": class_names,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "model_kwargs": kw,
        "head": {},
        "pruned_arch": None,
    }


def save_checkpoint(path: Path, model: torch.nn.Module, meta: dict) -> Path:
    torch.save({"model": model.state_dict(), "meta": meta}, path)
    return path


def fine_tune_on_digits(model: torch.nn.Module, meta: dict, steps: int, seed: int = 0) -> None:
    """A few hundred AdamW steps on builtin:digits (real images) so logits mean something."""
    from simmim_deploy.export.inputs import load_image_set, preprocess

    data = load_image_set("builtin:digits", "train", 1000, seed)
    x = torch.from_numpy(preprocess(data.images, meta))
    y = torch.from_numpy(data.labels)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=torch.Generator().manual_seed(step))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def build_classification_checkpoint(
    path: Path, model_name: str, img_size: int, steps: int = 0, **kw: Any
) -> Path:
    from simmim_deploy.models.classifier import build_classifier_from_meta

    meta = classifier_meta(model_name, img_size, [str(i) for i in range(10)], **kw)
    model = build_classifier_from_meta(meta)
    if steps:
        fine_tune_on_digits(model, meta, steps)
    return save_checkpoint(path, model, meta)


@pytest.fixture(scope="session")
def vit_digits_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vit_nano_patch8_32 fine-tuned briefly on builtin:digits (top-1 well above chance)."""
    path = tmp_path_factory.mktemp("ckpt") / "vit nano best.pt"
    return build_classification_checkpoint(path, "vit_nano_patch8_32", 32, steps=150)


@pytest.fixture(scope="session")
def digits_batch() -> np.ndarray:
    """32 held-out digits preprocessed for a 32 px classifier."""
    from simmim_deploy.export.inputs import load_image_set, preprocess

    data = load_image_set("builtin:digits", "val", 32)
    return preprocess(data.images, classifier_meta("vit_nano_patch8_32", 32, list("0123456789")))
