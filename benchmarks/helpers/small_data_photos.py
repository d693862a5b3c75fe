"""The photo part of ``bench_small_data.py`` (``--task photo``): the issue's new-user commands.

The small-data issue reports, on a small real photo set (140 training images, 64 px), that
``train pretrain`` for 10 epochs then ``train classify --pretrained ENC --epochs 15
--batch-size 32`` (``vit_tiny_patch16_224``) gave 85 % top-1 where ``--lr`` tuned by hand gave
95-97 %. This part runs exactly those commands, on every code checkout given, next to an LR sweep
(the hand-tuning) and a pixel baseline, on a set built from real photographs inside scikit-image
(no download):

Six classes, one per source image: ``brick``, ``grass``, ``gravel`` (texture photographs),
``moon`` (a photograph of the lunar surface), ``cell`` (a microscope image) and ``ihc`` (a
stained-tissue micrograph), each cut into non-overlapping 64 px tiles (grey images replicated to
RGB). Per class a fixed third of the tiles (every third, row-major) is the test part, which
neither pre-training nor fine-tuning nor model selection sees; per seed, 24 of the others are the
training images (144 in all, the issue's scale) and 8 the validation folder. The SimMIM pool is
the training and validation images of the seed, unlabelled (what a user would pre-train on).

Every run is the real CLI in a subprocess (``run_cli`` of the caller); scores are ``evaluate``
on ``ROOT/test``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

MODEL, SIZE = "vit_tiny_patch16_224", 64
CLASSES = ("brick", "grass", "gravel", "moon", "cell", "ihc")
TRAIN_PER_CLASS, VAL_PER_CLASS = 24, 8
ISSUE_PRETRAIN = ["--epochs", "10"]
ISSUE_CLASSIFY = ["--epochs", "15", "--batch-size", "32"]
SWEEP = (1.25e-3, 2.5e-3, 5e-3)  # absolute peak LRs of the hand-tuned rows (lr-scaling none)


def source_images() -> dict[str, Any]:
    """The six source images as uint8 RGB arrays."""
    import numpy as np
    from skimage import data

    images = {
        "brick": data.brick(), "grass": data.grass(), "gravel": data.gravel(),
        "moon": data.moon(), "cell": data.cell(), "ihc": data.immunohistochemistry(),
    }  # fmt: skip
    return {k: np.repeat(v[..., None], 3, axis=2) if v.ndim == 2 else v for k, v in images.items()}


def tiles(image: Any) -> list[Any]:
    """Non-overlapping SIZE x SIZE tiles, row-major."""
    h, w = image.shape[:2]
    return [image[y : y + SIZE, x : x + SIZE] for y in range(0, h - SIZE + 1, SIZE)
            for x in range(0, w - SIZE + 1, SIZE)]  # fmt: skip


def prepare(root: Path, seeds: list[int]) -> None:
    """``ROOT/test/<class>`` once; per seed ``ROOT/s<seed>/{train,val}/<class>`` and a pool."""
    import numpy as np
    from PIL import Image

    def save(folder: Path, name: str, tile: Any) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tile).save(folder / f"{name}.png")

    if (root / ".complete").is_file():
        return
    for c, image in source_images().items():
        parts = tiles(image)
        rest = [i for i in range(len(parts)) if i % 3 != 2]
        for i in range(2, len(parts), 3):
            save(root / "test" / c, f"{c}{i:03d}", parts[i])
        for seed in seeds:
            order = np.random.default_rng(seed).permutation(rest)
            for j, i in enumerate(order[: TRAIN_PER_CLASS + VAL_PER_CLASS]):
                part = "train" if j < TRAIN_PER_CLASS else "val"
                save(root / f"s{seed}" / part / c, f"{c}{i:03d}", parts[i])
                save(root / f"s{seed}" / "pool", f"{c}{i:03d}", parts[i])
    (root / ".complete").write_text("ok")


def pixel_baseline(root: Path, seed: int) -> float:
    """Logistic regression on raw 32 px grey pixels, fitted on the seed's training images."""
    import numpy as np
    from PIL import Image
    from sklearn.linear_model import LogisticRegression

    def load(folder: Path) -> tuple[Any, Any]:
        files = sorted(folder.glob("*/*.png"))
        x = [np.asarray(Image.open(f).convert("L").resize((32, 32)), np.float32).ravel() / 255
             for f in files]  # fmt: skip
        return np.stack(x), np.asarray([f.parent.name for f in files])

    x, y = load(root / f"s{seed}" / "train")
    xt, yt = load(root / "test")
    clf = LogisticRegression(max_iter=3000).fit(x, y)
    return 100.0 * float((clf.predict(xt) == yt).mean())


def rows(ctx: argparse.Namespace) -> list[tuple[str, Path | None, str, list[str]]]:
    """``(row, src, init, extra classify flags)``; init: ``simmim`` or ``none``."""
    out = []
    for label, src in (("old defaults", ctx.old_src), ("new defaults", ctx.new_src)):
        if label == "old defaults" and src is None:
            continue
        out.append((f"{label}, SimMIM init", src, "simmim", []))
        out.append((f"{label}, scratch", src, "none", []))
    for lr in ctx.sweep:
        for init in ("simmim", "none"):
            name = f"tuned lr {lr:g}, {'SimMIM init' if init == 'simmim' else 'scratch'}"
            out.append((name, ctx.new_src, init, ["--lr", f"{lr:g}", "--lr-scaling", "none"]))
    return out


def one_run(ctx, run_cli, seed: int, row: tuple) -> dict[str, Any]:  # noqa: ANN001
    """Pre-train (cached per code and seed) and fine-tune + evaluate one row for one seed."""
    name, src, init, extra = row
    data = ctx.work / "data" / "photo"
    code = "old" if src is not None and src == ctx.old_src else "new"
    pre = ctx.work / "runs" / "photo" / f"pretrain-{code}-s{seed}"
    common = ["--model", MODEL, "--img-size", str(SIZE), "--seed", str(seed), "--workers", "0",
              "--device", "cpu"]  # fmt: skip
    if init == "simmim" and not (pre / "encoder.safetensors").is_file():
        run_cli(["train", "pretrain", "--data", str(data / f"s{seed}" / "pool"), *common,
                 *ISSUE_PRETRAIN, "--out", str(pre)], pre.with_suffix(".log"), src)  # fmt: skip
    slug = name.replace(",", "").replace(" ", "-")
    run = ctx.work / "runs" / "photo" / f"{slug}-s{seed}"
    t0 = time.perf_counter()
    if not (run / "metrics.json").is_file():
        encoder = str(pre / "encoder.safetensors") if init == "simmim" else "none"
        run_cli(["train", "classify", "--data", str(data / f"s{seed}"), *common, "--pretrained",
                 encoder, *ISSUE_CLASSIFY, *extra, "--out", str(run)], run.with_suffix(".log"),
                src)  # fmt: skip
    score = run / "eval" / "metrics.json"
    if not score.is_file():
        run_cli(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(data / "test"),
                 "--device", "cpu", "--out", str(run / "eval")], run.with_suffix(".log"),
                src)  # fmt: skip
    top1 = float(json.loads(score.read_text())["top1"])
    print(f"  {name:40s} seed {seed}: top-1 {top1:.1f}", flush=True)
    return dict(row=name, seed=seed, top1=top1, wall_s=round(time.perf_counter() - t0, 1))


def main(argv: list[str] | None, run_cli, machine) -> None:  # noqa: ANN001
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", type=Path, default=Path("runs/bench-small-data"))
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    p.add_argument("--old-src", type=Path, default=None)
    p.add_argument("--new-src", type=Path, default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sweep", type=float, nargs="*", default=list(SWEEP))
    p.add_argument("--name", default="small_data_photo")
    ctx = p.parse_args(argv)
    before, t0 = machine(), time.perf_counter()
    prepare(ctx.work / "data" / "photo", ctx.seeds)
    results = [dict(row="logistic regression on pixels", seed=s, top1=pixel_baseline(
        ctx.work / "data" / "photo", s), wall_s=None) for s in ctx.seeds]  # fmt: skip
    for seed in ctx.seeds:
        for row in rows(ctx):
            results.append(one_run(ctx, run_cli, seed, row))
    lines = ["| contender | top-1 (%) | per seed | seeds |", "|---|---|---|---|"]
    for name in dict.fromkeys(r["row"] for r in results):
        vals = [r["top1"] for r in results if r["row"] == name]
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        per = ", ".join(f"{v:.1f}" for v in vals)
        lines.append(f"| {name} | {statistics.fmean(vals):.1f} ± {std:.1f} | {per} | {len(vals)} |")
    after = machine()
    header = (
        f"{MODEL} @ {SIZE} px, 6 classes of real photo tiles (scikit-image), "
        f"{TRAIN_PER_CLASS * 6} training images; the issue's commands: train pretrain "
        f"{' '.join(ISSUE_PRETRAIN)}, train classify {' '.join(ISSUE_CLASSIFY)}; top-1 on the "
        f"fixed test tiles. CPU {before['cpu']}, ISA {before['isa']}; load "
        f"{before['load'][0]:.1f} -> {after['load'][0]:.1f}; {(time.perf_counter() - t0) / 60:.1f}"
        " min"
    )
    md = f"{header}\n\n" + "\n".join(lines) + "\n"
    print("\n" + md, flush=True)
    ctx.out.mkdir(parents=True, exist_ok=True)
    (ctx.out / f"{ctx.name}.md").write_text(md)
    (ctx.out / f"{ctx.name}.json").write_text(
        json.dumps(dict(before=before, after=after, results=results), indent=2) + "\n"
    )
