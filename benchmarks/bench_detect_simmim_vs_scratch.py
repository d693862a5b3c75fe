"""Does SimMIM pre-training pay off for detection? SimMIM encoder vs random init, same budget.

1. The unlabelled pool: the training images of ``builtin:digits-det`` (real MNIST digits on
   scikit-image photographs; the validation images are never seen in pre-training).
2. SimMIM pre-training on that pool (``run_pretrain``), once (or ``--pretrained PATH``).
3. Detection fine-tuning (``run_detect``, recipe ``train/detect_vit_micro_builtin.yaml``) from
   the SimMIM encoder and from scratch, identical recipe and budget, for each seed; scored on
   the validation part at the LAST epoch (COCO mAP@[.5:.95] and mAP50).
4. A markdown table: mean +- std over seeds, the SimMIM - scratch delta and ratio.

Default (vit_micro_patch8_64, 64 px, 3 seeds x 2 inits): tens of minutes on 2 CPU cores.
    python benchmarks/bench_detect_simmim_vs_scratch.py --work runs/bench-detect
Smoke test (a couple of minutes):
    python benchmarks/bench_detect_simmim_vs_scratch.py --work /tmp/bd \\
        --data builtin:digits-det-mini \\
        --pretrain-epochs 1 --epochs 1 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

RECIPE = Path(__file__).resolve().parents[1] / "train" / "detect_vit_micro_builtin.yaml"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="builtin:digits-det", help="builtin:digits-det[-mini]")
    p.add_argument("--recipe", type=Path, default=RECIPE, help="detection recipe YAML")
    p.add_argument("--model", default="vit_micro_patch8_64")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--work", type=Path, default=Path("runs/bench-detect-simmim-vs-scratch"))
    p.add_argument("--pretrained", default=None, help="skip pre-training, use this encoder")
    p.add_argument("--pretrain-epochs", type=int, default=100)
    p.add_argument("--pretrain-lr", type=float, default=8e-3, help="base LR per 512 images")
    p.add_argument("--mask-patch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=None, help="fine-tune epochs (recipe's if unset)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
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
        batch_size=64, base_lr=args.pretrain_lr, warmup_epochs=min(2, args.pretrain_epochs - 1),
        min_lr=args.pretrain_lr / 100, mask_patch_size=args.mask_patch_size, num_workers=0,
        save_every_steps=0, device=args.device, out=str(out),
    )  # fmt: skip
    return str(run_pretrain(cfg)["encoder"])


def finetune(args: argparse.Namespace, init: str, encoder: str, seed: int) -> dict[str, Any]:
    from simmim_deploy.core.config import load_config
    from simmim_deploy.train.detect import DetectConfig, run_detect

    out = args.work / f"{init}-seed{seed}"
    overrides = {
        "data": args.data, "model": args.model, "img_size": args.img_size, "seed": seed,
        "pretrained": encoder if init == "simmim" else "none", "out": str(out),
        "epochs": args.epochs, "device": args.device, "workers": 0, "progress": False,
        "resume": (out / "checkpoints" / "last.pt").is_file() or None,
    }  # fmt: skip
    cfg = load_config(DetectConfig, args.recipe, overrides)
    if (out / "metrics.json").is_file() and json.loads((out / "metrics.json").read_text()).get(
        "completed"
    ):
        summary = json.loads((out / "metrics.json").read_text())
    else:
        summary = run_detect(cfg)
    last = summary.get("last") or summary
    return {"init": init, "seed": seed, "mAP": last["mAP"], "mAP50": last["mAP50"]}


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

    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    encoder = args.pretrained or pretrain(args, pool_folder(args.data, args.work))
    rows = [
        finetune(args, init, encoder, seed)
        for seed in range(args.seeds)
        for init in ("simmim", "scratch")
    ]
    text = (
        f"Detection on {args.data}, {args.model} @ {args.img_size} px, {args.seeds} seed(s), "
        f"last-epoch COCO mAP on the validation part ({time.perf_counter() - start:.0f} s)\n\n"
        + table(rows)
    )
    (args.work / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.work / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
