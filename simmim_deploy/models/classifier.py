"""Image classifier: a timm encoder with a linear head, initialised from a SimMIM encoder.

Built through ``timm.create_model``. ViT-style encoders classify from the mean of the patch
tokens followed by ``fc_norm`` (the official SimMIM / BEiT fine-tuning recipe; timm's
``global_pool="avg"``), Swin from its average-pooled last stage. Encoder weights come from our
``encoder.safetensors``, an official SimMIM checkpoint (``{'model': {'encoder.*', 'decoder.*'}}``)
or a timm state dict, all read by :mod:`simmim_deploy.models.checkpoint`, which also resizes
position embeddings and relative-position tables. After loading, only the new head (and a fresh
``fc_norm``) may be missing: anything else means the checkpoint does not fit the model and is a
:class:`UserError` rather than a silently half-initialised network.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from simmim_deploy.core.config import suggest
from simmim_deploy.core.errors import UserError
from simmim_deploy.models import registry as _registry  # noqa: F401  (registers tiny models)

log = logging.getLogger(__name__)

# BEiT / SimMIM fine-tuning shrink the fresh head so early updates do not wreck the features.
HEAD_INIT_SCALE = 0.001


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What :func:`init_from_pretrained` did: keys missing from / unused in the checkpoint."""

    source: str
    missing: list[str]
    unexpected: list[str]


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Parameter-name prefixes of the classifier head and its pooled-feature norm."""
    head = model.get_classifier()
    names = [n for n, m in model.named_modules() if m is head and n]
    prefixes = [f"{names[0]}." if names else "head."]
    fc_norm = getattr(model, "fc_norm", None)
    if fc_norm is not None and not isinstance(fc_norm, nn.Identity):
        prefixes.append("fc_norm.")
    return tuple(prefixes)


def _create(model_name: str, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    if not timm.is_model(model_name):
        raise UserError(
            f"unknown timm model '{model_name}'{suggest(model_name, timm.list_models())}"
        )
    try:
        return timm.create_model(model_name, pretrained=False, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise UserError(f"cannot build {model_name} with {kwargs}: {exc}") from None


def build_classifier(
    model_name: str,
    num_classes: int,
    img_size: int | None = None,
    pretrained: str | None = None,
    drop_path_rate: float = 0.1,
    head_norm: bool = False,
    **timm_kwargs: Any,
) -> nn.Module:
    """Build a timm classifier, optionally initialised from pre-trained encoder weights.

    Args:
        model_name: timm name, e.g. ``vit_base_patch16_224``, ``swin_base_patch4_window7_224``,
            or a tiny registered model (``vit_micro_patch8_64``).
        num_classes: size of the new head.
        img_size: input side (None: the model's default); position tables are resized to it.
        pretrained: ``encoder.safetensors`` (ours), an official SimMIM ``.pth``, a timm state
            dict, or None / ``"none"`` for random initialisation.
        drop_path_rate: stochastic depth rate.
        head_norm: put a ``BatchNorm1d`` without affine parameters before the linear head
            (MAE's linear probe: per-feature standardisation of frozen features, which a
            per-sample LayerNorm does not give); the head becomes ``Sequential(bn, linear)``.
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``window_size=7``).

    Returns:
        The model; ``model(images (B, 3, H, W)) -> logits (B, num_classes)``.

    Raises:
        UserError: unknown model, unreadable checkpoint, or weights that do not fit the encoder.
    """
    kwargs = dict(timm_kwargs, drop_path_rate=drop_path_rate)
    if img_size is not None:
        kwargs["img_size"] = img_size
    model = _create(model_name, num_classes, kwargs)
    vit = isinstance(model, VisionTransformer) and "global_pool" not in timm_kwargs
    if vit and model.global_pool != "avg":  # official recipe: mean-pooled patch tokens + fc_norm
        model = _create(model_name, num_classes, dict(kwargs, global_pool="avg"))
    if pretrained and str(pretrained).lower() != "none":
        report = init_from_pretrained(model, str(pretrained))
        log.info("initialised %s from %s (new: %s)", model_name, pretrained, report.missing)
    _scale_head(model)
    if head_norm:
        _add_head_norm(model)
    return model


def _add_head_norm(model: nn.Module) -> None:
    """Replace the linear head by ``Sequential(BatchNorm1d(affine=False), head)`` in place."""
    head = model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise UserError(f"--head-norm needs a linear head, {type(model).__name__} has {head}")
    bn = nn.BatchNorm1d(head.in_features, affine=False, eps=1e-6)
    names = [n for n, m in model.named_modules() if m is head and n]
    parent_name, _, attr = names[0].rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Sequential(bn, head))


def _scale_head(model: nn.Module) -> None:
    head = model.get_classifier()
    if isinstance(head, nn.Linear):
        with torch.no_grad():
            head.weight.mul_(HEAD_INIT_SCALE)
            head.bias.zero_()


def init_from_pretrained(model: nn.Module, path: str) -> LoadReport:
    """Load encoder weights from ``path`` into ``model``; only the head may stay missing.

    Keys the encoder checkpoint has but a pooled classifier drops (the final ``norm`` of a ViT
    that now uses ``fc_norm``; heads of another size) are ignored. Missing keys other than the
    head and ``fc_norm`` raise.

    Raises:
        UserError: the checkpoint cannot be read, or it leaves encoder weights uninitialised.
    """
    from simmim_deploy.models.checkpoint import load_encoder_into, load_encoder_state

    prefixes = head_prefixes(model)
    state = load_encoder_state(path)
    # A head trained for another task never transfers; drop it so it cannot clash in shape.
    state = {k: v for k, v in state.items() if not k.startswith(("head.", "fc_norm."))}
    missing, unexpected = _missing_unexpected(load_encoder_into(model, state))
    wrong = [k for k in missing if not k.startswith(prefixes)]
    if wrong:
        raise UserError(
            f"{path} does not fit {type(model).__name__}: {len(wrong)} encoder weights missing "
            f"(e.g. {', '.join(wrong[:3])}); check --model and --img-size match the pre-training"
        )
    # A mean-pooled ViT replaces the final token ``norm`` by a fresh ``fc_norm`` (as timm, MAE).
    ignorable = ("norm.",) if "fc_norm." in prefixes else ()
    extra = [k for k in unexpected if not k.startswith(ignorable)]
    if extra:
        log.warning("%s: %d checkpoint weights unused (e.g. %s)", path, len(extra), extra[:3])
    return LoadReport(source=path, missing=list(missing), unexpected=list(unexpected))


def _missing_unexpected(result: Any) -> tuple[list[str], list[str]]:
    """Accept ``torch``'s ``_IncompatibleKeys``, a ``(missing, unexpected)`` pair or a dict."""
    if isinstance(result, dict):
        return list(result.get("missing", [])), list(result.get("unexpected", []))
    if hasattr(result, "missing_keys"):
        return list(result.missing_keys), list(result.unexpected_keys)
    missing, unexpected = result
    return list(missing), list(unexpected)


def set_linear_probe(model: nn.Module) -> list[str]:
    """Freeze everything but the head and ``fc_norm``; returns the trainable parameter names.

    The frozen encoder should run in eval mode (no drop path / dropout noise); the training task
    calls :func:`linear_probe_train_mode` after ``model.train()``.
    """
    prefixes = head_prefixes(model)
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefixes))
        if param.requires_grad:
            trainable.append(name)
    return trainable


def linear_probe_train_mode(model: nn.Module) -> None:
    """Keep the frozen encoder in eval mode (no drop path / dropout noise) while the head trains.

    Call after ``model.train()``. Sets ``training`` per module (``Module.train`` would recurse).
    """
    for module in model.modules():
        module.training = any(p.requires_grad for p in module.parameters(recurse=False))
    # The head trains, including a parameter-free BatchNorm (--head-norm) that must gather stats.
    for module in model.get_classifier().modules():
        module.training = True


def classifier_meta_kwargs(model: nn.Module, timm_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``timm.create_model`` kwargs that rebuild this architecture (for checkpoint meta)."""
    kwargs = dict(timm_kwargs)
    if isinstance(model, VisionTransformer):
        kwargs.setdefault("global_pool", model.global_pool)
    return kwargs


def build_classifier_from_meta(meta: dict[str, Any]) -> nn.Module:
    """Rebuild the (untrained) classifier a checkpoint's ``meta`` describes.

    Registered in :data:`simmim_deploy.models.factory.BUILDERS` for ``task == "classification"``;
    the loader applies ``meta["pruned_arch"]`` afterwards.
    """
    try:
        model = build_classifier(
            meta["model_name"],
            int(meta["num_classes"]),
            img_size=meta.get("img_size"),
            pretrained=None,
            drop_path_rate=0.0,
            head_norm=(meta.get("head") or {}).get("norm") == "batchnorm",
            **dict(meta.get("model_kwargs") or {}),
        )
    except KeyError as exc:
        raise UserError(f"checkpoint meta lacks {exc}: not a train classify checkpoint") from None
    return model
