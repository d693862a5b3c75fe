"""``simmim-deploy verify``: re-run the parity gate of a bundle on real images."""

from __future__ import annotations

from pathlib import Path

import typer

from simmim_deploy.core.backends import ONNX_BACKENDS


def verify(
    bundle: Path = typer.Argument(..., help="Bundle directory."),
    data: str = typer.Option(
        ..., "--data", help="builtin:NAME or an image folder (labelled adds accuracy)."
    ),
    limit: int = typer.Option(64, "--limit", help="Images to use."),
    reference: str = typer.Option(
        "auto", "--reference", help="torch (source checkpoint), fp32 (bundle ONNX) or auto."
    ),
    backend: str = typer.Option(
        "ort-cpu", "--backend", help="Runs the artefacts: " + ", ".join(ONNX_BACKENDS) + "."
    ),
    threads: int | None = typer.Option(None, help="Inference threads."),
) -> None:
    """Check every artefact of a bundle against PyTorch on real images.

    Example: simmim-deploy verify bundle --data builtin:mnist --limit 200
    """
    from simmim_deploy.export.verify import verify_bundle
    from simmim_deploy.serve.backends import open_onnx_file

    def open_runner(path: Path):  # noqa: ANN202 - a Runner
        runner = open_onnx_file(path, backend, threads)
        return lambda x: list(runner.run(x).values())

    from simmim_deploy.cli.progress import step_progress

    with step_progress("verify") as on_step:
        report = verify_bundle(bundle, data, limit, reference, open_runner, backend, on_step)
    for precision, entry in report["artefacts"].items():
        m = entry["metrics"]
        detail = (
            f"cosine {m['cosine_mean']:.6f}, top-1 agreement {m['top1_agreement']:.3f}"
            if "cosine_mean" in m
            else f"box IoU {m['box_iou']:.4f}"
        )
        if "top1" in m:
            detail += f", top-1 {m['top1']:.2f}% (drop {m['top1_drop']:+.2f} pt)"
        if "map" in m:
            detail += f", mAP {m['map']:.2f}% (drop {m['map_drop']:+.2f} pt)"
        typer.echo(f"{precision:>12}: passed ({detail})")
    typer.echo(
        f"report: {bundle / 'report' / 'parity.json'} (reference: {report['reference']}, "
        f"artefacts run on {backend})"
    )
    typer.echo(f"next: simmim-deploy predict {bundle} IMAGES/  (or: simmim-deploy serve {bundle})")
