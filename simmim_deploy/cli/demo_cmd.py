"""``simmim-deploy demo``: the whole journey on built-in real data, ending with one table."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for everything it writes."),
    fast: bool = typer.Option(
        False, "--fast", help="About 2 minutes on 2 CPU cores: fewer steps, no detection."
    ),
    device: str = typer.Option("auto", "--device", help="auto (GPU when present), cpu or cuda."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier demo run in --out (nothing else)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Run the whole journey on built-in real digits and print one summary table.

    SimMIM pre-training; low-label fine-tuning from SimMIM and from scratch; ONNX FP32 + INT8.

    Then predict on held-out PNGs, a benchmark, and (not with --fast) a detection fine-tune.

    No download. About 10 min on 2 CPU cores (--fast: about 2). Writes OUT/summary.json last.

    A non-empty --out is refused; --overwrite replaces an earlier demo run there, nothing else.

    Example: simmim-deploy demo --fast --out runs/demo
    """
    from rich.console import Console

    from simmim_deploy.pipeline.demo import SUMMARY, run_demo
    from simmim_deploy.pipeline.demo_config import DemoConfig
    from simmim_deploy.pipeline.demo_report import picture_lines, summary_table

    config = DemoConfig(out=str(out), fast=fast, device=device, overwrite=overwrite, seed=seed)
    console = Console()
    summary = run_demo(config, log=console.print)
    console.print(summary_table(summary))
    console.print("pictures:")
    for line in picture_lines(summary):
        console.print(f"  {line}", soft_wrap=True)
    console.print(f"summary: {out / SUMMARY}", soft_wrap=True)
