"""Training throughput of one SimMIM step: simmim-deploy vs Hugging Face ViTForMaskedImageModeling.

One step = forward + masked L1 loss + backward + AdamW update, on the same architecture (width,
depth, heads, MLP, patch, image size), the same batch and the same mask. Both models are timed in
interleaved rounds within one process (alternating which goes first) so that machine noise hits
both; the table reports median images/s and the ratio ours / HF. Neither model is pre-trained.

CPU (default): ViT-S/16 at 224 px, batch 8, 4 rounds x 3 steps (~2 min on 2 idle cores: one
step is ~205 GFLOP).
    python benchmarks/bench_pretrain_vs_hf.py --out bench_cpu.json
GPU: ViT-B/16 at 224 px in bf16 with model FLOPs utilisation (FLOPs of one training step,
fwd+bwd, counted with torch.utils.flop_counter in an extra untimed step; peak from --peak-tflops,
default H100 SXM dense bf16 = 989 TFLOP/s).
    python benchmarks/bench_pretrain_vs_hf.py --device cuda --precision bf16 --out bench_gpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from simmim_deploy import MaskGenerator, build_simmim, simmim_loss
from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.core.errors import require
from simmim_deploy.train.optim import build_optimizer

H100_BF16_DENSE_TFLOPS = 989.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--model", default=None, help="timm ViT name (default: S/16 CPU, B/16 GPU)")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=None, help="default: 8 CPU, 128 GPU")
    p.add_argument("--mask-patch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (4 CPU, 5 GPU)")
    p.add_argument("--steps", type=int, default=None, help="steps per round (3 CPU, 20 GPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (1 CPU, 3 GPU)")
    p.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    a = p.parse_args()
    gpu = a.device == "cuda"
    a.model = a.model or ("vit_base_patch16_224" if gpu else "vit_small_patch16_224")
    a.batch_size = a.batch_size or (128 if gpu else 8)
    a.steps = a.steps or (20 if gpu else 3)
    a.rounds = a.rounds or (5 if gpu else 4)
    a.warmup = a.warmup if a.warmup is not None else (3 if gpu else 1)
    return a


def build_ours(args: argparse.Namespace):
    # drop path off: the HF model has none, and both must do the same arithmetic
    model = build_simmim(args.model, img_size=args.img_size, drop_path_rate=0.0)
    return model.to(args.device).train()


def build_hf(ours, args: argparse.Namespace):
    transformers = require("transformers", "bench", "the Hugging Face baseline")
    enc = ours.encoder
    blk = enc.blocks[0]
    config = transformers.ViTConfig(
        hidden_size=enc.embed_dim,
        num_hidden_layers=len(enc.blocks),
        num_attention_heads=blk.attn.num_heads,
        intermediate_size=blk.mlp.fc1.out_features,
        image_size=args.img_size,
        patch_size=ours.patch_size,
        encoder_stride=ours.encoder_stride,
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = transformers.ViTForMaskedImageModeling(config)
    return model.to(args.device).train()


def make_steps(ours, hf, images, mask, args) -> dict[str, Callable[[], None]]:
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    amp = args.precision == "bf16"
    opt_ours = build_optimizer(ours, lr=1e-4, weight_decay=0.05)
    opt_hf = torch.optim.AdamW(hf.parameters(), lr=1e-4, weight_decay=0.05)
    hf_mask = mask.flatten(1).bool()

    def autocast():
        return torch.autocast(args.device, dtype=dtype) if amp else contextlib.nullcontext()

    def step_ours() -> None:
        opt_ours.zero_grad(set_to_none=True)
        with autocast():
            rec = ours(images, mask)
        simmim_loss(images, rec, mask, ours.patch_size).backward()
        opt_ours.step()

    def step_hf() -> None:
        opt_hf.zero_grad(set_to_none=True)
        with autocast():
            out = hf(pixel_values=images, bool_masked_pos=hf_mask)
        out.loss.backward()  # HF computes the same masked L1 (+1e-5, / channels)
        opt_hf.step()

    return {"simmim-deploy": step_ours, "hf-transformers": step_hf}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def count_flops(step: Callable[[], None]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    ours = build_ours(args)
    hf = build_hf(ours, args)
    gen = MaskGenerator(args.img_size, args.mask_patch_size, ours.patch_size)
    rng = np.random.default_rng(0)
    mask = torch.from_numpy(np.stack([gen(rng) for _ in range(args.batch_size)])).to(args.device)
    images = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=args.device)
    steps = make_steps(ours, hf, images, mask, args)
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    sync(args.device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            sync(args.device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                steps[name]()
            sync(args.device)
            times[name].append(time.perf_counter() - t0)
    ips = {n: args.batch_size * args.steps / statistics.median(t) for n, t in times.items()}
    flops = {n: count_flops(s) for n, s in steps.items()}
    peak = args.peak_tflops * 1e12
    # MFU only means something against the accelerator's peak
    mfu = (
        {n: flops[n] * ips[n] / args.batch_size / peak for n in flops}
        if args.device == "cuda"
        else {}
    )
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "device": torch.cuda.get_device_name()
        if args.device == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, **_versions()},
        "params": {"simmim-deploy": _count(ours), "hf-transformers": _count(hf)},
        "hf_attention": getattr(hf.config, "_attn_implementation", None),
        "round_seconds": times,
        "images_per_s": ips,
        "ratio_ours_over_hf": ips["simmim-deploy"] / ips["hf-transformers"],
        "train_flops_per_step": flops,
        "mfu": mfu,
    }


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _versions() -> dict[str, str]:
    import timm
    import transformers

    return {"timm": timm.__version__, "transformers": transformers.__version__}


def table(res: dict) -> str:
    cfg = res["config"]
    lines = [
        f"SimMIM pre-training step, {cfg['model']} @ {cfg['img_size']} px, batch "
        f"{cfg['batch_size']}, {cfg['precision']}, {cfg['device']} ({res['device']}, "
        f"{res['threads']} threads), {cfg['rounds']} interleaved rounds x {cfg['steps']} steps",
        "",
        "| implementation | params (M) | GFLOP/step | images/s (median) | ratio vs HF |"
        + (" MFU |" if res["mfu"] else ""),
        "|---|---|---|---|---|" + ("---|" if res["mfu"] else ""),
    ]
    hf = res["images_per_s"]["hf-transformers"]
    for name, ips in res["images_per_s"].items():
        gflop = res["train_flops_per_step"][name] / 1e9
        row = f"| {name} | {res['params'][name] / 1e6:.1f} | {gflop:.2f} | {ips:.2f} |"
        row += f" {ips / hf:.2f}x |"
        if res["mfu"]:
            row += f" {res['mfu'][name]:.1%} |"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    res = run(args)
    print(table(res))
    if args.out:
        atomic_write_text(args.out, json.dumps(res, indent=2))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
