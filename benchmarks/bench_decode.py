"""Decode + preprocess cost per image: full JPEG decode vs ``--fast-decode`` (libjpeg DCT scaling).

The photos are ``bench_serve_load.py``'s (scikit-image samples at 480-1024 px, JPEG q90); each
image goes through the runtime's own ``prepare_image`` (decode, resize, centre crop, normalise)
for a classifier input of ``--crop`` px, on one thread, in interleaved rounds (best kept). Also
prints how far the two inputs are apart (mean |difference| in normalised units). Together with
``benchmark``'s model-only figure this bounds ``predict``: with ``d`` ms of decoding per image on
the cores inference also uses, ``predict`` reaches at most ``t / (t + d)`` of model-only, ``t``
being the model's CPU time per image.

    python benchmarks/bench_decode.py --images 40 --crop 112 --rounds 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_serve_load import make_jpegs

from simmim_deploy.core.cpu import cpu_info
from simmim_deploy.serve.preprocess import PreprocessSpec
from simmim_deploy.serve.runtime import prepare_image

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--crop", type=int, default=112, help="network input side (resize = /0.875)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    spec = PreprocessSpec.eval_transform("classification", args.crop, MEAN, STD, "bicubic", 0.875)
    paths = make_jpegs(Path(tempfile.mkdtemp()), args.images)
    data = [p.read_bytes() for p in paths]
    best = {"full": float("inf"), "fast": float("inf")}
    for _ in range(args.rounds):
        for name in best:
            start = time.perf_counter()
            for blob in data:
                prepare_image(blob, spec, fast_decode=name == "fast")
            best[name] = min(best[name], (time.perf_counter() - start) / len(data) * 1e3)
    diff = np.mean(
        [
            np.abs(
                prepare_image(b, spec, fast_decode=True).array
                - prepare_image(b, spec, fast_decode=False).array
            ).mean()
            for b in data
        ]
    )
    print(f"CPU: {cpu_info().model}; ISA: {cpu_info().isa_line()}; 1 thread")
    print(f"{len(data)} JPEG photos (480-1024 px) -> {args.crop} px input, best of {args.rounds}")
    print("| decode + preprocess | ms per image | x full |\n| --- | --- | --- |")
    for name, ms in best.items():
        print(f"| {name} | {ms:.2f} | {best['full'] / ms:.2f}x |")
    print(f"mean |fast - full| of the network input: {diff:.4f} (normalised units)")


if __name__ == "__main__":
    main()
