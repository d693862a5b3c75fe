"""``simmim-deploy checks``: versions and accelerators, to paste into a bug report."""

from __future__ import annotations

import dataclasses
import json

import typer

from simmim_deploy.cli.options import config_command
from simmim_deploy.core.config import option

DOC = """Report versions (torch, timm, onnx, onnxruntime and its providers, OpenVINO, TensorRT),
CUDA GPUs and the CPU's instruction sets (AVX2, AVX-512, VNNI, AMX).

Example: simmim-deploy checks
"""


@dataclasses.dataclass(frozen=True)
class ChecksConfig:
    """Options of ``simmim-deploy checks``."""

    as_json: bool = option(False, "Print machine-readable JSON.", flag="--json")


def _run(cfg: ChecksConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    from simmim_deploy.core.environment import environment_report

    report = environment_report()
    if cfg.as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title="simmim-deploy checks", show_header=True)
    table.add_column("what")
    table.add_column("value")
    table.add_row("python", f"{report['python']} on {report['platform']}")
    table.add_row("cpu cores", str(report["cpu_count"]))
    table.add_row("cpu", report["cpu"]["model"])
    table.add_row("cpu ISA", report["cpu"]["isa"])
    for name, version in report["packages"].items():
        table.add_row(name, version or "[dim]not installed[/dim]")
    ort = report["onnxruntime"]
    if ort.get("installed"):
        table.add_row("onnxruntime providers", ", ".join(ort["providers"]))
    trt = report["tensorrt"]
    table.add_row("tensorrt (real library)", trt["version"] if trt["installed"] else "not found")
    torch_info = report.get("torch", {})
    if torch_info.get("installed"):
        table.add_row("torch CUDA build", str(torch_info["cuda_build"]))
        table.add_row("CUDA available", str(torch_info["cuda_available"]))
        for gpu in torch_info["gpus"]:
            table.add_row(
                f"gpu {gpu['index']}",
                f"{gpu['name']} (sm {gpu['compute_capability']}, {gpu['memory_gib']} GiB)",
            )
        table.add_row("torch threads", str(torch_info["threads"]))
    Console().print(table)


checks = config_command(ChecksConfig, _run, DOC)
