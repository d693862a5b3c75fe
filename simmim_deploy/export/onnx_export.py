"""PyTorch -> ONNX: the inference graph only, batch-only dynamic axis, checked and simplified.

``torch.onnx.export(dynamo=True)`` is tried first; it can lose the dynamic batch axis or fail on
some timm models (BEiT's relative position bias), so its result is checked (symbolic batch on the
input, ONNX Runtime runs at two batch sizes) and the TorchScript exporter (``dynamo=False``) is
the fallback. Opset >= 17 keeps LayerNormalization one node (a decomposed LayerNorm overflows in
FP16 on TensorRT). H and W stay fixed: Swin needs them, and TensorRT builds faster engines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from simmim_deploy.core.atomic import atomic_path
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.manifest import BATCH_DIM, INPUT_NAME

log = logging.getLogger(__name__)

METADATA_KEY = "simmim_deploy.manifest"


@dataclasses.dataclass(frozen=True)
class OnnxExport:
    """Result of :func:`export_onnx`.

    Attributes:
        path: the written ``.onnx`` file.
        exporter: ``dynamo`` or ``torchscript`` (the one whose graph passed the checks).
        notes: why an exporter was rejected, one line each.
    """

    path: Path
    exporter: str
    notes: tuple[str, ...] = ()


def export_onnx(
    model: nn.Module,
    img_size: int,
    out_names: list[str],
    path: str | Path,
    opset: int = 18,
    exporter: str = "auto",
    metadata: dict[str, Any] | None = None,
) -> OnnxExport:
    """Export ``model`` (eval mode) to ONNX with only the batch axis dynamic.

    Args:
        model: ``model(images (B, 3, S, S)) -> outputs``, each with the batch first.
        img_size: S, fixed in the graph.
        out_names: one name per output (``["logits"]`` or the detection four).
        path: ``.onnx`` file to write (atomically).
        opset: ONNX opset, >= 17.
        exporter: ``auto`` (dynamo, then TorchScript), ``dynamo`` or ``torchscript``.
        metadata: written into ``metadata_props`` (see :func:`set_metadata`).

    Returns:
        :class:`OnnxExport` naming the exporter used.

    Raises:
        UserError: no exporter produced a graph that passes the checks.
    """
    order = {"auto": ("dynamo", "torchscript"), "dynamo": ("dynamo",)}.get(
        exporter, ("torchscript",)
    )
    model = model.eval()
    example = torch.randn(2, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    notes: list[str] = []
    for name in order:
        try:
            proto = _EXPORTERS[name](model, example, out_names, opset)
            proto = _simplify(proto)
            set_nms_score_threshold(proto, model)
            check_graph(proto, img_size)
        except Exception as exc:  # noqa: BLE001 - any exporter failure means "try the next one"
            notes.append(f"{name}: {type(exc).__name__}: {_first_line(exc)}")
            log.info("ONNX exporter %s rejected: %s", name, notes[-1])
            continue
        if metadata:
            set_metadata(proto, {**metadata, "exporter": name})
        with atomic_path(path) as tmp:
            onnx.save(proto, str(tmp))
        return OnnxExport(Path(path), name, tuple(notes))
    raise UserError(f"ONNX export failed with every exporter ({'; '.join(notes)})")


def _export_dynamo(
    model: nn.Module, example: torch.Tensor, out_names: list[str], opset: int
) -> onnx.ModelProto:
    batch = torch.export.Dim(BATCH_DIM, min=1, max=4096)
    with _quiet():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=out_names,
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
        )
    return program.model_proto


def _export_torchscript(
    model: nn.Module, example: torch.Tensor, out_names: list[str], opset: int
) -> onnx.ModelProto:
    axes = {name: {0: BATCH_DIM} for name in [INPUT_NAME, *out_names]}
    buf = io.BytesIO()
    with _quiet():
        torch.onnx.export(
            model,
            (example,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=out_names,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


_EXPORTERS = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


@contextlib.contextmanager
def _quiet():  # noqa: ANN202 - exporters print progress and tracer warnings we do not need
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield


def _simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    with _quiet():
        slim = onnxslim.slim(proto)
    return slim if slim is not None else proto


def set_nms_score_threshold(proto: onnx.ModelProto, model: nn.Module) -> int:
    """Give the detector's ``NonMaxSuppression`` its score threshold; returns the nodes changed.

    ``torchvision.ops.nms`` has no score threshold, so the exporters write the ONNX op without
    one and every candidate enters it, those the graph has already zeroed
    (``models.postprocess``: score <= ``score_thresh`` becomes 0) included. ONNX Runtime's NMS
    then compares each of them with every box kept so far: at batch 32 it was 79 % of a small
    detector's time (177 img/s, 418 at batch 1). The ONNX op drops boxes scoring below its
    ``score_threshold`` before suppression; with the model's own ``score_thresh`` that is
    exactly the zeroed ones (a kept zero scatters a zero score, so the outputs are the same:
    tested), and ONNX Runtime reached 456-636 img/s there. Models without ``post_cfg`` are left as
    they are.
    """
    post = getattr(model, "post_cfg", None)
    threshold = getattr(post, "score_thresh", None)
    if threshold is None or threshold <= 0:
        return 0
    changed = 0
    for node in proto.graph.node:
        if node.op_type != "NonMaxSuppression" or len(node.input) != 4:
            continue
        name = f"{node.name or 'nms'}_score_threshold"
        proto.graph.initializer.append(
            onnx.numpy_helper.from_array(np.array(threshold, dtype=np.float32), name)
        )
        node.input.append(name)
        changed += 1
    return changed


def check_graph(proto: onnx.ModelProto, img_size: int, batches: tuple[int, ...] = (1, 3)) -> None:
    """Raise unless the graph is valid, has a symbolic batch and runs at two batch sizes.

    Args:
        proto: the exported model.
        img_size: fixed H = W of the input.
        batches: batch sizes ONNX Runtime must run (outputs must keep them as their first dim).
    """
    onnx.checker.check_model(proto)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[0].dim_param or dims[0].HasField("dim_value"):
        raise ValueError(f"input batch axis is not symbolic ({[str(d).strip() for d in dims]})")
    if [d.dim_value for d in dims[1:]] != [3, img_size, img_size]:
        raise ValueError("input H/W are not the fixed image size")
    sess = ort_session(proto.SerializeToString())
    for b in batches:
        x = np.zeros((b, 3, img_size, img_size), np.float32)
        for out in sess.run(None, {sess.get_inputs()[0].name: x}):
            if out.shape[0] != b:
                raise ValueError(f"an output has batch {out.shape[0]} for an input batch of {b}")


def ort_session(model: str | Path | bytes, threads: int | None = None):  # noqa: ANN201
    """A CPU ONNX Runtime session (``threads`` intra-op threads, None: ORT's default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    src = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def set_metadata(proto: onnx.ModelProto, metadata: dict[str, Any]) -> None:
    """Mirror manifest facts into ``metadata_props``: one JSON value per top-level key, plus the
    whole mapping under ``simmim_deploy.manifest`` (what Netron and other tools show)."""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(metadata)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The mapping :func:`set_metadata` wrote (empty when absent)."""
    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    return {}


def _first_line(exc: Exception) -> str:
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return (text.splitlines() or [""])[0][:200]
