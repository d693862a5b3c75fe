"""`simmim-deploy predict`: batched prediction on files, folders, globs or path lists."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Literal

from simmim_deploy.cli.options import config_command
from simmim_deploy.core.config import option, part_of
from simmim_deploy.core.errors import UserError
from simmim_deploy.serve.predict import PredictConfig
from simmim_deploy.serve.ray_options import RayOptions

DOC = """Predict every image; one JSON line per image, errors included, and a summary.

Example: simmim-deploy predict runs/bundle photos/ 'more/*.jpg' -b 16 --out results.jsonl
"""


@dataclasses.dataclass(frozen=True)
class PredictOptions(RayOptions, PredictConfig):
    """The runtime's :class:`PredictConfig`, the engine, and its :class:`RayOptions`."""

    engine: Literal["local", "ray"] = option(
        "local", "local (this process) or ray (Ray Data: a local Ray or a cluster; ray extra)."
    )

    def __post_init__(self) -> None:
        PredictConfig.__post_init__(self)
        RayOptions.__post_init__(self)


def _run(opts: PredictOptions) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from simmim_deploy.serve.predict import run_predict

    cfg = part_of(opts, PredictConfig)
    if opts.engine == "ray":
        _predict_ray(cfg, part_of(opts, RayOptions))
        return
    out = None if cfg.out is None else Path(cfg.out)
    if out is not None and out.suffix.lower() == ".parquet":
        raise UserError("Parquet output needs --engine ray; local predict writes JSON lines")
    from simmim_deploy.cli.targets import open_target

    runner, manifest = open_target(cfg.bundle, cfg.backend, cfg.threads)
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
        f"[{where}]" + (f"; results in {out}" if out else ""),
        markup=False,  # "[cpu]" is text, not a style tag
    )
    note = input_bound_note(summary)
    if note:
        err.print(note, markup=False)


def input_bound_note(summary: dict, cores: int | None = None) -> str | None:
    """One line when decoding took a real share of the machine (>= 15 % of its cores over a run
    of >= 1 s): its cost per image and the model's own speed while sharing the cores, so the
    user sees why ``predict`` is slower than ``benchmark``'s model-only figure."""
    cores = cores or os.cpu_count() or 1
    seconds, ms = summary.get("seconds") or 0.0, summary.get("prepare_ms_per_image") or 0.0
    if seconds < 1.0:
        return None
    share = ms / 1e3 * summary.get("ok", 0) / (seconds * cores)
    if share < 0.15:
        return None
    return (
        f"decoding + preprocessing used {share:.0%} of the {cores} cores ({ms:.2f} ms an image, "
        f"{summary['decode_workers']} thread(s)); inference, sharing them, ran at "
        f"{summary['inference_images_per_s']} images/s and was busy {summary['model_busy']:.0%}"
        " of the time (`simmim-deploy benchmark` times the model alone); more cores or smaller "
        "source images would raise images/s"
    )


def _predict_ray(cfg: PredictConfig, opts: RayOptions) -> None:
    """``--engine ray``: Ray's own progress on stderr, then the records and a one-line summary."""
    from simmim_deploy.serve.ray_predict import out_path, run_ray_predict

    cfg = dataclasses.replace(cfg, out=out_path(cfg.out))
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
        + (f"; results in {cfg.out}" if cfg.out else ""),
        file=sys.stderr,
    )


predict = config_command(PredictOptions, _run, DOC, shared=RayOptions, panel="Ray (--engine ray)")
