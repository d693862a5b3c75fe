"""`simmim-deploy predict`: batched prediction on files, folders, globs or path lists."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import typer

from simmim_deploy.core.backends import backend_help
from simmim_deploy.core.errors import UserError
from simmim_deploy.serve.ray_options import RayOptions

_RAY = {f.name: f for f in dataclasses.fields(RayOptions)}
ENGINES = ("local", "ray")


def predict(
    bundle: Path = typer.Argument(
        ..., help="Bundle directory (from export), or a checkpoint with --backend torch."
    ),
    sources: list[str] = typer.Argument(
        ..., help="Images, folders (recursive), globs or .txt lists of paths."
    ),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Images per inference call."),
    backend: str = typer.Option("auto", help=backend_help("torch, or a model file")),
    precision: str | None = typer.Option(None, help="Bundle artefact: fp32, fp16, int8..."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="JSON lines file (default: stdout); --engine ray also takes .parquet or a folder.",
    ),
    save_vis: Path | None = typer.Option(None, help="Folder for images with labels/boxes drawn."),
    top_k: int = typer.Option(5, help="Classes per image (classification)."),
    score_thresh: float = typer.Option(0.25, help="Minimum box score (detection)."),
    conf: float | None = typer.Option(None, "--conf", hidden=True),  # old name of --score-thresh
    workers: int = typer.Option(
        0,
        help="Decoding threads (0: one per spare core); --engine ray: per actor, or decoding "
        "tasks at once with --decode-in tasks.",
    ),
    threads: int | None = typer.Option(None, help="Inference threads (ONNX Runtime intra-op)."),
    engine: str = typer.Option(
        "local", help="local (this process) or ray (Ray Data: a local Ray or a cluster; ray extra)."
    ),
    ray_address: str | None = typer.Option(
        _RAY["address"].default, "--ray-address", help=_RAY["address"].metadata["help"]
    ),
    actors: int = typer.Option(_RAY["actors"].default, help=_RAY["actors"].metadata["help"]),
    gpus_per_actor: float = typer.Option(
        _RAY["gpus_per_actor"].default, help=_RAY["gpus_per_actor"].metadata["help"]
    ),
    decode_in: str = typer.Option(
        _RAY["decode_in"].default, "--decode-in", help=_RAY["decode_in"].metadata["help"]
    ),
) -> None:
    """Predict every image; one JSON line per image, errors included, and a summary.

    Example: simmim-deploy predict runs/bundle photos/ 'more/*.jpg' -b 16 --out results.jsonl
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from simmim_deploy.cli.options import renamed
    from simmim_deploy.serve.predict import PredictConfig, run_predict

    score_thresh = renamed("--conf", "--score-thresh", conf, None) or score_thresh
    cfg = PredictConfig(
        str(bundle), tuple(sources), batch_size, backend, precision, top_k, score_thresh,
        None if out is None else str(out), None if save_vis is None else str(save_vis),
        workers, threads,
    )  # fmt: skip
    if engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "ray":
        _predict_ray(cfg, RayOptions(ray_address, actors, gpus_per_actor, decode_in))
        return
    if out is not None and out.suffix.lower() == ".parquet":
        raise UserError("Parquet output needs --engine ray; local predict writes JSON lines")
    from simmim_deploy.cli.targets import open_target

    runner, manifest = open_target(bundle, backend, threads)
    err = Console(stderr=True)
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("predict", total=None)
        summary = run_predict(
            cfg, lambda done, total: bar.update(task, completed=done, total=total), runner, manifest
        )
    if out is None:
        for record in summary.pop("results"):
            sys.stdout.write(json.dumps(record) + "\n")
    used = summary["runtime"]["backend"]
    where = used.get("providers_used", [used.get("device", "")])[0]
    err.print(
        f"{summary['images']} images ({summary['errors']} errors) in {summary['seconds']:.2f} s: "
        f"{summary['images_per_s']} images/s on {used['backend']} {used.get('precision', '')} "
        f"[{where}]" + (f"; results in {out}" if out else "")
    )


def _predict_ray(cfg: Any, opts: RayOptions) -> None:
    """``--engine ray``: Ray's own progress on stderr, then the records and a one-line summary."""
    from simmim_deploy.serve.ray_predict import out_path, run_ray_predict

    cfg = dataclasses.replace(cfg, out_jsonl=out_path(cfg.out_jsonl))
    summary = run_ray_predict(cfg, opts)
    for record in summary.pop("results", []):
        sys.stdout.write(json.dumps(record) + "\n")
    used = (summary["runtime"] or {}).get("backend", {})
    checked = summary["checked"]
    print(
        f"{summary['images']} images ({summary['errors']} errors) in {summary['seconds']:.2f} s: "
        f"{summary['images_per_s']} images/s on {summary['actors']} Ray actor(s) (decoding in "
        f"{summary['ray']['decode_in']}), "
        f"{used.get('backend', '?')} {used.get('precision', '')}; {checked['records']} records "
        f"for {checked['inputs']} inputs, each once"
        + (f"; results in {cfg.out_jsonl}" if cfg.out_jsonl else ""),
        file=sys.stderr,
    )
