"""Throughput of ``predict --engine ray`` vs local ``predict`` on the same machine and images.

1. A bundle: ``--bundle``, or a ViT-Ti/16 classifier at 224 px with random weights exported with
   ``simmim-deploy export`` (speed depends on the architecture only).
2. ``--images`` JPEGs of real photos (scikit-image samples) at camera-like sizes.
3. One local Ray instance on 127.0.0.1 for the whole run (its start is timed once and reported
   separately), then ``--rounds`` interleaved rounds of ``--kinds``: ``local`` (local
   ``predict``), ``ray-1`` / ``ray-2`` (``--engine ray --actors 1`` / ``2``, decoding where
   ``--decode-in auto`` puts it: in the actors on one node) and ``ray-1-tasks`` (``--actors 1
   --decode-in tasks``: decoding in separate Ray tasks, the engine's layout before); the order
   rotates every round. Before the rounds the backend choice of ``--backend auto`` is measured
   and cached for every inference-thread count the runs use, so no run measures it (a warm
   machine); nothing else is warmed. Each run is timed end to end (opening the runtime /
   starting the actors included) and its records are checked: one per image, and the same top-1
   label as local ``predict``.
   ``cli-local`` / ``cli-ray-1`` run the same as a user does: a fresh ``simmim-deploy predict``
   process each (``--engine ray --actors 1``: it starts and stops its own local Ray), timed
   end to end with the records written to a file; their ratio is against ``cli-local`` of the
   same round, everything included. Run them in an invocation of their own (no bench Ray then).
4. Each run is split into start-up (until its first record: the runtime opened or the actors
   started, the first batch decoded and inferred) and steady state (the records after the first
   quarter over the time they took), the same split for both engines. A Ray job run from the
   command line also pays the Ray start once: the ratio "incl. Ray start" adds it to every Ray
   run.

Targets: Ray with one actor >= 0.8x local (the overhead of the engine); actors 2 vs 1 (scaling,
which needs spare cores). Prints a markdown table and writes JSON.

Example:
    python benchmarks/bench_ray_predict.py --images 640 --rounds 2 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve_load import make_jpegs  # noqa: E402

from simmim_deploy.serve.predict import PredictConfig, open_runtime, run_predict  # noqa: E402
from simmim_deploy.serve.ray_options import RayOptions  # noqa: E402
from simmim_deploy.serve.ray_plan import plan_pool  # noqa: E402
from simmim_deploy.serve.ray_predict import connect, run_ray_predict  # noqa: E402

KINDS = ("local", "ray-1", "ray-2", "ray-1-tasks", "cli-local", "cli-ray-1")
STEADY_FROM = 0.25  # steady state: the records after the first quarter


def make_bundle(work: Path, model_name: str) -> Path:
    """A random-weight classifier checkpoint through ``simmim-deploy export`` (fp32)."""
    import torch

    import simmim_deploy.models  # noqa: F401  (registers our timm variants)
    from simmim_deploy.models.classifier import build_classifier_from_meta

    meta = {
        "task": "classification", "model_name": model_name, "img_size": 224,
        "num_classes": 10, "class_names": [str(i) for i in range(10)],
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
        "interpolation": "bicubic", "crop_pct": 0.875, "model_kwargs": {}, "head": {},
        "pruned_arch": None,
    }  # fmt: skip
    torch.manual_seed(0)
    ckpt = work / "best.pt"
    torch.save({"model": build_classifier_from_meta(meta).state_dict(), "meta": meta}, ckpt)
    bundle = work / "bundle"
    cli = [sys.executable, "-m", "simmim_deploy.cli.main", "export", str(ckpt), "--out",
           str(bundle), "--precision", "fp32"]  # fmt: skip
    subprocess.run(cli, check=True)
    return bundle


def _isa() -> str:
    flags = set()
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
    wanted = ("avx2", "avx512f", "avx512_vnni", "amx_int8", "amx_bf16", "avx512_bf16")
    return "+".join(f for f in wanted if f in flags) or platform.machine()


def ray_options(kind: str) -> RayOptions:
    """``ray-N`` / ``ray-N-tasks`` -> the options of that run."""
    parts = kind.split("-")
    return RayOptions(actors=int(parts[1]), decode_in=parts[2] if len(parts) > 2 else "auto")


def run_once(kind: str, cfg: PredictConfig) -> dict:
    """One timed run of ``kind``, split into start-up (to the first record) and steady state.

    Steady state: the last ``1 - STEADY_FROM`` of the records over the time they took (both
    engines report each record written through the same ``progress`` callback).
    """
    times: list[float] = []

    def tick(done: int, total: int) -> None:
        times.append(time.perf_counter())

    start = time.perf_counter()
    if kind == "local":
        summary = run_predict(cfg, tick)
    else:
        summary = run_ray_predict(cfg, ray_options(kind), progress=tick)
    wall = time.perf_counter() - start
    records = summary["results"]
    mark = int(len(times) * STEADY_FROM)
    span = times[-1] - times[mark]
    steady = (len(times) - 1 - mark) / span if span > 0 else None
    return {"kind": kind, "wall_s": wall, "images_per_s": len(records) / wall,
            "first_record_s": times[0] - start, "steady_images_per_s": steady,
            "actors": summary.get("actors", 1), "layout": summary.get("ray", {}),
            "top1": [r["topk"][0]["index"] if "topk" in r else None for r in records]}  # fmt: skip


def run_cli(kind: str, cfg: PredictConfig, work: Path) -> dict:
    """One fresh ``simmim-deploy predict`` process, timed end to end (start and stop included)."""
    out = work / f"{kind}.jsonl"
    ray_flags = ["--engine", "ray", "--actors", kind.split("-")[2]] if kind != "cli-local" else []
    threads = ["--threads", str(cfg.threads)] if cfg.threads else []
    cli = [sys.executable, "-m", "simmim_deploy.cli.main", "predict", cfg.bundle, *cfg.sources,
           "-b", str(cfg.batch_size), "--top-k", "1", "--backend", cfg.backend, "--out", str(out),
           *threads, *ray_flags]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cli, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{kind} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    out.unlink()
    return {"kind": kind, "wall_s": wall, "images_per_s": len(records) / wall,
            "first_record_s": None, "steady_images_per_s": None, "actors": 1, "layout": {},
            "top1": [r["topk"][0]["index"] if "topk" in r else None for r in records]}  # fmt: skip


def reference(kind: str) -> str:
    """The run a kind is compared with: local ``predict`` started the same way."""
    return "cli-local" if kind.startswith("cli-") else "local"


def fill_auto_cache(cfg: PredictConfig, ray, kinds: list[str]) -> list[str]:
    """Open the runtime once per inference-thread count the runs use (caches ``auto``'s choice).

    ``cli-ray-1``: one actor holds the node, so it runs ``cfg.threads`` as local ``predict``.
    """
    counts = {cfg.threads}
    counts.update(plan_pool(ray, cfg, ray_options(k)).threads for k in kinds
                  if k.startswith("ray-"))  # fmt: skip
    return [open_runtime(replace(cfg, threads=t)).describe()["backend"] for t in sorted(
        counts, key=lambda t: t or 0)]  # fmt: skip


def _median_ratio(runs: list[dict], kind: str, key: str, extra_s: float = 0.0) -> float:
    """Median over rounds of (kind / its reference of the same round) for rate ``key``."""

    def rate(x: dict) -> float:
        return x[key] if not extra_s else len(x["top1"]) / (x["wall_s"] + extra_s)

    pairs = [(rate(x), next(y[key] for y in runs if y["round"] == x["round"]
                            and y["kind"] == reference(kind)))
             for x in runs if x["kind"] == kind]  # fmt: skip
    if any(a is None or b is None for a, b in pairs):  # cli runs: no per-record times
        return None
    return statistics.median(a / b for a, b in pairs)


def _median(values: list) -> float | None:
    return None if None in values else statistics.median(values)


def _cell(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{2 if unit == 'x' else 1}f}{unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--model", default="vit_tiny_patch16_224")
    ap.add_argument("--images", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-offset", type=int, default=0, help="rotate as if from this round")
    ap.add_argument("--photos", type=Path, default=None, help="reuse a folder's first JPEGs")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}")
    ap.add_argument("--threads", type=int, default=None, help="inference threads per runtime")
    ap.add_argument("--backend", default="auto", help="the same for both engines")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ray_predict.json"))
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    assert set(kinds) <= set(KINDS) and {reference(k) for k in kinds} <= set(kinds), (
        f"--kinds: some of {KINDS}, with local (cli-local for cli-ray-1)"
    )

    work = Path(tempfile.mkdtemp(prefix="bench ray "))
    bundle = args.bundle or make_bundle(work, args.model)
    if args.photos:
        found = sorted(str(p) for p in args.photos.glob("*.jpg"))[: args.images]
        assert len(found) == args.images, f"{args.photos} has {len(found)} JPEGs"
        source = work / "photos.txt"
        source.write_text("\n".join(found) + "\n")
    else:
        source = work / "photos"
        make_jpegs(source, args.images)
    cfg = PredictConfig(str(bundle), (str(source),), batch_size=args.batch_size,
                        backend=args.backend, top_k=1, threads=args.threads)  # fmt: skip
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    in_process = any(k.startswith("ray-") for k in kinds)
    ray, started = connect(None) if in_process else (None, False)
    ray_start = time.perf_counter() - t0 if in_process else 0.0
    runs = []
    try:
        described = fill_auto_cache(cfg, ray, kinds)
        for r in range(args.round_offset, args.round_offset + args.rounds):
            for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
                run = run_cli(kind, cfg, work) if kind.startswith("cli-") else run_once(kind, cfg)
                runs.append({"round": r, **run, "load1": os.getloadavg()[0]})
                x = runs[-1]
                print(f"round {r} {kind}: {x['images_per_s']:.1f} img/s end to end, first "
                      f"record {_cell(x['first_record_s'])} s, then "
                      f"{_cell(x['steady_images_per_s'])} img/s (load {x['load1']:.1f})",
                      flush=True)  # fmt: skip
    finally:
        if started:
            ray.shutdown()
    load = os.getloadavg()
    first = next(x["top1"] for x in runs if x["kind"] == reference(kinds[0]))
    for x in runs:  # random weights: near-tied logits may flip a label across batchings
        assert len(x["top1"]) == args.images, f"{x['kind']}: {len(x['top1'])} records"
        same = sum(a == b for a, b in zip(x["top1"], first, strict=True))
        x["top1_agreement"] = same / args.images
        assert x["top1_agreement"] >= 0.99, f"{x['kind']}: top-1 differs from local predict"
    table = {}
    for k in kinds:
        mine = [x for x in runs if x["kind"] == k]
        table[k] = {
            "best": max(x["images_per_s"] for x in mine),
            "median": statistics.median(x["images_per_s"] for x in mine),
            "ratio": _median_ratio(runs, k, "images_per_s"),
            "ratio_with_ray_start": _median_ratio(runs, k, "images_per_s", ray_start)
            if k.startswith("ray-") else _median_ratio(runs, k, "images_per_s"),
            "first_record_s": _median([x["first_record_s"] for x in mine]),
            "steady": _median([x["steady_images_per_s"] for x in mine]),
            "steady_ratio": _median_ratio(runs, k, "steady_images_per_s"),
        }  # fmt: skip
    rows = [
        "| engine | best img/s | median img/s | ratio vs local | ratio incl. Ray start "
        "| s to first record | steady img/s | steady ratio vs local |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {k} | {t['best']:.1f} | {t['median']:.1f} | {t['ratio']:.2f}x "
            f"| {t['ratio_with_ray_start']:.2f}x | {_cell(t['first_record_s'])} "
            f"| {_cell(t['steady'])} | {_cell(t['steady_ratio'], 'x')} |"
            for k, t in table.items()
        ),
    ]
    used = f"{described[0]['backend']} {described[0].get('precision', '')}"
    header = (f"{args.images} JPEGs, {args.model if not args.bundle else bundle}, {used}, "
              f"batch {args.batch_size}, {args.rounds} rounds; CPU {_isa()}, {os.cpu_count()} "
              f"cores, 1-min load {load_start[0]:.1f} at start, {load[0]:.1f} at end; Ray start "
              f"{ray_start:.1f} s (once, not in the in-process runs; cli runs start their own); "
              "ratios: medians over rounds of (run / local of the same round)")  # fmt: skip
    print(f"\n{header}\n\n" + "\n".join(rows))
    for x in runs:
        x.pop("top1")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"header": header, "runs": runs, "table": table, "ray_start_s": ray_start,
              "isa": _isa(), "loadavg": [load_start, load], "backends": described,
              "command": " ".join(sys.argv)}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
