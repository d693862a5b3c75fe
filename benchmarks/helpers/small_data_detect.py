"""The detection part of ``benchmarks/bench_small_data.py`` (``--task det``).

``builtin:galaxies-det`` (19 training / 6 validation tiles of 128 px from scikit-image's Hubble
deep field, 167 / 55 objects of 5-39 px, median 9), ``vit_tiny_patch16_224`` at 128 px, the
issue-10 new-user command, mAP of the run's ``metrics.json`` (best validation epoch). Rows, one
run per seed, every CLI command through ``bench_small_data.run_cli`` (its niceness, 1 thread)
and with ``--seed N --workers 0 --device cpu --no-progress --out RUN`` added:

- ``old defaults``: :data:`COMMAND` on a checkout of the code before issue 10 (``--old-src``),
  given the set's COCO folder (that code has no ``builtin:galaxies-det``).
- ``new defaults``: :data:`COMMAND` on this code: no ``--aug``, ``--head``, ``--strides``,
  ``--lr`` (all chosen from the data and printed).
- ``aug natural``: the same with ``--aug natural`` (what ``auto`` chose instead: the gain of
  ``orientation-free``).
- ``new defaults + SimMIM``: the same with ``--pretrained`` the encoder of ``train pretrain
  --config train/pretrain_vit_tiny_det_small.yaml`` on the unlabelled pool: 128 px windows
  (stride 32) of the whole deep field (872 x 1000 px) that do not overlap a validation tile.
- ``baseline``: ``benchmarks/baseline_centernet.py`` (CenterNet-style head, flips + rot90,
  last-epoch mAP), run in-process.

Everything is cached under ``WORK/runs/det`` (a rerun skips finished runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from bench_rows import check_rows

ROOT = Path(__file__).resolve().parents[2]
DATA = "builtin:galaxies-det"
COMMAND = ["train", "detect", "--data", DATA, "--model", "vit_tiny_patch16_224", "--img-size",
           "128", "--pretrained", "none", "--epochs", "30", "--batch-size", "8"]  # fmt: skip
PRETRAIN_RECIPE = ROOT / "train" / "pretrain_vit_tiny_det_small.yaml"
ROWS = ("old defaults", "new defaults", "aug natural", "new defaults + SimMIM", "baseline")
WINDOW, STEP = 128, 32


def prepare_pool(work: Path) -> Path:
    """Write the unlabelled pre-training pool (see the module docstring); returns its folder."""
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    from simmim_deploy.data.builtin_tiles import validation_origins

    folder = work / "data" / "det" / "pool"
    if (folder / ".complete").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    full = np.asarray(skdata.hubble_deep_field(), np.uint8)
    held = validation_origins(DATA.removeprefix("builtin:"))
    count = 0
    for y in range(0, full.shape[0] - WINDOW + 1, STEP):
        for x in range(0, full.shape[1] - WINDOW + 1, STEP):
            if any(abs(x - vx) < WINDOW and abs(y - vy) < WINDOW for vx, vy in held):
                continue  # shares pixels with a validation tile
            Image.fromarray(full[y : y + WINDOW, x : x + WINDOW]).save(folder / f"{y}_{x}.png")
            count += 1
    (folder / ".complete").write_text(str(count))
    return folder


def pretrain(ctx: argparse.Namespace, run_cli: Any) -> str:
    """SimMIM pre-training on the pool with the small-data recipe (cached)."""
    out = ctx.work / "pretrain" / "det"
    encoder = out / "encoder.safetensors"
    if not encoder.is_file():
        cmd = ["train", "pretrain", "--config", str(PRETRAIN_RECIPE), "--data",
               str(prepare_pool(ctx.work)), "--device", "cpu", "--out", str(out)]  # fmt: skip
        if ctx.pretrain_epochs:
            cmd += ["--epochs", str(ctx.pretrain_epochs)]
        if (out / "checkpoints" / "last.pt").is_file():
            cmd.append("--resume")
        seconds = run_cli(cmd, ctx.work / "pretrain" / "det.log", ctx.new_src)
        (out / "wall_s.txt").write_text(f"{seconds:.1f}")
    return str(encoder)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_small_data.py --task det", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    p.add_argument("--work", type=Path, default=Path("runs/bench-small-data"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--old-src", type=Path, default=None, help="checkout before issue 10")
    p.add_argument("--new-src", type=Path, default=None, help="checkout to measure (this one)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="*", default=list(ROWS), help="subset of ROWS")
    p.add_argument("--epochs", type=int, default=None, help="replace the command's 30 epochs")
    p.add_argument("--pretrain-epochs", type=int, default=None, help="override the recipe's")
    p.add_argument(
        "--precision",
        default=None,
        help="pass --precision X to every train detect run (rows tagged [X])",
    )
    p.add_argument("--name", default="small_data_det", help="stem of the result files")
    p.add_argument("--collect", action="store_true", help="start nothing: tabulate what is done")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 epoch, 1 seed")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.pretrain_epochs = [0], 1, 1
        args.rows = ["new defaults + SimMIM"]
    check_rows(p, args, ROWS)
    return args


def command(ctx: argparse.Namespace, row: str, seed: int, run: Path) -> list[str]:
    """The CLI command of one (row, seed) run."""
    cmd = list(COMMAND)
    if ctx.epochs:
        cmd[cmd.index("--epochs") + 1] = str(ctx.epochs)
    if row.endswith(" + SimMIM"):
        cmd[cmd.index("--pretrained") + 1] = ctx.encoder
    if row == "aug natural":
        cmd += ["--aug", "natural"]
    if ctx.precision:
        cmd += ["--precision", ctx.precision]
    cmd += ["--seed", str(seed), "--workers", "0", "--device", "cpu", "--out", str(run)]
    if row != "old defaults":
        return cmd + ["--no-progress"]
    from simmim_deploy.data.builtin_tiles import tile_detection_root

    # the old code has neither --no-progress nor the builtin set: its COCO folder (train/ + val/)
    cmd[cmd.index(DATA)] = str(tile_detection_root(DATA.removeprefix("builtin:")))
    return cmd


def detect_run(ctx: argparse.Namespace, row: str, seed: int, run_cli: Any) -> dict[str, Any]:
    """One ``train detect`` run (cached once its metrics.json exists)."""
    tag = row.replace(" + ", "-").replace(" ", "-") + (f"-{ctx.precision}" if ctx.precision else "")
    run = ctx.work / "runs" / "det" / tag / f"s{seed}"
    if not (run / "metrics.json").is_file() and not ctx.collect:
        src = ctx.old_src if row == "old defaults" else ctx.new_src
        run_cli(command(ctx, row, seed, run), run.with_suffix(".log"), src)
    if not (run / "metrics.json").is_file():
        return {}
    m = json.loads((run / "metrics.json").read_text())
    scale = 100.0 if row == "old defaults" else 1.0  # the old code logged fractions
    wall = (run / "metrics.json").stat().st_mtime - (run / "config.yaml").stat().st_mtime
    shown = f"{row} [{ctx.precision}]" if ctx.precision else row
    result = dict(row=shown, seed=seed, run=str(run), mAP50=scale * float(m["mAP50"]),
                  mAP=scale * float(m["mAP"]), best_epoch=m.get("best_epoch") or m.get("epoch"),
                  wall_s=round(wall, 1))  # fmt: skip
    print(f"  {shown:24s} seed {seed}: mAP50 {result['mAP50']:.1f}, mAP {result['mAP']:.1f}")
    return result


def baseline_run(ctx: argparse.Namespace, seed: int) -> dict[str, Any]:
    """``benchmarks/baseline_centernet.py`` for one seed (cached as ``WORK/runs/det/baseline``)."""
    import subprocess

    path = ctx.work / "runs" / "det" / "baseline" / f"s{seed}.json"
    if not path.is_file() and not ctx.collect:
        path.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["nice", "-n", "19", sys.executable, str(ROOT / "benchmarks" /
               "baseline_centernet.py"), "--data", DATA, "--seeds", str(seed), "--threads", "1",
               "--epochs", str(ctx.epochs or 30)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
        line = next(x for x in out.splitlines() if x.startswith("{"))
        path.write_text(line + "\n")
    if not path.is_file():
        return {}
    m = json.loads(path.read_text())
    return dict(
        row="baseline",
        seed=seed,
        mAP50=100 * float(m["mAP50"]),
        mAP=100 * float(m["mAP"]),
        best_epoch="last",
        wall_s=m.get("seconds"),
        source=m.get("source"),
    )  # the script reports fractions


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} ± {std:.1f}" if values else "n/a"


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| contender | mAP50 % | mAP50 per seed | mAP % | seeds | wall per run (s) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for row in dict.fromkeys(r["row"] for r in results):
        mine = sorted((r for r in results if r["row"] == row), key=lambda r: r["seed"])
        per_seed = ", ".join(f"{r['mAP50']:.1f}" for r in mine)
        walls = [r["wall_s"] for r in mine if r.get("wall_s")]
        wall = f"{statistics.fmean(walls):.0f}" if walls else "-"
        lines.append(f"| {row} | {mean_std([r['mAP50'] for r in mine])} | {per_seed} | "
                     f"{mean_std([r['mAP'] for r in mine])} | {len(mine)} | {wall} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str], run_cli: Any, machine: Any) -> None:
    """Run (or collect) every row and seed; write ``OUT/NAME.json`` and ``OUT/NAME.md``."""
    import time

    ctx = parse_args(argv)
    ctx.work.mkdir(parents=True, exist_ok=True)
    t0, before = time.perf_counter(), machine()
    print(f"CPU: {before['cpu']}; ISA: {before['isa']}; load {before['load'][0]:.1f}", flush=True)
    simmim = any(r.endswith("+ SimMIM") for r in ctx.rows)
    ctx.encoder = pretrain(ctx, run_cli) if simmim and not ctx.collect else ""
    if simmim and ctx.collect:
        ctx.encoder = str(ctx.work / "pretrain" / "det" / "encoder.safetensors")
    results = []
    for seed in ctx.seeds:
        for row in ctx.rows:
            done = baseline_run(ctx, seed) if row == "baseline" else detect_run(
                ctx, row, seed, run_cli)  # fmt: skip
            results.append(done) if done else print(f"  not finished: {row} seed {seed}")
    after, md = machine(), table(results)
    pre = ctx.work / "pretrain" / "det" / "wall_s.txt"
    shown = " ".join(COMMAND).replace("--epochs 30", f"--epochs {ctx.epochs or 30}")
    header = (
        f"`{shown}` (+ `--seed N --workers 0 --device cpu`; SimMIM: `--pretrained "
        f"ENCODER`), seeds {ctx.seeds}; mAP on the 6 validation tiles, best "
        f"epoch (baseline: last). CPU {before['cpu']}, ISA {before['isa']}; load during this "
        f"call {before['load'][0]:.1f} -> {after['load'][0]:.1f}; SimMIM pre-training "
        f"{f'{float(pre.read_text()):.0f} s' if pre.is_file() else 'not run'}; 1 thread a run"
    )
    sources = sorted({r["source"] for r in results if r.get("source")})
    header += "".join(f"; baseline: {src}" for src in sources)
    print(f"\n{header}\n\n{md}", flush=True)
    ctx.out.mkdir(parents=True, exist_ok=True)
    name = f"{ctx.name}_quick" if ctx.quick else ctx.name
    summary = {"header": header, "machine": {"before": before, "after": after},
               "command": COMMAND, "pretrain_recipe": str(PRETRAIN_RECIPE.relative_to(ROOT)),
               "argv": argv, "table_md": md, "runs": results,
               "wall_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
    for suffix, text in (("json", json.dumps(summary, indent=1)), ("md", f"{header}\n\n{md}\n")):
        tmp = ctx.out / f".{name}.{suffix}.tmp"
        tmp.write_text(text)
        tmp.replace(ctx.out / f"{name}.{suffix}")
