"""Does SimMIM pre-training pay off with few labels? SimMIM encoder vs random init, same budget.

1. The unlabelled pool: the training part of a built-in labelled set (``builtin:mnist``: 4,000
   real digits; the fixed 1,000-image held-out part is never seen in pre-training), written as
   PNG files once.
2. SimMIM pre-training on that pool (``run_pretrain``), once.
3. Fine-tuning with K labels per class (stratified, seeded draw) from the SimMIM encoder and
   from scratch, with the identical recipe and budget, for each seed, in two modes: linear probe
   (frozen encoder) and full fine-tune (layer-wise LR decay). Scored on the held-out part, at
   the LAST epoch (no model selection on the evaluation set).
4. A markdown table: mean +- std top-1 over seeds and the SimMIM - scratch delta.

Default run (vit_micro_patch8_64 at 64 px on builtin:mnist; pre-training 10 epochs x 4,000
images = 620 steps of 64, mask cells 16 px (2x the model patch), peak LR 1.5e-3, no drop path;
3 seeds x K in {10, 50} x 2 inits: 12 linear probes of 300 steps (BatchNorm without affine before
the head, as MAE) and 12 full fine-tunes of 450 steps, batch 32, in 2 parallel single-thread
jobs). Measured on a 2-core machine shared with other jobs (load 5-7): pre-training 735 s
(1 thread), a linear probe 35-60 s, a full fine-tune 2.5-3 min; all 24 fine-tunes about 24 min
in 2 single-thread jobs, the whole run about 35 min (the scratch jobs need no encoder and ran
beside the pre-training). Expect well under half that on 2 idle cores. Everything is cached
under --work: a rerun skips finished steps, so ``--inits scratch`` can run while the encoder
pre-trains. Results go to --out (JSON) and WORK/results.md.
    python benchmarks/bench_simmim_vs_scratch.py --work runs/bench-simmim --out runs/bench.json
Smoke test (a minute or two):
    python benchmarks/bench_simmim_vs_scratch.py --work /tmp/b --pretrain-epochs 1 \\
        --finetune-epochs 1 --seeds 1 --labels 10 --pool 400
Re-use an encoder (skip step 2): ``--pretrained runs/pretrain/encoder.safetensors``.
Detection mAP: ``--task detect`` runs ``bench_detect_simmim_vs_scratch.py`` with the same
budget flags (its own pool: the training images of ``builtin:digits-det``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing
import statistics
import time
from pathlib import Path
from typing import Any

# The fine-tuning recipe both inits share (for a 4-block ViT on 28 px digits upscaled to 64 px):
# no mirroring or mixing of digits (mixup/cutmix of 100 images blurs the few labels), mild crops,
# short warmup, a higher LR than the ImageNet recipe because the runs are a few hundred steps.
# Layer decay 0.75: the official 0.65 is for 12 blocks; with 4 blocks 0.75^5 = 0.24 leaves the
# patch embedding about the share that 0.65^13 ... 0.65^6 leave the lower half of a ViT-B.
# Linear probe: MAE's parameter-free BatchNorm before the head (frozen features differ in scale
# per dimension), no augmentation beyond crops.
FINETUNE = {
    "full": dict(
        lr=1.6e-2, layer_decay=0.75, weight_decay=0.05, drop_path=0.1, label_smoothing=0.1,
        mixup=0.0, cutmix=0.0, randaug="rand-m6-mstd0.5-inc1", reprob=0.0,
    ),
    "linear": dict(
        lr=0.16, weight_decay=0.0, label_smoothing=0.0, mixup=0.0, cutmix=0.0,
        randaug="none", reprob=0.0, head_norm=True,
    ),
}  # fmt: skip
# LRs per 512 images scaled linearly, as when these results were measured
COMMON = dict(
    hflip=0.0, crop_scale_min=0.6, batch_size=32, workers=0, progress=False, lr_scaling="linear"
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default="classify", choices=["classify", "detect"])
    p.add_argument("--data", default="builtin:mnist", help="a labelled builtin set")
    p.add_argument("--model", default="vit_micro_patch8_64")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--work", type=Path, default=Path("runs/bench-simmim-vs-scratch"))
    p.add_argument("--pretrained", default=None, help="skip pre-training, use this encoder")
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--pretrain-lr", type=float, default=1.2e-2, help="base LR per 512 images")
    p.add_argument("--mask-patch-size", type=int, default=16, help="2x the model patch (paper)")
    p.add_argument("--mask-ratio", type=float, default=0.6)
    p.add_argument("--finetune-epochs", type=int, default=30, help="full: epochs at 50/class")
    p.add_argument("--linear-epochs", type=int, default=20, help="linear: epochs at 50/class")
    p.add_argument(
        "--inits", nargs="+", default=["scratch", "simmim"], choices=["scratch", "simmim"]
    )
    p.add_argument(
        "--out", type=Path, default=None, help="JSON results (default WORK/results.json)"
    )
    p.add_argument("--labels", type=int, nargs="+", default=[10, 50], help="labels per class")
    p.add_argument("--modes", nargs="+", default=["linear", "full"], choices=["linear", "full"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--pool", type=int, default=None, help="cap the unlabelled pool (smoke runs)")
    p.add_argument("--jobs", type=int, default=2, help="parallel fine-tunes, 1 thread each")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads of pre-training (default: jobs)"
    )
    p.add_argument("--device", default="cpu")
    return p.parse_args()


def write_pool(data: str, folder: Path, cap: int | None) -> int:
    """PNG files of the training part's images (labels dropped): the unlabelled pool."""
    from simmim_deploy.data.classification import load_classification_splits

    done = folder / ".complete"
    if done.is_file():
        return len(list(folder.glob("*.png")))
    folder.mkdir(parents=True, exist_ok=True)
    items = list(load_classification_splits(data).train.items)[:cap]
    for i, image in enumerate(items):
        image.save(folder / f"{i:05d}.png")
    done.write_text(str(len(items)))
    return len(items)


def pretrain(args: argparse.Namespace, pool: Path) -> str:
    """SimMIM pre-training on the pool (re-used when already done); returns the encoder path."""
    import torch

    from simmim_deploy.train.pretrain import PretrainConfig, run_pretrain

    out = args.work / "pretrain"
    encoder = out / "encoder.safetensors"
    if encoder.is_file():
        return str(encoder)
    # One process: use every core (on a machine shared with others, 1 thread is much faster).
    torch.set_num_threads(args.threads or max(args.jobs, 1))
    cfg = PretrainConfig(
        data=str(pool), model=args.model, img_size=args.img_size, epochs=args.pretrain_epochs,
        batch_size=64, lr=args.pretrain_lr, warmup_epochs=min(2, args.pretrain_epochs - 1),
        lr_scaling="linear",
        min_lr=args.pretrain_lr / 100, mask_patch_size=args.mask_patch_size,
        mask_ratio=args.mask_ratio, drop_path=0.0, workers=0, save_every_steps=300,
        device=args.device, out=str(out),
    )  # fmt: skip
    return run_pretrain(cfg).encoder


def finetune_job(job: dict[str, Any]) -> dict[str, Any]:
    """One fine-tune in its own process (single thread); returns the job with its score."""
    import torch

    torch.set_num_threads(1)
    from simmim_deploy.core.run_summary import SUMMARY_FILE, read_run_summary
    from simmim_deploy.train.classify import ClassifyConfig, run_classify

    out = Path(job["out"])
    if (out / SUMMARY_FILE).is_file():
        metrics = read_run_summary(out)
    else:
        interrupted = (out / "checkpoints" / "last.pt").is_file()
        cfg = ClassifyConfig(**job["config"], resume=interrupted)
        metrics = run_classify(cfg)
    return {**job, "top1": metrics.last["top1"], "best_top1": metrics.best["top1"]}


def finetune_epochs(args: argparse.Namespace, k: int, mode: str) -> int:
    """Same number of optimizer steps for every K: the epoch flags are the 50-per-class counts."""
    base = args.linear_epochs if mode == "linear" else args.finetune_epochs
    return max(1, math.ceil(base * 50 / k))


def classify_jobs(args: argparse.Namespace, encoder: str) -> list[dict[str, Any]]:
    jobs = []
    inits = [(i, p) for i, p in (("scratch", "none"), ("simmim", encoder)) if i in args.inits]
    for k in args.labels:
        for mode in args.modes:
            epochs = finetune_epochs(args, k, mode)
            for init, pretrained in inits:
                for seed in range(args.seeds):
                    out = args.work / "finetune" / f"{mode}-k{k}-{init}-s{seed}"
                    config = dict(
                        data=args.data, out=str(out), model=args.model, img_size=args.img_size,
                        pretrained=pretrained, mode=mode, labels_per_class=k, seed=seed,
                        epochs=epochs, eval_every=epochs, warmup_epochs=0.1 * epochs,
                        device=args.device, **COMMON, **FINETUNE[mode],
                    )  # fmt: skip
                    jobs.append(dict(mode=mode, k=k, init=init, seed=seed, out=str(out),
                                     config=config))  # fmt: skip
    return jobs


def run_jobs(jobs: list[dict[str, Any]], parallel: int) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no shared torch state
    with cf.ProcessPoolExecutor(max_workers=max(parallel, 1), mp_context=ctx) as pool:
        results = []
        for done in pool.map(finetune_job, jobs):
            print(f"  {done['mode']:6s} K={done['k']:<3d} {done['init']:7s} seed {done['seed']}: "
                  f"top-1 {done['top1']:.2f}", flush=True)  # fmt: skip
            results.append(done)
    return results


def table(results: list[dict[str, Any]]) -> str:
    """Mean +- std top-1 per (mode, K) and init; the delta is paired by seed (same labels)."""
    lines = [
        "| mode | labels/class | scratch top-1 (%) | SimMIM top-1 (%) | delta (pts) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["mode"], r["k"]) for r in results}, key=lambda t: (t[0] != "linear", t[1]))
    for mode, k in keys:
        rows = [r for r in results if (r["mode"], r["k"]) == (mode, k)]
        s = {r["seed"]: r["top1"] for r in rows if r["init"] == "scratch"}
        m = {r["seed"]: r["top1"] for r in rows if r["init"] == "simmim"}
        deltas = [m[seed] - s[seed] for seed in sorted(s.keys() & m.keys())]
        seeds = max(len(s), len(m))
        lines.append(
            f"| {mode} | {k} | {_ms(list(s.values()))} | {_ms(list(m.values()))} | "
            f"{_ms(deltas, sign=True)} | {seeds} |"
        )
    return "\n".join(lines)


def _ms(values: list[float], sign: bool = False) -> str:
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:+.1f} ± {std:.1f}" if sign else f"{mean:.1f} ± {std:.1f}"


def bench_classify(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    pool = args.work / "pool"
    n = write_pool(args.data, pool, args.pool)
    print(f"unlabelled pool: {n} images of {args.data} (held-out part excluded)", flush=True)
    encoder = "none"
    if "simmim" in args.inits:
        encoder = args.pretrained or pretrain(args, pool)
    t1 = time.perf_counter()
    print(f"encoder: {encoder} ({t1 - t0:.0f} s)", flush=True)
    results = run_jobs(classify_jobs(args, encoder), args.jobs)
    t2 = time.perf_counter()
    md = table(results)
    source = (
        f"encoder {args.pretrained}"
        if args.pretrained
        else f"pre-train {args.pretrain_epochs} ep on {n} unlabelled images"
    )
    header = (
        f"{args.model} @ {args.img_size} px on {args.data}; {source}; linear probe "
        f"{args.linear_epochs} ep / full fine-tune {args.finetune_epochs} ep at 50 labels/class "
        f"(same steps for every K); top-1 on the held-out part at the last epoch; wall time: "
        f"pre-train {t1 - t0:.0f} s (0 when cached), fine-tunes {t2 - t1:.0f} s"
    )
    print(f"\n{header}\n\n{md}")
    summary = {
        "header": header,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "recipe": {"common": COMMON, **FINETUNE},
        "wall_s": {"pretrain": round(t1 - t0, 1), "finetune": round(t2 - t1, 1)},
        "table_md": md,
        "runs": [{k: v for k, v in r.items() if k != "config"} for r in results],
    }
    out = args.out or args.work / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    (args.work / "results.md").write_text(f"{header}\n\n{md}\n")


def bench_detect(args: argparse.Namespace) -> None:
    """Detection mAP: hand over to the detection benchmark with the shared budget flags."""
    import subprocess
    import sys

    script = Path(__file__).with_name("bench_detect_simmim_vs_scratch.py")
    cmd = [sys.executable, str(script), "--work", str(args.work / "detect"),
           "--model", args.model, "--img-size", str(args.img_size),
           "--pretrain-epochs", str(args.pretrain_epochs), "--seeds", str(args.seeds),
           "--pretrain-lr", str(args.pretrain_lr), "--mask-patch-size", str(args.mask_patch_size),
           "--device", args.device]  # fmt: skip
    if args.pretrained:
        cmd += ["--pretrained", args.pretrained]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    raise SystemExit(subprocess.call(cmd))


# task -> runner(args): one comparison per downstream task, same pool/pre-training/seed flags.
TASKS = {"classify": bench_classify, "detect": bench_detect}


def main() -> None:
    args = parse_args()
    if args.task not in TASKS:
        raise SystemExit(f"--task must be one of {sorted(TASKS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    TASKS[args.task](args)


if __name__ == "__main__":
    main()
