"""AdamW parameter groups as the official SimMIM recipe: no-decay sets and layer-wise LR decay.

Layer ids follow the official fine-tuning code (``get_vit_layer`` / ``get_swin_layer`` in
microsoft/SimMIM ``optimizer.py``), translated to timm's parameter names. With ``L`` blocks:
patch embedding, class/mask tokens and position embedding are layer 0, block ``i`` is ``i + 1``,
and everything else (final norm, heads, shared relative position bias) is the top layer
``L + 1``. Group ``lr_scale = layer_decay ** (L + 1 - layer_id)``.

timm Swin differs from the official Swin in one place: the patch-merging ``downsample`` sits at
the start of stage ``j + 1`` instead of the end of stage ``j``; both get id ``sum(depths[:j + 1])``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from simmim_deploy.models import adapter

# the official check_keywords_in_name set (relative position tables) plus the timm names of what
# the recipe also exempts: position embeddings, class/register/mask tokens, SwinV2 CPB MLP/scale
NO_DECAY_KEYWORDS = (
    "relative_position_bias_table",
    "pos_embed",
    "cls_token",
    "reg_token",
    "mask_token",
    "cpb_mlp",
    "logit_scale",
)


def find_encoder(model: nn.Module) -> tuple[str, nn.Module]:
    """Return ``(prefix, encoder)``: the first supported timm encoder inside ``model``.

    ``prefix`` is ``""`` for a bare encoder, else e.g. ``"encoder."`` or ``"backbone."``.
    """
    for name, module in model.named_modules():
        try:
            adapter.check_supported(module)
        except Exception:  # noqa: BLE001 - not an encoder, keep looking
            continue
        return (f"{name}." if name else ""), module
    raise ValueError(f"no supported timm encoder found inside {type(model).__name__}")


def _vit_layer(name: str, num_layers: int) -> int:
    if name in ("cls_token", "reg_token", "mask_token", "pos_embed"):
        return 0
    if name.startswith(("patch_embed", "norm_pre")):  # norm_pre: timm-only, runs before block 0
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers + 1  # final norm, fc_norm, head, shared rel_pos_bias (as official)


def _swin_layer(name: str, depths: list[int]) -> int:
    num_layers = sum(depths)
    if name == "mask_token" or name.startswith("patch_embed"):
        return 0
    if name.startswith("layers."):
        parts = name.split(".")
        stage = int(parts[1])
        if parts[2] == "downsample":  # timm: start of stage j == official: end of stage j - 1
            return sum(depths[:stage])
        if parts[2] == "blocks":
            return sum(depths[:stage]) + int(parts[3]) + 1
    # final norm, head (and absolute_pos_embed, which the official code also puts on top)
    return num_layers + 1


def layer_id_fn(model: nn.Module) -> tuple[Callable[[str], int], int]:
    """Return ``(fn, num_layers)`` where ``fn(param_name)`` gives the official layer id.

    Works for a bare timm encoder and for a wrapper holding one under a prefix; parameters
    outside the encoder go to the top layer, except a wrapper-level ``mask_token`` (layer 0).
    """
    prefix, enc = find_encoder(model)
    if adapter.is_swin(enc):
        depths = [len(stage.blocks) for stage in enc.layers]
        inner, num_layers = (lambda n: _swin_layer(n, depths)), sum(depths)
    else:
        num_layers = len(enc.blocks)
        inner = lambda n: _vit_layer(n, num_layers)  # noqa: E731

    def fn(name: str) -> int:
        if prefix and name.startswith(prefix):
            return inner(name[len(prefix) :])
        if not prefix:
            return inner(name)
        return 0 if name == "mask_token" else num_layers + 1

    return fn, num_layers


def _no_decay_names(model: nn.Module) -> set[str]:
    names: set[str] = set()
    if hasattr(model, "no_weight_decay"):
        names |= set(model.no_weight_decay())
    try:
        prefix, enc = find_encoder(model)
    except ValueError:
        return names
    if hasattr(enc, "no_weight_decay"):
        names |= {prefix + n for n in enc.no_weight_decay()}
    return names


def param_groups(
    model: nn.Module,
    weight_decay: float,
    layer_decay: float | None = None,
    skip_names: Iterable[str] = (),
) -> list[dict]:
    """Split trainable parameters into AdamW groups.

    No weight decay for biases, 1-D parameters (norms, layer scale), the model's
    ``no_weight_decay()`` names, ``skip_names`` and :data:`NO_DECAY_KEYWORDS`.

    Args:
        model: A timm encoder or a module holding one (SimMIM, classifier, detector).
        weight_decay: Decay for the decayed groups.
        layer_decay: Layer-wise LR decay factor (fine-tuning), or None for one LR.
        skip_names: Extra full parameter names to exempt from decay.

    Returns:
        Groups with ``params``, ``weight_decay``, ``lr_scale``, ``layer_id``, ``group_name``.
    """
    skip = _no_decay_names(model) | set(skip_names)
    layer_fn, num_layers = layer_id_fn(model) if layer_decay is not None else (None, 0)
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = (
            param.ndim <= 1
            or name.endswith(".bias")
            or name in skip
            or any(k in name for k in NO_DECAY_KEYWORDS)
        )
        layer_id = layer_fn(name) if layer_fn is not None else 0
        scale = 1.0 if layer_decay is None else layer_decay ** (num_layers + 1 - layer_id)
        key = f"layer_{layer_id}_{'no_decay' if no_decay else 'decay'}"
        if layer_fn is None:
            key = key.split("_", 2)[2]
        if key not in groups:
            groups[key] = {
                "group_name": key,
                "params": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr_scale": scale,
                "layer_id": layer_id,
            }
        groups[key]["params"].append(param)
    return list(groups.values())


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    layer_decay: float | None = None,
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; each group's ``lr`` is ``lr * lr_scale``.

    Args:
        model: Module to optimise.
        lr: Peak learning rate of the run (see :mod:`simmim_deploy.train.lr_rule`).
        weight_decay: AdamW decoupled weight decay for the decayed groups.
        betas: Adam betas.
        eps: Adam epsilon.
        layer_decay: Layer-wise LR decay (fine-tuning), None for pre-training.
    """
    groups = param_groups(model, weight_decay, layer_decay)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
