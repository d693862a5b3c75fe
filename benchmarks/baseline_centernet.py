"""A simple strong reference detector: CenterNet-style head on a timm ViT, trained plainly.

Written independently of the product's detector (its own head, targets, loss and decoding) so
``train detect`` can be compared against something simple that works on small objects
(Zhou et al., "Objects as Points", 2019):

- features: the ViT's last token map (patch stride 16), upsampled x4 to stride 4 by two
  ``ConvTranspose2d`` (+ GroupNorm, ReLU);
- heads: class heatmap (focal loss with CenterNet's penalty-reduced negatives around Gaussian
  peaks, TTFNet's box-shaped sigma), box size in stride units (L1, weight 0.1) and centre
  offset (L1);
- decoding: 3x3 max-pool peaks, top 100;
- training: AdamW lr 1e-3 (weight decay 0.05), cosine with a 10-step warmup, batch 8, flips and
  90-degree rotations (``simmim_deploy.data.aug_presets`` orientation-free), no scale jitter;
- scoring: the product's COCO scorer (``simmim_deploy.data.coco_eval``) on the validation part,
  at the last epoch (no model selection).

    python benchmarks/baseline_centernet.py --data builtin:galaxies-det --seeds 0 1 2

Measured (vit_tiny_patch16_224 at 128 px from scratch, 30 epochs, 1 thread of a loaded 2-core
Xeon, AVX2/AVX-512F): builtin:galaxies-det mAP50 18.1 / 14.9 / 8.8 % (seeds 0-2, mean 13.9; mAP
3.7 / 3.3 / 2.2 %); builtin:nuclei-det mAP50 3.8 % (seed 0): too hard a rule for 90 steps from
scratch. The product's default detector on galaxies-det: 40.3 / 46.3 / 23.2 % (README, Results).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn

from simmim_deploy.data.aug_presets import PRESETS, apply_to_array, apply_to_boxes, draw
from simmim_deploy.data.coco import letterbox
from simmim_deploy.data.coco_eval import coco_ground_truth, coco_map, coco_results
from simmim_deploy.data.det_sources import load_detection_splits
from simmim_deploy.data.images import load_rgb

STRIDE = 4


class CenterNet(nn.Module):
    def __init__(self, model: str, img_size: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = timm.create_model(model, pretrained=False, num_classes=0, img_size=img_size)
        ch, self.patch = self.backbone.num_features, self.backbone.patch_embed.patch_size[0]
        layers: list[nn.Module] = []
        for out in (128, 64)[: int(math.log2(self.patch // STRIDE))]:
            layers += [nn.ConvTranspose2d(ch, out, 2, stride=2), nn.GroupNorm(8, out), nn.ReLU()]
            ch = out
        self.up = nn.Sequential(*layers)

        def head(n: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(ch, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, n, 1))

        self.heat, self.size, self.offset = head(num_classes), head(2), head(2)
        nn.init.constant_(self.heat[-1].bias, -2.19)  # p = 0.1, as CenterNet

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = self.backbone.forward_features(x)[:, self.backbone.num_prefix_tokens :]
        b, n, c = tokens.shape
        side = int(math.isqrt(n))
        f = self.up(tokens.transpose(1, 2).reshape(b, c, side, side))
        return self.heat(f), self.size(f), self.offset(f)


def targets(boxes: np.ndarray, labels: np.ndarray, num_classes: int, out: int):
    heat = np.zeros((num_classes, out, out), np.float32)
    size = np.zeros((2, out, out), np.float32)
    offset = np.zeros((2, out, out), np.float32)
    mask = np.zeros((out, out), np.float32)
    ys, xs = np.mgrid[0:out, 0:out].astype(np.float32)
    for (x1, y1, x2, y2), c in zip(boxes / STRIDE, labels, strict=True):
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        ix, iy = min(int(cx), out - 1), min(int(cy), out - 1)
        sx, sy = max(0.54 * w / 6, 0.5), max(0.54 * h / 6, 0.5)
        g = np.exp(-((xs - ix) ** 2) / (2 * sx**2) - ((ys - iy) ** 2) / (2 * sy**2))
        heat[c] = np.maximum(heat[c], g)
        size[:, iy, ix], offset[:, iy, ix], mask[iy, ix] = (w, h), (cx - ix, cy - iy), 1
    return heat, size, offset, mask


def sample(rec, img_size, mean, std, aug_rng, num_classes):
    image = load_rgb(rec.path)
    tensor, boxes, scale = letterbox(image, rec.boxes, img_size, mean, std)
    labels = rec.labels
    if aug_rng is not None:
        t = draw(PRESETS["orientation-free"], aug_rng)
        tensor = apply_to_array(tensor, t, channels_first=True)
        boxes = apply_to_boxes(boxes, img_size, img_size, t)
    return tensor, targets(boxes, labels, num_classes, img_size // STRIDE), scale


def loss_fn(pred, tgt) -> torch.Tensor:
    heat_logit, size, offset = pred
    heat_t, size_t, off_t, mask = tgt
    p = heat_logit.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = heat_t.eq(1).float()
    neg = (1 - heat_t) ** 4 * (1 - pos)
    focal = -(pos * (1 - p) ** 2 * p.log() + neg * p**2 * (1 - p).log()).sum()
    n = mask.sum().clamp(min=1)
    m = mask.unsqueeze(1)
    l1_size = (F.l1_loss(size, size_t, reduction="none") * m).sum() / n
    l1_off = (F.l1_loss(offset, off_t, reduction="none") * m).sum() / n
    return focal / n + 0.1 * l1_size + l1_off


@torch.no_grad()
def decode(pred, k: int = 100):
    heat, size, offset = pred
    heat = heat.sigmoid()
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    b, c, h, w = heat.shape
    scores, idx = peaks.flatten(1).topk(min(k, c * h * w))
    cls, cell = idx // (h * w), idx % (h * w)
    cy, cx = (cell // w).float(), (cell % w).float()
    gather = lambda t: t.flatten(2).gather(2, cell.unsqueeze(1).expand(-1, 2, -1))  # noqa: E731
    wh, off = gather(size), gather(offset)
    x, y = cx + off[:, 0], cy + off[:, 1]
    boxes = torch.stack(
        [x - wh[:, 0] / 2, y - wh[:, 1] / 2, x + wh[:, 0] / 2, y + wh[:, 1] / 2], -1
    )
    return boxes * STRIDE, scores, cls


def run(args: argparse.Namespace, seed: int) -> dict[str, float]:
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
    splits = load_detection_splits(args.data, None, args.work, 0.1, 0)
    nc = len(splits.class_names)
    model = CenterNet(args.model, args.img_size, nc)
    cfg = timm.data.resolve_data_config({}, model=model.backbone)
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    recs = splits.train.images
    steps_per_epoch = math.ceil(len(recs) / args.batch_size)
    total, warm = steps_per_epoch * args.epochs, 10
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / total))
    )
    rng = random.Random(seed)
    for epoch in range(args.epochs):
        if epoch and epoch % args.eval_every == 0:
            m = evaluate(model, splits.val, args.img_size, mean, std, nc)
            print(f"seed {seed} epoch {epoch}: val mAP50 {m['mAP50']:.3f}", flush=True)
        model.train()
        order = rng.sample(range(len(recs)), len(recs))
        for i in range(0, len(order), args.batch_size):
            items = [
                sample(recs[j], args.img_size, mean, std, rng, nc)
                for j in order[i : i + args.batch_size]
            ]
            x = torch.stack([t for t, _, _ in items])
            tgt = [torch.from_numpy(np.stack([it[1][k] for it in items])) for k in range(4)]
            loss = loss_fn(model(x), tgt)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
    return evaluate(model, splits.val, args.img_size, mean, std, nc)


def evaluate(model, data, img_size, mean, std, nc) -> dict[str, float]:
    model.eval()
    preds = []
    for rec in data.images:
        x, _, scale = sample(rec, img_size, mean, std, None, nc)
        boxes, scores, cls = decode(model(x[None]))
        preds.append({"image_id": rec.image_id, "boxes": (boxes[0] / scale).numpy(),
                      "scores": scores[0].numpy(), "labels": cls[0].numpy()})  # fmt: skip
    return coco_map(coco_ground_truth(data), coco_results(preds, data.category_ids))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="builtin:galaxies-det")
    p.add_argument("--model", default="vit_tiny_patch16_224")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=10**9, help="print val mAP50 every N epochs")
    p.add_argument("--work", default="runs/baseline-centernet")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for seed in args.seeds:
        start = time.perf_counter()
        m = run(args, seed)
        results.append(m)
        print(json.dumps({"seed": seed, **m, "seconds": round(time.perf_counter() - start, 1)}))
    for key in ("mAP50", "mAP"):
        vals = [r[key] for r in results]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        print(f"{key}: mean {statistics.mean(vals):.3f} +- {sd:.3f} over seeds {args.seeds}")


if __name__ == "__main__":
    main()
