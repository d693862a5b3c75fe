"""``simmim-deploy demo``: the whole journey on built-in real data, ending with one table."""

from __future__ import annotations

from pathlib import Path

from simmim_deploy.cli.options import config_command
from simmim_deploy.pipeline.demo_config import DemoConfig

DOC = """Run the whole journey on built-in real digits and print one summary table.

SimMIM pre-training; low-label fine-tuning from SimMIM and from scratch; ONNX FP32 + INT8.

Then predict on held-out PNGs, a benchmark, and (not with --fast) a detection fine-tune.

No download. About 10 min on 2 CPU cores (--fast: about 2). Writes OUT/summary.json last.

A non-empty --out is refused; --overwrite replaces an earlier demo run there, nothing else.

Example: simmim-deploy demo --fast --out runs/demo
"""


def _run(config: DemoConfig) -> None:  # the config is validated before torch is imported
    from rich.console import Console

    from simmim_deploy.pipeline.demo import SUMMARY, run_demo
    from simmim_deploy.pipeline.demo_report import picture_lines, summary_table

    console = Console()
    summary = run_demo(config, log=console.print)
    console.print(summary_table(summary))
    console.print("pictures:")
    for line in picture_lines(summary):
        console.print(f"  {line}", soft_wrap=True)
    console.print(f"summary: {Path(config.out) / SUMMARY}", soft_wrap=True)


demo = config_command(DemoConfig, _run, DOC)
