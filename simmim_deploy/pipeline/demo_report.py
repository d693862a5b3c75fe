"""The demo's closing summary: one rich table of the headline figures, plus the pictures made."""

from __future__ import annotations

from typing import Any

from rich.table import Table


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
    table.add_column("detail")
    gain = h["top1_gain_points"]
    table.add_row(f"top-1, SimMIM init ({k} labels/class)", f"{h['top1_simmim']:.1f} %",
                  f"{n} held-out digits, last epoch")  # fmt: skip
    table.add_row("top-1, from scratch (same recipe)", f"{h['top1_scratch']:.1f} %",
                  f"SimMIM {'gains' if gain >= 0 else 'loses'} {abs(gain):.1f} points")  # fmt: skip
    table.add_row("top-1, ONNX FP32 (predict)", f"{h['top1_onnx_fp32']:.1f} %",
                  "ONNX Runtime on the PNG files")  # fmt: skip
    table.add_row("top-1, ONNX INT8 (predict)", f"{h['top1_onnx_int8']:.1f} %",
                  f"INT8 drop vs FP32: {h['int8_drop_points']:+.1f} points")  # fmt: skip
    for row in summary["benchmark"]["rows"]:
        name = f"{row['backend']} {row['precision']}, batch {row['batch']}"
        speed = "reference" if row["backend"] == "pytorch-eager" else f"{row['speedup']:.2f}x"
        table.add_row(name, f"{row['images_per_s']:.0f} img/s",
                      f"model-only, speed-up vs PyTorch eager: {speed}")  # fmt: skip
    if h["detection_mAP"] is None:
        table.add_row("detection mAP@[.5:.95]", "-", "skipped by --fast")
    else:
        det = summary["detection"]
        table.add_row("detection mAP@[.5:.95]", f"{100 * h['detection_mAP']:.1f}",
                      f"mAP50 {100 * h['detection_mAP50']:.1f}; {det['epochs']} epochs on "
                      f"{det['train_images']} images (a short, tiny run)")  # fmt: skip
    return table


def picture_lines(summary: dict[str, Any]) -> list[str]:
    """``name: path`` for every picture the demo made (missing ones say so)."""
    return [
        f"{name.replace('_', ' ')}: {path if path else '(not made in this mode)'}"
        for name, path in summary["pictures"].items()
    ]
