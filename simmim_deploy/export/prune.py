"""Structured pruning of timm ViT/BEiT/Swin encoders, and the pruned architecture description.

Unstructured masks give no speed; removing whole attention heads, MLP hidden channels (rounded to
multiples of 8, what INT8/FP16 kernels tile by) and optionally whole blocks does. Torch-Pruning
finds the coupled weights; the embedding width is left alone so the residual stream, the norms and
the task head keep their shapes. The result is stored as ``pruned_arch``, a plain dict::

    {"version": 1,
     "blocks": {"blocks.0": {"num_heads": 4, "head_dim": 64, "mlp_hidden": 1072}, ...},
     "dropped": ["blocks.11"]}

so a pruned checkpoint reloads with ``weights_only=True``
(:func:`simmim_deploy.models.pruned_arch.apply_pruned_arch` rebuilds the shapes on a fresh model;
no pickled modules). Heads are pruned in timm's plain ViT attention; for
BEiT and Swin attention (relative position tables per head) only MLP channels and blocks are.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from simmim_deploy.core.errors import UserError, require
from simmim_deploy.models.pruned_arch import (
    SkippedBlock,
    describe_arch,
    encoder_of,
    find_blocks,
    prunable_heads,
    set_heads,
)

ROUND_TO = 8


def prune_model(
    model: nn.Module, img_size: int, ratio: float, drop_blocks: int = 0, images: Any = None
) -> dict[str, Any]:
    """Prune ``model`` in place and return its ``pruned_arch``.

    Args:
        model: task model (classifier or detector), eval mode.
        img_size: input side for tracing.
        ratio: fraction of MLP hidden channels and of attention heads to remove.
        drop_blocks: whole blocks to drop, those that change their input least on ``images``.
        images: float32 ``(N, 3, S, S)`` real images (needed for ``drop_blocks``).
    """
    encoder = encoder_of(model)
    dropped = _drop_blocks(model, encoder, drop_blocks, images) if drop_blocks else []
    if ratio > 0:
        _prune_channels(encoder, img_size, ratio)
    return describe_arch(model, dropped)


def _prune_channels(encoder: nn.Module, img_size: int, ratio: float) -> None:
    tp = require("torch_pruning", "prune", "structured pruning (--prune)")
    blocks = find_blocks(encoder)
    roots, num_heads = set(), {}
    for blk in blocks.values():
        roots.add(blk.mlp.fc1)
        if prunable_heads(blk.attn):
            roots.add(blk.attn.qkv)
            num_heads[blk.attn.qkv] = blk.attn.num_heads
    # Only fc1 and qkv may be pruned: everything else keeps the embedding width unchanged.
    ignored = [m for m in encoder.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    ignored = [m for m in ignored if m not in roots]
    example = torch.zeros(1, 3, img_size, img_size)
    with warnings.catch_warnings():
        # cls/pos tokens are "unwrapped parameters" of the embedding width, which is not pruned.
        warnings.simplefilter("ignore")
        pruner = _pruner(tp, encoder, example, ratio, ignored, num_heads)
        pruner.step()
    for blk in blocks.values():
        if prunable_heads(blk.attn):
            heads = pruner.num_heads[blk.attn.qkv]
            set_heads(blk.attn, heads, blk.attn.qkv.out_features // (3 * heads))


def _pruner(
    tp: Any, encoder: nn.Module, example: torch.Tensor, ratio: float, ignored: list, num_heads: dict
) -> Any:
    return tp.pruner.MetaPruner(
        encoder,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=ignored,
        num_heads=num_heads,
        prune_num_heads=bool(num_heads),
        prune_head_dims=False,
        head_pruning_ratio=ratio,
        round_to=ROUND_TO,
    )


@torch.no_grad()
def _drop_blocks(model: nn.Module, encoder: nn.Module, count: int, images: Any) -> list[str]:
    """Replace the ``count`` blocks with the smallest relative residual update by SkippedBlock."""
    if images is None or len(images) == 0:
        raise UserError("dropping whole blocks needs images: give --calib-data")
    blocks = find_blocks(encoder)
    if count >= len(blocks):
        raise UserError(f"cannot drop {count} of {len(blocks)} blocks")
    change: dict[str, float] = {}

    def hook(name: str):  # noqa: ANN202
        def fn(_m: nn.Module, args: tuple, out: torch.Tensor) -> None:
            change[name] = float((out - args[0]).norm() / (args[0].norm() + 1e-6))

        return fn

    handles = [blk.register_forward_hook(hook(n)) for n, blk in blocks.items()]
    try:
        model(torch.from_numpy(np.asarray(images[:32], dtype=np.float32)))
    finally:
        for h in handles:
            h.remove()
    weakest = sorted(change, key=change.get)[:count]
    prefix = next((n for n, m in model.named_modules() if m is encoder), "")
    full = [f"{prefix}.{n}" if prefix else n for n in weakest]
    modules = dict(model.named_modules())
    for name in full:
        parent, _, child = name.rpartition(".")
        setattr(modules[parent] if parent else model, child, SkippedBlock())
    return full


def distill(
    student: nn.Module,
    teacher: nn.Module,
    images: np.ndarray,
    epochs: int,
    task: str = "classification",
    batch_size: int = 32,
    lr: float = 1e-4,
    temperature: float = 2.0,
    seed: int = 0,
) -> list[float]:
    """Recovery fine-tune: train the pruned ``student`` to match the unpruned ``teacher``.

    Classification: KL divergence between temperature-softened logits (times T^2). Detection:
    MSE between the feature pyramids. No labels needed.

    Args:
        student: pruned model (trained in place, left in eval mode).
        teacher: unpruned model (frozen).
        images: float32 ``(N, 3, S, S)`` eval-preprocessed real images.
        epochs: passes over ``images``.

    Returns:
        Mean loss per epoch.
    """
    teacher.eval().requires_grad_(False)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(np.asarray(images, dtype=np.float32))
    history = []
    for _ in range(epochs):
        student.train()
        losses = []
        for idx in torch.randperm(len(data), generator=gen).split(batch_size):
            loss = _distill_loss(student, teacher, data[idx], task, temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 5.0)
            opt.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
    student.eval()
    return history


def _distill_loss(
    student: nn.Module, teacher: nn.Module, x: torch.Tensor, task: str, temperature: float
) -> torch.Tensor:
    import torch.nn.functional as F

    if task == "detection":
        with torch.no_grad():
            target = teacher.features(x)
        return sum(F.mse_loss(s, t) for s, t in zip(student.features(x), target, strict=True))
    with torch.no_grad():
        t_logits = teacher(x)
    s_logp = F.log_softmax(student(x) / temperature, dim=-1)
    t_p = F.softmax(t_logits / temperature, dim=-1)
    return F.kl_div(s_logp, t_p, reduction="batchmean") * temperature**2
