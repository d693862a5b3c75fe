"""Batched offline prediction: sources in, one JSON line per image out.

Example:
    >>> from simmim_deploy.serve.predict import predict
    >>> summary = predict("bundle", ["photos/", "more/*.jpg"], batch_size=16, out="r.jsonl")
"""

from __future__ import annotations

import contextlib
import glob
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simmim_deploy.core.atomic import atomic_path
from simmim_deploy.core.backends import backend_help
from simmim_deploy.core.config import flag_for, option
from simmim_deploy.core.errors import UserError
from simmim_deploy.serve.images import FAST_DECODE, FAST_DECODE_HELP, IMAGE_SUFFIXES, load_image
from simmim_deploy.serve.pipeline import PipelineStats, default_workers, run_pipeline
from simmim_deploy.serve.runtime import Runtime

LIST_SUFFIXES = (".txt", ".lst", ".list")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PredictConfig:
    """Options of ``simmim-deploy predict`` (help text in each field; validated on construction)."""

    bundle: str = option(
        help="Bundle directory (from export), or a checkpoint with --backend torch.",
        positional=True,
    )
    sources: tuple[str, ...] = option(
        help="Images, folders (recursive), globs or .txt lists of paths.", positional=True
    )
    batch_size: int = option(8, "Images per inference call.", short="-b")
    backend: str = option("auto", "Inference backend: " + backend_help("torch, or a model file"))
    precision: str | None = option(None, "Bundle artefact: fp32, fp16, int8...")
    top_k: int = option(5, "Classes per image (classification).")
    score_thresh: float = option(0.25, "Minimum box score (detection).", old_flags=("--conf",))
    out: str | None = option(
        None,
        "JSON lines file (default: stdout); --engine ray also takes .parquet or a folder.",
        short="-o",
    )
    save_vis: str | None = option(None, "Folder for images with labels/boxes drawn.")
    workers: int = option(
        0,
        "Decoding threads (0: one per spare core); --engine ray: per actor, or decoding tasks "
        "at once with --decode-in tasks.",
    )
    threads: int | None = option(None, "Inference threads (ONNX Runtime intra-op).")
    fast_decode: bool = option(FAST_DECODE, FAST_DECODE_HELP)

    def __post_init__(self) -> None:
        if not self.sources:
            raise UserError("give at least one SOURCE: an image, a folder, a glob or a .txt list")
        for name, low in (("batch_size", 1), ("top_k", 1), ("workers", 0)):
            if getattr(self, name) < low:
                raise UserError(
                    f"{flag_for(self, name)} must be >= {low}, got {getattr(self, name)}"
                )
        if not 0.0 <= self.score_thresh <= 1.0:
            raise UserError(
                f"{flag_for(self, 'score_thresh')} must be between 0 and 1, got {self.score_thresh}"
            )


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _read_list(path: Path) -> list[str]:
    """Paths listed one per line (``#`` comments, blank lines skipped; relative to the list)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entry = Path(line).expanduser()
            out.append(str(entry if entry.is_absolute() else path.parent / entry))
    return out


def expand_sources(sources: list[str] | tuple[str, ...]) -> list[str]:
    """Files, folders (recursive, image suffixes), globs and ``.txt`` lists -> image paths.

    A listed path that does not exist stays in the list (it becomes an error line); a SOURCE
    that matches nothing is a user error.
    """
    paths: list[str] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
            paths.extend(str(p) for p in sorted(found) if p.is_file())
        elif path.is_file():
            is_list = path.suffix.lower() in LIST_SUFFIXES
            paths.extend(_read_list(path) if is_list else [str(path)])
        elif _is_glob(source):
            matches = sorted(glob.glob(str(path), recursive=True))
            if not matches:
                raise UserError(f"the glob {source!r} matches no file")
            paths.extend(m for m in matches if Path(m).is_file())
        else:
            raise UserError(f"{source}: no such file or folder (quote globs: 'dir/*.jpg')")
    if not paths:
        raise UserError(f"no images found in {', '.join(sources)} (suffixes {IMAGE_SUFFIXES})")
    return paths


def predict(
    bundle: str | Path,
    sources: list[str] | tuple[str, ...],
    backend: Any = "auto",
    progress: Progress | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Predict every image in ``sources``; see :func:`run_predict` for the returned summary.

    ``backend`` is a name (``auto``, ``ort``, ``ort-cpu``, ``trt``...), a model file, or an
    object implementing ``Backend`` (e.g. the PyTorch runner); ``options`` are the other fields
    of :class:`PredictConfig` (``batch_size``, ``out``, ``score_thresh``...).
    """
    named = backend if isinstance(backend, str) else "custom"
    given = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    cfg = PredictConfig(str(bundle), tuple(map(str, sources)), backend=named, **given)
    return run_predict(cfg, progress, backend=None if isinstance(backend, str) else backend)


def open_runtime(
    cfg: PredictConfig,
    backend: Any = None,
    manifest: dict[str, Any] | None = None,
    throughput: bool = False,
) -> Runtime:
    """The runtime every ``predict`` engine opens (backend selection from ``cfg.backend``);
    ``throughput``: the engine keeps ``backend.parallel`` batches in flight (local predict)."""
    return Runtime(
        cfg.bundle, backend or cfg.backend, cfg.precision, cfg.threads, manifest=manifest,
        fast_decode=cfg.fast_decode, throughput=throughput,
    )  # fmt: skip


def run_predict(
    cfg: PredictConfig,
    progress: Progress | None = None,
    backend: Any = None,
    manifest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``predict`` from its config (``backend``/``manifest``: e.g. the PyTorch runner).

    Returns:
        ``{"images", "ok", "errors", "seconds", "images_per_s", "runtime", "out", "vis",
        "config"}``, the keys of :meth:`PipelineStats.summary` (where the time went), and
        ``"results"`` (every record) when no ``out`` is given.
    """
    runtime = open_runtime(cfg, backend, manifest, throughput=True)
    paths = expand_sources(cfg.sources)
    vis_dir = Path(cfg.save_vis) if cfg.save_vis else None
    if vis_dir:
        vis_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    errors = 0
    start = time.perf_counter()
    workers = cfg.workers or default_workers()
    stats = PipelineStats()
    stream = run_pipeline(
        runtime, paths, cfg.batch_size, cfg.top_k, cfg.score_thresh, workers, stats
    )
    with jsonl_sink(cfg.out) as write:
        for done, (item, record) in enumerate(stream, 1):
            errors += "error" in record
            write(record)
            if cfg.out is None:
                records.append(record)
            if vis_dir and "error" not in record:
                _save_vis(vis_dir, item.index, record)
            if progress:
                progress(done, len(paths))
    seconds = time.perf_counter() - start
    summary = {
        "images": len(paths),
        "ok": len(paths) - errors,
        "errors": errors,
        "seconds": round(seconds, 4),
        "images_per_s": round(len(paths) / seconds, 2) if seconds > 0 else None,
        **stats.summary(seconds, workers),
        "runtime": runtime.describe(),
        "out": cfg.out,
        "vis": cfg.save_vis,
        "config": asdict(cfg),
    }
    if cfg.out is None:
        summary["results"] = records
    return summary


@contextlib.contextmanager
def jsonl_sink(out: str | None) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Write JSON lines to a temp file renamed into place only when the run completes."""
    if out is None:
        yield lambda record: None
        return
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        yield lambda record: fh.write(json.dumps(record) + "\n")  # type: ignore[func-returns-value]


def _save_vis(vis_dir: Path, index: int, record: dict[str, Any]) -> None:
    from simmim_deploy.serve.vis import draw_record

    out = vis_dir / f"{index:06d}_{Path(record['path']).stem}.jpg"
    draw_record(load_image(record["path"]), record).save(out, quality=90)
