"""Throughput of ``predict --engine ray`` vs local ``predict`` on the same machine and images.

1. A bundle: ``--bundle``, or a ViT-Ti/16 classifier at 224 px with random weights exported with
   ``simmim-deploy export`` (speed depends on the architecture only).
2. ``--images`` JPEGs of real photos (scikit-image samples) at camera-like sizes.
3. One local Ray instance on 127.0.0.1 for the whole run (its start is reported separately),
   then ``--rounds`` interleaved rounds of: local ``predict``, ``--engine ray --actors 1``,
   ``--engine ray --actors 2`` (the order rotates every round). Each run is timed end to end
   (opening the runtime / starting the actors included) and its records are checked: one per
   image, and the same top-1 label as local ``predict``. Throughput is also given after start-up
   (Ray: from its first record, i.e. once the actors are up; local: with its runtime open), the
   rate a long run approaches.

Targets: Ray with one actor >= 0.8x local (the overhead of the engine); actors 2 vs 1 (scaling,
which needs spare cores). Prints a markdown table and writes JSON.

Example:
    python benchmarks/bench_ray_predict.py --images 384 --rounds 3 --batch-size 16
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve_load import make_jpegs  # noqa: E402

from simmim_deploy.serve.predict import PredictConfig, open_runtime, run_predict  # noqa: E402
from simmim_deploy.serve.ray_options import RayOptions  # noqa: E402
from simmim_deploy.serve.ray_predict import connect, run_ray_predict  # noqa: E402


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


def run_once(kind: str, cfg: PredictConfig) -> dict:
    """One timed run; ``kind`` is ``local``, ``ray-1`` or ``ray-2``."""
    start = time.perf_counter()
    if kind == "local":
        summary = run_predict(cfg)
    else:
        summary = run_ray_predict(cfg, RayOptions(actors=int(kind.split("-")[1])))
    wall = time.perf_counter() - start
    records = summary["results"]
    return {"kind": kind, "wall_s": wall, "images_per_s": len(records) / wall,
            "engine_s": summary["seconds"], "actors": summary.get("actors", 1),
            "first_record_s": summary.get("first_record_s"),
            "top1": [r["topk"][0]["index"] if "topk" in r else None for r in records]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--model", default="vit_tiny_patch16_224")
    ap.add_argument("--images", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="inference threads per runtime")
    ap.add_argument("--backend", default="auto", help="the same for both engines")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ray_predict.json"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench ray "))
    bundle = args.bundle or make_bundle(work, args.model)
    make_jpegs(work / "photos", args.images)
    cfg = PredictConfig(str(bundle), (str(work / "photos"),), batch_size=args.batch_size,
                        backend=args.backend, top_k=1, threads=args.threads)  # fmt: skip
    described = open_runtime(cfg).describe()["backend"]  # also fills `auto`'s choice cache
    t0 = time.perf_counter()
    ray, started = connect(None)
    ray_start = time.perf_counter() - t0
    kinds = ["local", "ray-1", "ray-2"]
    runs = []
    load_start = os.getloadavg()
    try:
        for r in range(args.rounds):
            for kind in kinds[r % 3 :] + kinds[: r % 3]:
                runs.append({"round": r, **run_once(kind, cfg)})
                print(f"round {r} {kind}: {runs[-1]['images_per_s']:.1f} img/s", flush=True)
    finally:
        if started:
            ray.shutdown()
    reference = next(x["top1"] for x in runs if x["kind"] == "local")
    for x in runs:  # random weights: near-tied logits may flip a label across batchings
        top1 = x.pop("top1")
        assert len(top1) == args.images, f"{x['kind']}: {len(top1)} records"
        same = sum(a == b for a, b in zip(top1, reference, strict=True))
        x["top1_agreement"] = same / args.images
        assert x["top1_agreement"] >= 0.99, f"{x['kind']}: top-1 differs from local predict"
    best = {k: max(x["images_per_s"] for x in runs if x["kind"] == k) for k in kinds}
    med = {k: statistics.median(x["images_per_s"] for x in runs if x["kind"] == k) for k in kinds}
    ratio = {k: statistics.median(
        x["images_per_s"] / next(y["images_per_s"] for y in runs
                                 if y["round"] == x["round"] and y["kind"] == "local")
        for x in runs if x["kind"] == k) for k in kinds}  # fmt: skip
    load = os.getloadavg()
    first = {k: statistics.median(x["first_record_s"] or 0 for x in runs if x["kind"] == k)
             if k != "local" else "-" for k in kinds}  # fmt: skip
    # After start-up: local from its first image (runtime already open); Ray from its first
    # record (actors up, first batch decoded and inferred).
    steady = {k: statistics.median(
        (args.images if k == "local" else args.images - args.batch_size)
        / (x["engine_s"] - (x["first_record_s"] or 0)) for x in runs if x["kind"] == k)
        for k in kinds}  # fmt: skip
    rows = [
        "| engine | best img/s | median img/s | median ratio vs local (same round) "
        "| median s to first record | median img/s after start-up |",
        "|---|---|---|---|---|---|",
        *(
            f"| {k} | {best[k]:.1f} | {med[k]:.1f} | {ratio[k]:.2f}x | {first[k]} "
            f"| {steady[k]:.1f} |"
            for k in kinds
        ),
    ]
    used = f"{described['backend']} {described.get('precision', '')}"
    header = (f"{args.images} JPEGs, {args.model if not args.bundle else bundle}, {used}, "
              f"batch {args.batch_size}, "
              f"{args.rounds} rounds; CPU {_isa()}, {os.cpu_count()} cores, 1-min load "
              f"{load_start[0]:.1f} at start, {load[0]:.1f} at end; Ray start {ray_start:.1f} s "
              "(once, not in the runs)")  # fmt: skip
    print(f"\n{header}\n\n" + "\n".join(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"header": header, "runs": runs, "best": best, "median": med, "ratio": ratio,
              "after_startup": steady,
              "ray_start_s": ray_start, "isa": _isa(), "loadavg": [load_start, load],
              "backend": described, "command": " ".join(sys.argv)}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
