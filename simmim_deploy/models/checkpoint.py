"""Read and write encoder weights: ours, official SimMIM files and plain timm state dicts.

Nothing here unpickles code: ``.safetensors`` files are read with safetensors and everything else
with ``torch.load(weights_only=True)``, so a file holding a pickled object is refused.

Sources understood by :func:`load_encoder_state`:

- ``encoder.safetensors`` written by :func:`save_encoder` (timm names, metadata in the header);
- official SimMIM checkpoints ``{'model': {'encoder.*', 'decoder.*', ...}, ...}`` and our own
  ``last.pt`` (same layout): ``encoder.`` is stripped, the decoder and mask token dropped;
- plain timm state dicts (``.safetensors``/``.pt``/``.pth``), possibly under ``'model'`` or
  ``'state_dict'``, possibly with a DDP ``module.`` prefix.

:func:`load_encoder_into` then adapts names and sizes with timm's own per-family
``checkpoint_filter_fn`` (Swin: official end-of-stage ``downsample`` -> timm start-of-stage,
relative position tables resized to the new window; ViT/BEiT: absolute position embeddings and
relative tables resampled to the new grid). Official BEiT-style ViT checkpoints share one
relative position table; it is copied into every block when the timm model has per-block tables
(what the official fine-tuning code does). Not mapped: the official ViT's final ``norm`` into a
timm ``fc_norm`` (mean-pooling models), which is reported as missing/unexpected.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simmim_deploy.core.atomic import atomic_path
from simmim_deploy.core.errors import UserError

_DROP = ("relative_position_index", "attn_mask", "mask_token")
_SHARED_REL = "rel_pos_bias.relative_position_bias_table"


def read_weights_file(path: str | Path) -> dict[str, Any]:
    """Load a ``.safetensors`` or ``torch.save`` file without executing pickled code."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(p), device="cpu"))
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not a weights file we read"
        import zipfile

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not zipfile.is_zipfile(p):
            first = "neither safetensors nor a PyTorch zip archive"
        elif "weights_only" in str(exc):  # torch's advice would be to unpickle: never
            first = "it holds pickled objects"
        raise UserError(
            f"cannot read {p} as weights (safetensors, or torch.save of tensors only; pickled "
            f"objects are refused): {first[:200]}"
        ) from None
    if not isinstance(obj, dict):
        raise UserError(f"{p} does not hold a state dict (found {type(obj).__name__})")
    return obj


def _unwrap(obj: dict[str, Any]) -> dict[str, torch.Tensor]:
    for key in ("model", "state_dict", "encoder_state"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):  # saved from a DDP wrapper
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_encoder_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the encoder part of any supported checkpoint as a timm-named state dict.

    Args:
        path: ``encoder.safetensors``, an official SimMIM ``.pth``, our ``last.pt``, or a timm
            state dict.

    Returns:
        ``{name: tensor}`` without ``encoder.`` prefix, decoder or mask token (not yet
        adapted to a particular model: see :func:`load_encoder_into`).

    Raises:
        UserError: Missing, unreadable, pickled-object or tensor-free files.
    """
    sd = _unwrap(read_weights_file(path))
    if any(k.startswith("encoder.") for k in sd):
        sd = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
    sd = {k: v for k, v in sd.items() if k != "mask_token"}
    if not sd:
        raise UserError(f"{path} holds no tensors that could be encoder weights")
    return sd


def _expand_shared_rel_pos_bias(encoder: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    # official SimMIM ViT pre-trains with one shared table; timm beit_* has one per block
    if _SHARED_REL not in sd or getattr(encoder, "rel_pos_bias", None) is not None:
        return
    table = sd.pop(_SHARED_REL)
    for i, _ in enumerate(getattr(encoder, "blocks", [])):
        key = f"blocks.{i}.attn.relative_position_bias_table"
        if key in encoder.state_dict():
            sd.setdefault(key, table.clone())


def adapt_state(encoder: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map names and resize position tables of ``state`` to fit ``encoder`` (timm helpers)."""
    sd = {k: v for k, v in state.items() if not any(d in k for d in _DROP)}
    _expand_shared_rel_pos_bias(encoder, sd)
    module = sys.modules.get(type(encoder).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            sd = filter_fn(sd, encoder)
        except (RuntimeError, ValueError, KeyError, AttributeError) as exc:
            raise UserError(
                f"checkpoint does not fit {type(encoder).__name__} ({str(exc)[:160]}); "
                "check --model matches the checkpoint"
            ) from None
    return sd


def load_encoder_into(encoder: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Load ``state`` into a timm encoder, resizing position embeddings/tables when needed.

    Keys the encoder lacks (e.g. a classifier head) are reported as unexpected; a shape that
    still differs after resizing is refused, except for ``head.*`` (a different class count).

    Returns:
        ``{"missing": [...], "unexpected": [...], "resized": [...], "skipped": [...]}``.

    Raises:
        UserError: Shapes that cannot be adapted, or nothing at all matches.
    """
    adapted = adapt_state(encoder, state)
    own = encoder.state_dict()
    resized = sorted(
        k for k, v in adapted.items() if k in state and k in own and v.shape != state[k].shape
    )
    skipped, bad = [], []
    for k in list(adapted):
        if k in own and adapted[k].shape != own[k].shape:
            (skipped if k.startswith("head") else bad).append(k)
            adapted.pop(k)
    if bad:
        k = bad[0]
        theirs, ours = tuple(state.get(k, torch.empty(0)).shape), tuple(own[k].shape)
        raise UserError(
            f"checkpoint does not fit {type(encoder).__name__}: {len(bad)} tensors differ in "
            f"shape, e.g. {k} {theirs} vs {ours}; "
            "check --model matches the checkpoint"
        )
    if not any(k in own for k in adapted):
        raise UserError(
            f"no tensor of the checkpoint matches {type(encoder).__name__}; "
            "check --model matches the checkpoint"
        )
    result = encoder.load_state_dict(adapted, strict=False)
    return {
        "missing": list(result.missing_keys),
        "unexpected": list(result.unexpected_keys),
        "resized": resized,
        "skipped": skipped,
    }


def save_encoder(model: nn.Module, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write the encoder's timm state dict to ``path`` (safetensors, atomically).

    Args:
        model: A :class:`~simmim_deploy.models.simmim.SimMIM` (its ``encoder`` is saved) or a
            bare timm encoder.
        path: Destination ``.safetensors`` file.
        meta: Header metadata, at least ``model_name``, ``img_size``, ``patch_size``; values
            that are not strings are stored as JSON.

    Returns:
        The written path.
    """
    from safetensors.torch import save_file

    encoder = getattr(model, "encoder", model)
    # clone: safetensors refuses tensors that share storage (views, tied weights)
    sd = {k: v.detach().cpu().contiguous().clone() for k, v in encoder.state_dict().items()}
    header = {"format": "simmim-deploy-encoder"}
    for key in ("model_name", "img_size", "patch_size"):
        if key not in meta and hasattr(model, key):
            meta = {**meta, key: getattr(model, key)}
    header.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=header)
    return Path(path)


def read_encoder_meta(path: str | Path) -> dict[str, Any]:
    """Metadata stored by :func:`save_encoder` (JSON values decoded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"cannot read {path} as safetensors: {exc}") from None
    out: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def load_simmim_checkpoint_for_init(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Initialise a SimMIM model from an official SimMIM (or our) checkpoint.

    The encoder is loaded with :func:`load_encoder_into`; the mask token and the decoder are
    taken too when present with matching shapes (a different encoder stride leaves the decoder
    at its initialisation, reported as missing).
    """
    raw = _unwrap(read_weights_file(path))
    report = load_encoder_into(model.encoder, load_encoder_state(path))
    extra = {}
    for k, v in raw.items():
        name = "mask_token" if k in ("encoder.mask_token", "mask_token") else k
        if name == "mask_token" or name.startswith("decoder."):
            extra[name] = v
    own = model.state_dict()
    for name in ["mask_token", *[k for k in own if k.startswith("decoder.")]]:
        v = extra.get(name)
        if v is not None and v.shape == own[name].shape:
            with torch.no_grad():
                model.get_parameter(name).copy_(v)
        else:
            report["missing"].append(name)
    return report
