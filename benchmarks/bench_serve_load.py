"""Load test of the serving stack on 127.0.0.1 (bounded: fixed request count and time limit).

1. Offline ``predict`` throughput on a folder of JPEGs (or ``--images-from`` a data set's own
   files) vs model-only throughput (target >= 90%: decoding hidden behind inference), in
   alternating rounds: model-only as ``benchmark`` measures it (one synchronous call) and in
   predict's own mode (OpenVINO throughput streams, ``backend.parallel`` batches in flight).
2. ``simmim-deploy serve`` in a subprocess, ``--requests`` single-image requests at concurrency 32
   (httpx) on each path, in interleaved rounds: ``/v1/predict`` (multipart JPEG), Open Inference
   Protocol v2 with the JPEG as a binary ``BYTES`` tensor (``NAME_images``) and v2 with the
   client-preprocessed ``FP32`` tensor (``NAME``); v2 bodies are built by tritonclient itself
   (binary tensor extension, its default). Throughput vs offline ``predict`` at the same batch
   size (target >= 85%), zero errors, p50/p90/p99 latency.
3. ``--malformed`` bad requests (garbage, truncated, empty, wrong field, wrong type, bombs; and
   v2 tensors of the wrong shape, datatype, name and byte count) mixed with valid ones: every bad
   one gets a 4xx, every valid one a 200, the server stays up.

Prints a markdown table and writes JSON.

Example:
    python benchmarks/bench_serve_load.py --bundle runs/bundle --batch-size 32 --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as triton
from PIL import Image

from simmim_deploy.serve.predict import expand_sources, predict
from simmim_deploy.serve.runtime import Runtime
from simmim_deploy.serve.server_v2 import IMAGES_SUFFIX


def make_jpegs(folder: Path, count: int) -> list[Path]:
    """Real photos (scikit-image samples) at assorted camera-like sizes, as JPEG files."""
    from skimage import data

    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    sizes = [(640, 480), (480, 640), (800, 600), (512, 512), (1024, 768)]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        img = Image.fromarray(photos[i % len(photos)]).resize(sizes[i % len(sizes)])
        paths.append(folder / f"img_{i:04d}.jpg")
        img.save(paths[-1], quality=90)
    return paths


def write_dataset_images(folder: Path, source: str, count: int) -> list[Path]:
    """The held-out images of a data set (``builtin:mnist``: 28 px digits) as PNG files, at their
    own size, greyscale where the image is: the input a model trained on that set is given."""
    from simmim_deploy.export.inputs import load_image_set

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(load_image_set(source, "val", count).images):
        arr = np.asarray(img)
        grey = arr.ndim == 3 and (arr == arr[..., :1]).all()
        paths.append(folder / f"img_{i:05d}.png")
        (Image.fromarray(arr[..., 0]) if grey else img).save(paths[-1])
    return paths


def model_only(
    bundle: str,
    backend: str,
    batch: int,
    seconds: float,
    threads: int | None,
    throughput: bool = False,
) -> float:
    """Images/s of the model alone on zeros. ``throughput``: opened as offline ``predict`` opens
    it (OpenVINO's THROUGHPUT streams) with ``backend.parallel`` calls in flight; otherwise one
    synchronous call at a time, as ``simmim-deploy benchmark`` measures."""
    runtime = Runtime(bundle, backend, threads=threads, throughput=throughput)
    par = max(1, int(getattr(runtime.backend, "parallel", 1))) if throughput else 1
    x = np.zeros((batch, 3, *runtime.spec.input_hw), np.float32)
    with ThreadPoolExecutor(par) as pool:
        for _ in range(3):
            list(pool.map(lambda _: runtime.infer(x), range(par)))
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or n < 3:
            list(pool.map(lambda _: runtime.infer(x), range(par)))
            n += par
    return n * batch / (time.perf_counter() - start)


def offline(bundle: str, listing: Path, backend: str, batch: int, threads: int | None) -> float:
    return predict(bundle, [str(listing)], batch_size=batch, backend=backend, threads=threads)[
        "images_per_s"
    ]


def offline_vs_model(args: argparse.Namespace, listing: Path) -> dict:
    """Model-only (as ``benchmark`` measures it, and in predict's own throughput mode) and
    offline ``predict`` alternately, ``--predict-rounds`` times (one warm-up ``predict`` first),
    so a load change on the shared machine hits all alike; medians of the rounds and of the
    per-round ratios."""
    offline(args.bundle, listing, args.backend, args.batch_size, args.threads)  # warm-up
    models, models_tp, preds = [], [], []
    for _ in range(args.predict_rounds):
        common = (args.bundle, args.backend, args.batch_size, args.model_seconds, args.threads)
        models.append(model_only(*common))
        models_tp.append(model_only(*common, throughput=True))
        preds.append(offline(args.bundle, listing, args.backend, args.batch_size, args.threads))
    ratios = [p / m for p, m in zip(preds, models, strict=True)]
    ratios_tp = [p / m for p, m in zip(preds, models_tp, strict=True)]
    return {
        "model_only_images_per_s": round(float(np.median(models)), 2),
        "model_only_throughput_images_per_s": round(float(np.median(models_tp)), 2),
        "predict_images_per_s": round(float(np.median(preds)), 2),
        "predict_vs_model": round(float(np.median(ratios)), 3),
        "predict_vs_model_throughput": round(float(np.median(ratios_tp)), 3),
        "model_only_rounds": [round(v, 1) for v in models],
        "model_only_throughput_rounds": [round(v, 1) for v in models_tp],
        "predict_rounds": [round(v, 1) for v in preds],
        "ratio_rounds": [round(v, 3) for v in ratios],
        "ratio_throughput_rounds": [round(v, 3) for v in ratios_tp],
    }


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "simmim_deploy.cli.main", "serve", args.bundle,
           "--port", str(port), "--model-name", MODEL, "--max-batch", str(args.batch_size),
           "--max-wait-ms", str(args.max_wait_ms), "--backend", args.backend,
           "--max-body-mb", "2", "--max-pixels", "4000000",
           "--timeout", str(args.server_timeout)]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


MODEL = "bench"  # --model-name of the served bundle
V1, V2_IMAGES, V2_TENSOR = (
    "/v1/predict",
    f"/v2/models/{MODEL}{IMAGES_SUFFIX}/infer",
    f"/v2/models/{MODEL}/infer",
)


def v2_body(name: str, array: np.ndarray, datatype: str) -> dict:
    """httpx.post keyword arguments of a v2 request encoded by tritonclient (binary tensors)."""
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=True)
    body, json_size = triton.InferenceServerClient.generate_request_body([tensor])
    return {"content": body, "headers": {"Inference-Header-Content-Length": str(json_size)}}


def malformed_requests(good: bytes, x: np.ndarray) -> list[tuple[str, dict]]:
    """Kinds of bad request: (path, httpx.post keyword arguments)."""
    bomb = io.BytesIO()
    Image.new("L", (6000, 6000)).save(bomb, "PNG")
    short = v2_body("images", x, "FP32")
    short["content"] = short["content"][:-100]  # binary_data_size now runs past the body
    return [
        (V1, {"files": {"images": ("x.jpg", b"garbage, not an image")}}),
        (V1, {"files": {"images": ("x.jpg", good[: len(good) // 3])}}),
        (V1, {"content": b""}),
        (V1, {"files": {"wrong": ("x.jpg", good)}}),
        (V1, {"json": {"images": "nope"}}),
        (V1, {"files": {"images": ("bomb.png", bomb.getvalue())}}),
        (V1, {"content": b"\x00" * 3_000_000, "headers": {"content-type": "image/jpeg"}}),
        (V1, {"content": b"--b\r\nbroken",
              "headers": {"content-type": "multipart/form-data; boundary=b"}}),
        (V2_TENSOR, v2_body("images", x[:, :, :-1], "FP32")),  # wrong shape
        (V2_TENSOR, v2_body("images", x.astype(np.float16), "FP16")),  # wrong datatype
        (V2_TENSOR, v2_body("pixels", x, "FP32")),  # wrong name
        (V2_TENSOR, short),  # byte count
        (V2_IMAGES, v2_body("images", np.array([b"not an image"], dtype=object), "BYTES")),
        (V2_TENSOR, {"content": b"{not json"}),
    ]  # fmt: skip


Job = tuple[bool, str, dict]  # (valid?, path, httpx.post kwargs)


async def load(url: str, jobs: list[Job], concurrency: int, limit_s: float) -> dict:
    """Send every job with ``concurrency`` in flight; per-job status and latency."""
    sem = asyncio.Semaphore(concurrency)
    results: list[tuple[bool, int, float]] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(valid: bool, path: str, kwargs: dict) -> None:
            async with sem:
                start = time.perf_counter()
                try:
                    status = (await client.post(f"{url}{path}", **kwargs)).status_code
                except httpx.HTTPError:
                    status = 0  # connection-level failure
                results.append((valid, status, time.perf_counter() - start))

        start = time.perf_counter()
        with contextlib.suppress(asyncio.TimeoutError):  # bounded: unanswered count as failed
            await asyncio.wait_for(asyncio.gather(*(one(*job) for job in jobs)), limit_s)
        elapsed = time.perf_counter() - start
    valid = [(s, t) for v, s, t in results if v]
    bad = [s for v, s, _ in results if not v]
    lat = np.array([t for s, t in valid if s == 200] or [0.0]) * 1000
    return {
        "sent": len(jobs),
        "answered": len(results),
        "seconds": round(elapsed, 3),
        "valid_ok": sum(s == 200 for s, _ in valid),
        "valid_failed": sum(s != 200 for s, _ in valid),  # answered with an error
        "valid_failed_status": dict(Counter(str(s) for s, _ in valid if s != 200)),
        "unanswered_at_limit": len(jobs) - len(results),  # still queued when time ran out
        "malformed_4xx": sum(400 <= s < 500 for s in bad),
        "malformed_other": sum(not 400 <= s < 500 for s in bad),
        "images_per_s": round(sum(s == 200 for s, _ in valid) / elapsed, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p90_ms": round(float(np.percentile(lat, 90)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--images", help="folder of JPEGs (default: generated from sample photos)")
    ap.add_argument("--num-images", type=int, default=256, help="generated JPEGs")
    ap.add_argument(
        "--images-from",
        help="instead: this data set's held-out images as PNG files "
        "(builtin:mnist: the 28 px digits the benchmark classifier was trained on)",
    )
    ap.add_argument("--backend", default="ort")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--requests", type=int, default=2000, help="per path, over all rounds")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the three paths")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--malformed", type=int, default=1000)
    ap.add_argument("--time-limit", type=float, default=300.0, help="seconds per load phase")
    ap.add_argument("--server-timeout", type=float, default=30.0, help="serve --timeout")
    ap.add_argument("--model-seconds", type=float, default=5.0)
    ap.add_argument(
        "--predict-rounds",
        type=int,
        default=3,
        help="alternating model-only / offline predict measurements (median kept)",
    )
    ap.add_argument("--out", default="benchmarks/results/serve_load.json")
    return ap.parse_args()


def _median_round(rounds: list[dict]) -> dict:
    """Totals over the rounds; images/s and latencies of the median round (by images/s)."""
    ranked = sorted(rounds, key=lambda r: r["images_per_s"])
    out = dict(ranked[len(ranked) // 2])
    for key in ("sent", "answered", "valid_ok", "valid_failed", "unanswered_at_limit"):
        out[key] = sum(r[key] for r in rounds)
    out["valid_failed_status"] = dict(
        sum((Counter(r["valid_failed_status"]) for r in rounds), Counter())
    )
    out["images_per_s_rounds"] = [r["images_per_s"] for r in rounds]
    return out


def serve_phases(
    args: argparse.Namespace, encoded: list[bytes], tensors: list[np.ndarray]
) -> tuple[dict, dict, bool, str]:
    """Clean load on the three paths in interleaved rounds, then malformed requests mixed with
    valid ones, against one served bundle."""
    proc, url = start_server(args)
    try:
        n = args.requests
        valid = {
            V1: [(True, V1, {"files": {"images": ("a.jpg", encoded[i % len(encoded)])}})
                 for i in range(n)],
            V2_IMAGES: [(True, V2_IMAGES, v2_body(
                "images", np.array([encoded[i % len(encoded)]], dtype=object), "BYTES"))
                for i in range(n)],
            V2_TENSOR: [(True, V2_TENSOR, v2_body("images", tensors[i % len(tensors)], "FP32"))
                        for i in range(n)],
        }  # fmt: skip
        for jobs in valid.values():  # warm-up
            asyncio.run(load(url, jobs[: args.concurrency], args.concurrency, args.time_limit))
        rounds: dict[str, list[dict]] = {path: [] for path in valid}
        per_round = -(-n // args.rounds)
        for r in range(args.rounds):
            for path, jobs in valid.items():
                part = jobs[r * per_round : (r + 1) * per_round]
                rounds[path].append(asyncio.run(load(url, part, args.concurrency, args.time_limit)))
        clean = {path: _median_round(rs) for path, rs in rounds.items()}
        bad_kinds = malformed_requests(encoded[0], tensors[0])
        mixed: list[Job] = []
        every_valid = [job for jobs in valid.values() for job in jobs]
        for i in range(args.malformed):
            mixed.append((False, *bad_kinds[i % len(bad_kinds)]))
            if i % 2 == 0:
                mixed.append(every_valid[(i * 7) % len(every_valid)])
        dirty = asyncio.run(load(url, mixed, args.concurrency, args.time_limit))
        alive = httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return clean, dirty, alive, metrics


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.images) if args.images else Path(tmp) / "jpegs"
        if args.images_from:
            write_dataset_images(folder, args.images_from, args.num_images)
        elif not args.images:
            make_jpegs(folder, args.num_images)
        paths = expand_sources([str(folder)])
        listing = Path(tmp) / "list.txt"
        listing.write_text("\n".join(paths) + "\n")
        offline_figures = offline_vs_model(args, listing)
        predict_ips = offline_figures["predict_images_per_s"]
        encoded = [Path(p).read_bytes() for p in paths]
        # Client-side preprocessing only: any backend does (auto would time its candidates again).
        runtime = Runtime(args.bundle, "ort-cpu", threads=1)
        tensors = [runtime.prepare(p).array[None] for p in paths[:64]]  # client-side preprocessing
        clean, dirty, alive, metrics = serve_phases(args, encoded, tensors)
    report = {
        "bundle": args.bundle, "backend": args.backend, "batch_size": args.batch_size,
        "concurrency": args.concurrency, "images": len(paths),
        "image_source": args.images_from or args.images or "generated JPEG photos (480-1024 px)",
        **offline_figures,
        "uptime": Path("/proc/loadavg").read_text().split()[:3],
        "server": clean[V1], "server_vs_predict": round(clean[V1]["images_per_s"] / predict_ips, 3),
        "protocols": {
            path: {**res, "vs_predict": round(res["images_per_s"] / predict_ips, 3)}
            for path, res in clean.items()
        },
        "malformed": dirty, "server_alive_after": alive,
        "batch_size_histogram": [x for x in metrics.splitlines() if "batch_size_bucket" in x],
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print_table(report, args)


def print_table(report: dict, args: argparse.Namespace) -> None:
    model_ips, predict_ips = report["model_only_images_per_s"], report["predict_images_per_s"]
    dirty, alive = report["malformed"], report["server_alive_after"]
    ok = lambda c: "yes" if c else "NO"  # noqa: E731
    print("\n| measure | value | target | met |\n|---|---|---|---|")
    print(
        f"| model-only images/s (batch {args.batch_size}, as `benchmark`) | {model_ips:.1f} | | |"
    )
    print(
        f"| model-only images/s in predict's mode ({report['model_only_throughput_images_per_s']}"
        f" img/s); predict / it | {report['predict_vs_model_throughput']:.2f} | | |"
    )
    print(f"| offline predict images/s | {predict_ips:.1f} | | |")
    rounds = " / ".join(f"{v:.2f}" for v in report["ratio_rounds"])
    print(
        f"| predict / model-only (median of rounds {rounds}) | {report['predict_vs_model']:.2f} "
        f"| >= 0.90 | {ok(report['predict_vs_model'] >= 0.9)} |"
    )
    names = {V1: "/v1/predict (JPEG)", V2_IMAGES: "v2 BYTES JPEG", V2_TENSOR: "v2 FP32 tensor"}
    for path, res in report["protocols"].items():
        name, ratio = names[path], res["vs_predict"]
        rounds = " / ".join(f"{v:.1f}" for v in res["images_per_s_rounds"])
        print(f"| {name}: images/s at concurrency {args.concurrency} (rounds {rounds}) | "
              f"{res['images_per_s']:.1f} | | |")  # fmt: skip
        print(f"| {name} / predict | {ratio:.2f} | >= 0.85 | {ok(ratio >= 0.85)} |")
        clean = res["valid_failed"] == 0 and res["answered"] == res["sent"]
        print(
            f"| {name}: errors ({res['answered']}/{res['sent']} answered) | "
            f"{res['valid_failed']} | 0 | {ok(clean)} |"
        )
        print(f"| {name}: latency p50 / p90 / p99 ms | {res['p50_ms']} / {res['p90_ms']} / "
              f"{res['p99_ms']} | | |")  # fmt: skip
    print(
        f"| malformed: 4xx / other | {dirty['malformed_4xx']} / {dirty['malformed_other']} | "
        f"all 4xx | {ok(dirty['malformed_other'] == 0)} |"
    )
    print(
        f"| valid among malformed: ok / failed | {dirty['valid_ok']} / {dirty['valid_failed']}"
        f" | 0 failed | {ok(dirty['valid_failed'] == 0)} |"
    )
    print(f"| server alive after | {alive} | True | {ok(alive)} |")
    print(f"\nload average {' '.join(report['uptime'])}; JSON: {args.out}")


if __name__ == "__main__":
    main()
