"""``simmim-deploy verify``: re-run the parity gate of a bundle on real images."""

from __future__ import annotations

from pathlib import Path

import typer

from simmim_deploy.cli.options import config_command
from simmim_deploy.export.config import VerifyConfig

DOC = """Check every artefact of a bundle against PyTorch on real images.

Example: simmim-deploy verify bundle --data builtin:mnist --limit 200
"""


def _run(cfg: VerifyConfig) -> None:
    from simmim_deploy.cli.progress import step_progress
    from simmim_deploy.export.verify import verify_bundle
    from simmim_deploy.serve.backends import open_onnx_file

    def open_runner(path: Path):  # noqa: ANN202 - a Runner
        runner = open_onnx_file(path, cfg.backend, cfg.threads)
        return lambda x: list(runner.run(x).values())

    inference = "f32"
    if cfg.backend == "openvino":  # bf16 on CPUs with bf16 instructions: the FP16 budget for FP32
        from simmim_deploy.serve.backends.openvino import default_inference_precision

        inference = default_inference_precision()
    bundle = Path(cfg.bundle)
    with step_progress("verify") as on_step:
        report = verify_bundle(
            bundle, cfg.data, cfg.limit, cfg.reference, open_runner, cfg.backend, on_step,
            inference,
        )  # fmt: skip
    for precision, entry in report["artefacts"].items():
        typer.echo(f"{precision:>12}: passed ({_detail(entry['metrics'])})")
    typer.echo(
        f"report: {bundle / 'report' / 'parity.json'} (reference: {report['reference']}, "
        f"artefacts run on {cfg.backend})"
    )
    typer.echo(f"next: simmim-deploy predict {bundle} IMAGES/  (or: simmim-deploy serve {bundle})")


def _detail(m: dict) -> str:
    """One artefact's parity figures, as one line."""
    detail = (
        f"cosine {m['cosine_mean']:.6f}, top-1 agreement {m['top1_agreement']:.3f}"
        if "cosine_mean" in m
        else f"box IoU {m['box_iou']:.4f}"
    )
    if "top1" in m:
        detail += f", top-1 {m['top1']:.2f}% (drop {m['top1_drop']:+.2f} pt)"
    if "map" in m:
        detail += f", mAP {m['map']:.2f}% (drop {m['map_drop']:+.2f} pt)"
    return detail


verify = config_command(VerifyConfig, _run, DOC)
