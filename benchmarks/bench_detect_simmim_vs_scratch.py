"""Does SimMIM pre-training pay off for detection? SimMIM encoder vs random init, same budget.

1. The unlabelled pool: the training images of ``builtin:digits-det`` (real MNIST digits on
   scikit-image photographs; the validation images are never seen in pre-training).
2. SimMIM pre-training on that pool (``run_pretrain``), once (or ``--pretrained PATH``).
3. Detection fine-tuning (``run_detect``, recipe ``train/detect_vit_micro_builtin.yaml``) from
   the SimMIM encoder and from scratch, identical recipe and budget, for each seed, in
   ``--jobs`` parallel single-thread processes; scored on the validation part at the LAST epoch
   (COCO mAP@[.5:.95] and mAP50; no model selection on the validation set).
4. A markdown table: mean +- std over seeds, the SimMIM - scratch delta and ratio.

Default (vit_micro_patch8_64 at 64 px; 60 pre-training epochs on 2 threads, then 3 seeds x 2
inits = 6 fine-tunes of the recipe's 22 epochs (~200 s of CPU each) in 2 parallel single-thread
jobs): about 15 min on 2 idle CPU cores.
    python benchmarks/bench_detect_simmim_vs_scratch.py --work runs/bench-detect
Smoke test (a few minutes):
    python benchmarks/bench_detect_simmim_vs_scratch.py --work /tmp/bd \\
        --data builtin:digits-det-mini --pretrain-epochs 1 --epochs 1 --seeds 1
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import statistics
import time
from pathlib import Path
from typing import Any

PRETRAIN_EPOCHS = 60
RECIPE = Path(__file__).resolve().parents[1] / "train" / "detect_vit_micro_builtin.yaml"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="builtin:digits-det", help="builtin:digits-det[-mini]")
    p.add_argument("--recipe", type=Path, default=RECIPE, help="detection recipe YAML")
    p.add_argument("--model", default="vit_micro_patch8_64")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--work", type=Path, default=Path("runs/bench-detect-simmim-vs-scratch"))
    p.add_argument("--pretrained", default=None, help="skip pre-training, use this encoder")
    p.add_argument("--pretrain-epochs", type=int, default=PRETRAIN_EPOCHS)
    p.add_argument("--pretrain-lr", type=float, default=8e-3, help="base LR per 512 images")
    p.add_argument("--mask-patch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=None, help="fine-tune epochs (recipe's if unset)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2, help="parallel fine-tunes, 1 thread each")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads of pre-training (0: --jobs)"
    )
    return p.parse_args()


def pool_folder(data: str, work: Path) -> Path:
    """The training images of the detection set (unlabelled pool for pre-training)."""
    from simmim_deploy.data.det_sources import load_detection_splits

    splits = load_detection_splits(data, None, work / "data")
    return splits.train.images[0].path.parent


def pretrain(args: argparse.Namespace, pool: Path) -> str:
    from simmim_deploy.train.pretrain import PretrainConfig, run_pretrain

    out = args.work / "pretrain"
    encoder = out / "encoder.safetensors"
    if encoder.is_file():
        return str(encoder)
    cfg = PretrainConfig(
        data=str(pool), model=args.model, img_size=args.img_size, epochs=args.pretrain_epochs,
        batch_size=64, lr=args.pretrain_lr, warmup_epochs=min(2, args.pretrain_epochs - 1),
        lr_scaling="linear",
        min_lr=args.pretrain_lr / 100, mask_patch_size=args.mask_patch_size, workers=0,
        save_every_steps=0, device=args.device, out=str(out),
    )  # fmt: skip
    return str(run_pretrain(cfg).encoder)


def finetune_job(job: dict[str, Any]) -> dict[str, Any]:
    """One fine-tune in its own process (single thread); returns its last-epoch scores."""
    import torch

    torch.set_num_threads(1)
    from simmim_deploy.core.config import load_config
    from simmim_deploy.core.run_summary import SUMMARY_FILE, read_run_summary
    from simmim_deploy.train.detect import DetectConfig, run_detect

    out = Path(job["overrides"]["out"])
    summary = read_run_summary(out) if (out / SUMMARY_FILE).is_file() else None
    if summary is None or not summary.completed:
        resume = (out / "checkpoints" / "last.pt").is_file() or None
        cfg = load_config(DetectConfig, job["recipe"], {**job["overrides"], "resume": resume})
        summary = run_detect(cfg)
    last = summary.last or summary.best
    return {"init": job["init"], "seed": job["seed"], "mAP": last["mAP"], "mAP50": last["mAP50"]}


def finetune_jobs(args: argparse.Namespace, encoder: str) -> list[dict[str, Any]]:
    jobs = []
    for seed in range(args.seeds):
        for init in ("simmim", "scratch"):
            overrides = {
                "data": args.data, "model": args.model, "img_size": args.img_size, "seed": seed,
                "pretrained": encoder if init == "simmim" else "none",
                "out": str(args.work / f"{init}-seed{seed}"), "epochs": args.epochs,
                "device": args.device, "workers": 0, "progress": False,
            }  # fmt: skip
            jobs.append({"init": init, "seed": seed, "recipe": str(args.recipe),
                         "overrides": overrides})  # fmt: skip
    return jobs


def run_jobs(jobs: list[dict[str, Any]], parallel: int) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no shared torch state
    rows = []
    with cf.ProcessPoolExecutor(max_workers=max(parallel, 1), mp_context=ctx) as pool:
        for row in pool.map(finetune_job, jobs):
            print(f"  {row['init']:7s} seed {row['seed']}: mAP {row['mAP']:.3f} "
                  f"mAP50 {row['mAP50']:.3f}", flush=True)  # fmt: skip
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    def stats(init: str, key: str) -> tuple[float, float]:
        vals = [r[key] for r in rows if r["init"] == init]
        return statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0

    lines = [
        "| metric | SimMIM | scratch | delta | ratio |",
        "|---|---|---|---|---|",
    ]
    for key in ("mAP", "mAP50"):
        (sm, ss), (cm, cs) = stats("simmim", key), stats("scratch", key)
        ratio = f"{sm / cm:.2f}x" if cm > 0 else "n/a"
        lines.append(
            f"| {key} | {100 * sm:.1f} +- {100 * ss:.1f} | {100 * cm:.1f} +- {100 * cs:.1f} "
            f"| {100 * (sm - cm):+.1f} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads or max(args.jobs, 1))
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    encoder = args.pretrained or pretrain(args, pool_folder(args.data, args.work))
    mid = time.perf_counter()
    rows = run_jobs(finetune_jobs(args, encoder), args.jobs)
    end = time.perf_counter()
    text = (
        f"Detection on {args.data}, {args.model} @ {args.img_size} px, {args.seeds} seed(s), "
        f"last-epoch COCO mAP (%) on the validation part; times: pre-train {mid - start:.0f} s, "
        f"fine-tunes {end - mid:.0f} s ({args.jobs} parallel jobs)\n\n" + table(rows)
    )
    (args.work / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.work / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
