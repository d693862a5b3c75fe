"""The demo's closing summary: one rich table of the headline figures, plus the pictures made."""

from __future__ import annotations

from typing import Any

from rich.table import Table

_BACKENDS = {"pytorch-eager": "PyTorch", "onnxruntime": "ORT"}


def summary_table(summary: dict[str, Any]) -> Table:
    """One table: accuracy SimMIM vs scratch, INT8 drop, speed-ups, detection mAP."""
    h = summary["headline"]
    k = summary["data"]["labels_per_class"]
    n = summary["data"]["heldout_images"]
    table = Table(
        title=f"simmim-deploy demo ({summary['mode']}, {summary['device']}, "
        f"{summary['seconds']:.0f} s)",
        title_justify="left",
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("note")
    gain = h["top1_gain_points"]
    table.add_row("top-1, SimMIM init", f"{h['top1_simmim']:.1f} %",
                  f"{k} labels/class; {n} held-out digits")  # fmt: skip
    table.add_row("top-1, scratch init", f"{h['top1_scratch']:.1f} %",
                  f"same recipe; SimMIM {gain:+.1f} points")  # fmt: skip
    table.add_row("top-1, ONNX FP32", f"{h['top1_onnx_fp32']:.1f} %", "predict on the PNG files")
    table.add_row("top-1, ONNX INT8", f"{h['top1_onnx_int8']:.1f} %",
                  f"INT8 drop vs FP32 {h['int8_drop_points']:+.1f} points")  # fmt: skip
    for row in summary["benchmark"]["rows"]:
        name = f"{_BACKENDS[row['backend']]} {row['precision'].upper()}, batch {row['batch']}"
        eager = row["backend"] == "pytorch-eager"
        note = "reference (1.00x)" if eager else f"{row['speedup']:.2f}x PyTorch eager"
        table.add_row(name, f"{row['images_per_s']:.0f} img/s", f"model only; {note}")
    if h["detection_mAP"] is None:
        table.add_row("detection mAP", "-", "skipped by --fast")
    else:
        det = summary["detection"]
        table.add_row("detection mAP", f"{h['detection_mAP']:.1f} %",
                      f"mAP50 {h['detection_mAP50']:.1f} %; tiny run: {det['epochs']} epochs, "
                      f"{det['train_images']} images")  # fmt: skip
    return table


def picture_lines(summary: dict[str, Any]) -> list[str]:
    """``name: path`` for every picture the demo made (missing ones say so)."""
    return [
        f"{name.replace('_', ' ')}: {path if path else '(not made in this mode)'}"
        for name, path in summary["pictures"].items()
    ]
