"""The pruned architecture: describe a model's kept dims and rebuild them on a fresh model.

``export --prune`` (:mod:`simmim_deploy.export.prune`) removes attention heads, MLP channels and
whole blocks; what is left is recorded as ``pruned_arch``, a plain dict in the checkpoint meta::

    {"version": 1,
     "blocks": {"blocks.0": {"num_heads": 4, "head_dim": 64, "mlp_hidden": 1072}, ...},
     "dropped": ["blocks.11"]}

so a pruned checkpoint reloads with ``weights_only=True``: :func:`apply_pruned_arch` gives a
freshly built model those shapes (no pickled modules), which is what the one checkpoint loader
(:func:`simmim_deploy.models.factory.load_task_checkpoint`) does for every task.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import Attention as VitAttention
from torch import nn

from simmim_deploy.core.errors import UserError

ARCH_VERSION = 1


class SkippedBlock(nn.Module):
    """Stands in for a dropped transformer block: returns its input (ignores extra arguments)."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return x


def encoder_of(model: nn.Module) -> nn.Module:
    """The timm encoder inside a task model (a detector's ``backbone``, else the model)."""
    return getattr(model, "backbone", model)


def find_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Transformer blocks by module path: modules with ``attn`` and a timm ``Mlp`` (fc1/fc2)."""
    return {
        name: mod
        for name, mod in model.named_modules()
        if hasattr(mod, "attn") and hasattr(getattr(mod, "mlp", None), "fc1")
    }


def prunable_heads(attn: nn.Module) -> bool:
    return type(attn) is VitAttention and getattr(attn, "gate", None) is None


def describe_arch(model: nn.Module, dropped: list[str] | None = None) -> dict[str, Any]:
    """The ``pruned_arch`` dict of ``model`` as it is now (kept dims per block)."""
    blocks = {}
    for name, blk in find_blocks(model).items():
        entry = {"mlp_hidden": int(blk.mlp.fc1.out_features)}
        if prunable_heads(blk.attn):
            entry.update(num_heads=int(blk.attn.num_heads), head_dim=int(blk.attn.head_dim))
        blocks[name] = entry
    return {"version": ARCH_VERSION, "blocks": blocks, "dropped": sorted(dropped or [])}


def _linear(old: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    return nn.Linear(in_features, out_features, bias=old.bias is not None)


def apply_pruned_arch(model: nn.Module, arch: dict[str, Any]) -> nn.Module:
    """Give a freshly built model the pruned shapes of ``arch`` (in place; weights untouched).

    Args:
        model: the unpruned task model built from the checkpoint meta.
        arch: ``pruned_arch`` from :func:`describe_arch`.

    Returns:
        ``model``, now accepting the pruned state dict.

    Raises:
        UserError: ``arch`` names a block the model does not have.
    """
    if arch.get("version") != ARCH_VERSION:
        raise UserError(f"pruned_arch version {arch.get('version')} is not {ARCH_VERSION}")
    modules = dict(model.named_modules())
    for name in arch.get("dropped", []):
        if name not in modules:
            raise UserError(f"pruned_arch drops {name!r}, which this model does not have")
        parent, _, child = name.rpartition(".")
        setattr(modules[parent] if parent else model, child, SkippedBlock())
    blocks = find_blocks(model)
    for name, entry in arch.get("blocks", {}).items():
        if name in arch.get("dropped", []):
            continue
        if name not in blocks:
            raise UserError(f"pruned_arch names block {name!r}, which this model does not have")
        _reshape_block(blocks[name], entry)
    return model


def _reshape_block(blk: nn.Module, entry: dict[str, int]) -> None:
    mlp, hidden = blk.mlp, int(entry["mlp_hidden"])
    if not isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity):
        raise UserError("pruning an MLP with a hidden-layer norm is not supported")
    mlp.fc1 = _linear(mlp.fc1, mlp.fc1.in_features, hidden)
    mlp.fc2 = _linear(mlp.fc2, hidden, mlp.fc2.out_features)
    if "num_heads" in entry and prunable_heads(blk.attn):
        attn, heads, head_dim = blk.attn, int(entry["num_heads"]), int(entry["head_dim"])
        attn.qkv = _linear(attn.qkv, attn.qkv.in_features, 3 * heads * head_dim)
        attn.proj = _linear(attn.proj, heads * head_dim, attn.proj.out_features)
        set_heads(attn, heads, head_dim)


def set_heads(attn: nn.Module, heads: int, head_dim: int) -> None:
    # timm reshapes with num_heads/head_dim and flattens with attn_dim; the softmax scale is
    # left as built (head pruning keeps head_dim, so it is unchanged anyway).
    attn.num_heads, attn.head_dim = heads, head_dim
    if hasattr(attn, "attn_dim"):
        attn.attn_dim = heads * head_dim
