"""Export speed/accuracy trade-off on this CPU against what a user would run instead, in one run.

For each model, the peers (PyTorch eager FP32 and bf16 autocast, ONNX Runtime FP32, OpenVINO's
default on the FP32 ONNX file, OpenVINO + NNCF INT8; see helpers/cpu_peers.py) and our artefacts
(dynamic INT8, static INT8 linear scope on ONNX Runtime and on OpenVINO, static INT8 all ops,
pruned 30% (+ distillation recovery) + static INT8 linear), at batch 1 and 32: images/s,
latency, model size and the task metric on real labelled held-out data (top-1 on builtin:mnist,
COCO mAP on builtin:digits-det), with ratios against eager FP32 and against the best peer (the
fastest of PyTorch bf16, OpenVINO default and OpenVINO INT8). Speed is measured in interleaved
rounds (every variant once per round; best round kept), so a load change hits all variants
alike. It also times one ViT-S-sized GEMM in FP32 and INT8 on its own: the INT8 speed-up this
CPU can give at best. The CPU's ISA (core.cpu) heads the output. Prints markdown, writes JSON.

The classifier is a ViT-S/16 at 224 px fine-tuned on builtin:mnist from scratch (no downloadable
weights here), in two stages (benchmarks/recipes/, ~35 min on 2 cores):

    simmim-deploy train classify --config benchmarks/recipes/vits_mnist_112.yaml \\
        --out runs/vits-mnist-112
    simmim-deploy train classify --config benchmarks/recipes/vits_mnist_224.yaml \\
        --pretrained runs/vits-mnist-112/best.pt --out runs/vits-mnist-224

The detector is the built-in recipe (train/detect_vit_micro_builtin.yaml, ~7 min); without
--det-checkpoint the script trains it. Targets (issue 4): INT8 >= 3x eager with <= 0.5 pt top-1
drop; pruned + INT8 >= 4.5x with <= 1.5 pt.

Full run:   python benchmarks/bench_export.py --checkpoint runs/vits-mnist-224/best.pt \\
                --det-checkpoint runs/bench-detect/scratch-seed0/best.pt
Smoke run:  python benchmarks/bench_export.py --checkpoint tiny.pt --no-detector \\
                --eval-images 64 --calib-images 64 --duration 0.5 --out /tmp/bench
Without the slow extras: --skip all,pruned (no all-ops INT8, no pruning + distillation).
Our verified artefacts as shipped: --bundle runs/bundle-cpu (repeatable; with --skip own only
those, next to the peers).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))

import cpu_peers  # noqa: E402  (benchmarks/helpers/cpu_peers.py)

import simmim_deploy.models  # noqa: E402,F401
from simmim_deploy.core.cpu import cpu_info  # noqa: E402
from simmim_deploy.export.det_truth import detection_map, load_detection_truth  # noqa: E402
from simmim_deploy.export.inputs import load_image_set, preprocess  # noqa: E402
from simmim_deploy.export.onnx_export import export_onnx, ort_session  # noqa: E402
from simmim_deploy.export.prune import distill, prune_model  # noqa: E402
from simmim_deploy.export.quantize import quantize_dynamic_int8, quantize_static_int8  # noqa: E402
from simmim_deploy.export.verify import run_batched  # noqa: E402
from simmim_deploy.models.factory import load_task_checkpoint as load_model  # noqa: E402
from simmim_deploy.models.runner import TorchRunner, output_names  # noqa: E402

Runner = Callable[[np.ndarray], list[np.ndarray]]
DET_RECIPE = Path(__file__).resolve().parents[1] / "train" / "detect_vit_micro_builtin.yaml"
# "Best peer" as issue 11 defines it: the fastest of these (what a user would pick instead).
BEST_PEER_POOL = ("eager bf16 autocast", "openvino fp32 (default)", "openvino + nncf int8")
PEERS = ("eager fp32", "eager bf16 autocast", "ort fp32", *BEST_PEER_POOL[1:])


@dataclasses.dataclass
class Case:
    """One model to measure: its checkpoint, real images and how outputs are scored."""

    name: str
    checkpoint: Path
    calib: np.ndarray  # training-part images: INT8 ranges and the pruning recovery
    x: np.ndarray  # held-out images, scored by `score`
    score: Callable[[list[np.ndarray]], float]
    metric: str
    bundles: tuple[Path, ...] = ()  # exported bundles of this checkpoint: our verified pairs


def classification_case(args: argparse.Namespace) -> Case:
    _, meta = load_model(args.checkpoint)
    val = load_image_set(args.data, "val", args.eval_images)
    calib = load_image_set(args.data, "train", args.calib_images, seed=1)
    labels = val.labels

    def top1(outputs: list[np.ndarray]) -> float:
        return float((outputs[0].argmax(1) == labels).mean() * 100)

    name = f"{meta['model_name']} @ {meta['img_size']} px, {args.data}"
    return Case(name, args.checkpoint, preprocess(calib.images, meta),
                preprocess(val.images, meta), top1, "top-1 %", tuple(args.bundle))  # fmt: skip


def detection_case(args: argparse.Namespace) -> Case:
    ckpt = args.det_checkpoint or train_detector(args.out / "detector")
    _, meta = load_model(ckpt)
    found = load_detection_truth(args.det_data, args.eval_images, meta)
    if found is None:
        raise SystemExit(f"{args.det_data} is not annotated detection data with the classes")
    _, x, truth = found
    calib = load_image_set(args.det_data, "train", args.calib_images, seed=1)
    name = f"detector {meta['model_name']} @ {meta['img_size']} px, {args.det_data}"
    return Case(name, ckpt, preprocess(calib.images, meta), x,
                lambda outputs: detection_map(outputs, truth)["mAP"], "mAP %",
                tuple(args.det_bundle))  # fmt: skip


def train_detector(out: Path) -> Path:
    from simmim_deploy.core.config import load_config
    from simmim_deploy.train.detect import DetectConfig, run_detect

    if not (out / "best.pt").is_file():
        run_detect(load_config(DetectConfig, DET_RECIPE, {"out": str(out), "progress": False}))
    return out / "best.pt"


def ort_fn(path: Path, threads: int) -> Runner:
    sess = ort_session(path, threads)
    return lambda x: sess.run(None, {"images": x})


def build_variants(case: Case, args: argparse.Namespace, out: Path) -> dict[str, tuple]:
    """name -> (runner, size in bytes, note); peers first, then our artefacts."""
    out.mkdir(parents=True, exist_ok=True)
    model, meta = load_model(case.checkpoint)
    size, names = int(meta["img_size"]), output_names(meta)
    fp32 = export_onnx(model, size, names, out / "model.onnx").path
    ckpt_bytes = case.checkpoint.stat().st_size
    variants: dict[str, tuple] = {
        "eager fp32": (TorchRunner(model, meta), ckpt_bytes, ""),
        "eager bf16 autocast": (cpu_peers.bf16_autocast(model), ckpt_bytes, ""),
        "ort fp32": (ort_fn(fp32, args.threads), fp32.stat().st_size, ""),
    }
    ov_fp32, inference = cpu_peers.openvino(fp32, args.threads)
    variants["openvino fp32 (default)"] = (ov_fp32, fp32.stat().st_size, f"runs {inference}")
    nncf_calib = case.calib[: args.nncf_images]
    ov_int8, note = cpu_peers.nncf_int8(fp32, nncf_calib, out, args.threads)
    xml_bytes = sum(p.stat().st_size for p in out.glob("nncf_int8.*"))
    variants["openvino + nncf int8"] = (ov_int8, xml_bytes, note)
    for bundle in case.bundles:
        variants.update(bundle_variants(bundle, args.threads))
    if "own" in args.skip:
        return variants
    quantize_dynamic_int8(fp32, out / "dyn.onnx")
    files = {"ort int8 dynamic": out / "dyn.onnx"}
    for scope in ("linear", "all"):
        if scope == "all" and "all" in args.skip:
            continue
        path = out / f"{scope}.onnx"
        quantize_static_int8(fp32, path, case.calib, args.calib_method, scope)
        files[f"ort int8 static {scope}"] = path
    pruned_name = f"pruned {args.prune:.0%} + int8 linear"
    note = ""
    if "pruned" not in args.skip:
        note = prune_and_quantize(model, meta, case, args, out)
        files[pruned_name] = out / "pruned.int8.onnx"
    for name, path in files.items():
        notes = note if name == pruned_name else ""
        variants[name] = (ort_fn(path, args.threads), path.stat().st_size, notes)
    ov_ours, _ = cpu_peers.openvino(out / "linear.onnx", args.threads)
    variants["openvino int8 static linear (our Q/DQ file)"] = (
        ov_ours, (out / "linear.onnx").stat().st_size, ""
    )  # fmt: skip
    return variants


def _runner(backend: object) -> Runner:
    return lambda x: list(backend.run(x).values())  # type: ignore[attr-defined]


def bundle_variants(bundle: Path, threads: int) -> dict[str, tuple]:
    """Every (backend, artefact) pair of an exported bundle whose outputs passed the export gate
    on that runtime (``verified_on``), as ``--backend auto`` sees them: our verified artefacts."""
    from simmim_deploy.core.manifest import read_manifest
    from simmim_deploy.serve.backends import open_backend
    from simmim_deploy.serve.backends.auto import candidates

    manifest = read_manifest(bundle)
    variants = {}
    for label in candidates(manifest):
        backend, precision = label.split("/", 1)
        art = manifest["artefacts"][precision]
        opened = open_backend(bundle, manifest, backend, precision, threads)
        nbytes = sum((bundle / f).stat().st_size
                     for f in (art["file"], art.get("weights_file")) if f)  # fmt: skip
        variants[f"{bundle.name}: {label}"] = (_runner(opened), nbytes, str(art["verified_on"]))
    return variants


def prune_and_quantize(
    model: torch.nn.Module, meta: dict, case: Case, args: argparse.Namespace, out: Path
) -> str:
    """Pruned (+ distilled) copy exported and statically quantized to pruned.int8.onnx."""
    size, names, task = int(meta["img_size"]), output_names(meta), meta["task"]
    pruned = copy.deepcopy(model)
    prune_model(pruned, size, args.prune)
    note = "no recovery"
    if args.recover_epochs:
        t0 = time.perf_counter()
        losses = distill(pruned, model, case.calib, args.recover_epochs, task=task)
        seconds = time.perf_counter() - t0
        note = (f"{args.recover_epochs} distillation epoch(s) on {len(case.calib)} images, "
                f"{seconds:.0f} s, loss {losses[0]:.3g} -> {losses[-1]:.3g}")  # fmt: skip
    p32 = export_onnx(pruned, size, names, out / "pruned.onnx").path
    quantize_static_int8(p32, out / "pruned.int8.onnx", case.calib, args.calib_method, "linear")
    return note


def throughput(
    run: Runner, x: np.ndarray, batch: int, duration: float, warmup: int = 2
) -> dict[str, float]:
    """images/s and mean latency per batch (ms) after warm-up."""
    xb = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))
    for _ in range(warmup):
        run(xb)
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < duration:
        run(xb)
        n += 1
    dt = (time.perf_counter() - t0) / n
    return {"images_per_s": batch / dt, "latency_ms": dt * 1000}


def measure(case: Case, args: argparse.Namespace, out: Path) -> list[dict]:
    """Metric per variant, then ``--rounds`` interleaved speed rounds (best round kept)."""
    batches = [int(b) for b in args.batches.split(",")]
    variants = build_variants(case, args, out)
    rows = []
    for name, (run, nbytes, note) in variants.items():
        metric = case.score(run_batched(run, case.x, 32))
        rounds: dict[str, list] = {f"b{b}": [] for b in batches}
        rows.append({"variant": name, "peer": name in PEERS, "mb": nbytes / 2**20,
                     "metric": metric, "note": note, "rounds": rounds})  # fmt: skip
        print(f"scored {case.name}: {name} {metric:.2f}", file=sys.stderr)
    for r in range(args.rounds):
        for row in rows:
            run = variants[row["variant"]][0]
            for b in batches:
                warmup = 1 if r == 0 or b == 1 else 0
                row["rounds"][f"b{b}"].append(throughput(run, case.x, b, args.duration, warmup))
        print(f"round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    for row in rows:
        for b in batches:
            row[f"b{b}"] = max(row["rounds"][f"b{b}"], key=lambda m: m["images_per_s"])
    return rows


def gemm_ceiling(out: Path, threads: int, duration: float) -> dict[str, float]:
    """FP32 vs static-INT8 speed of one ViT-S MLP GEMM (6,304 x 384 @ 384 x 1,536) in ORT."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((384, 1536)) * 0.05).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["images", "w"], ["y"])], "gemm",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, 197, 384])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 197, 1536])], [w],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out / "gemm.onnx"))
    x = rng.standard_normal((32, 197, 384)).astype(np.float32)
    quantize_static_int8(out / "gemm.onnx", out / "gemm.int8.onnx", x[:8], "minmax", "linear")
    speed = {}
    for name in ("gemm.onnx", "gemm.int8.onnx"):
        sess = ort_session(out / name, threads)
        speed[name] = throughput(lambda b, s=sess: s.run(None, {"images": b}), x, 32, duration)
    fp32, int8 = (speed[k]["images_per_s"] for k in ("gemm.onnx", "gemm.int8.onnx"))
    gflop = 2 * 32 * 197 * 384 * 1536 / 1e9
    return {"fp32_gflops": gflop * fp32 / 32, "int8_gops": gflop * int8 / 32, "ratio": int8 / fp32}


def cpu_description() -> str:
    cpu = cpu_info()
    return f"{cpu.model}, {torch.get_num_threads()} threads, ISA: {cpu.isa_line()}"


def table(rows: list[dict], batches: list[int], metric: str) -> str:
    base = rows[0]
    head = f"| variant | MB | {metric} | drop pt |"
    head += "".join(f" b{b} img/s | b{b} ms | b{b} x eager | b{b} x best peer |" for b in batches)
    lines = [head, "|" + " --- |" * (4 + 4 * len(batches))]
    pool = [r for r in rows if r["variant"] in BEST_PEER_POOL]
    best = {b: max(pool, key=lambda r: r[f"b{b}"]["images_per_s"]) for b in batches}
    for r in rows:
        name = r["variant"] + ("" if r["peer"] else " *")
        cells = [name, f"{r['mb']:.1f}", f"{r['metric']:.2f}",
                 f"{base['metric'] - r['metric']:+.2f}"]  # fmt: skip
        for b in batches:
            ips = r[f"b{b}"]["images_per_s"]
            ratio = ips / base[f"b{b}"]["images_per_s"]
            vs_peer = ips / best[b][f"b{b}"]["images_per_s"]
            cells += [f"{ips:.1f}", f"{r[f'b{b}']['latency_ms']:.1f}", f"{ratio:.2f}x",
                      f"{vs_peer:.2f}x"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    peers = ", ".join(f"batch {b}: {best[b]['variant']}" for b in batches)
    notes = [f"- {r['variant']}: {r['note']}" for r in rows if r["note"]]
    notes.append(
        f"- `*` = our artefact; best peer (fastest of {', '.join(BEST_PEER_POOL)}): {peers}"
    )
    return "\n".join(lines + [""] + notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, help="fine-tuned classifier best.pt")
    ap.add_argument("--data", default="builtin:mnist", help="its labelled data")
    ap.add_argument("--det-checkpoint", type=Path, help="detector best.pt (default: train one)")
    ap.add_argument("--det-data", default="builtin:digits-det")
    ap.add_argument("--no-detector", action="store_true", help="classifier only")
    ap.add_argument("--no-classifier", action="store_true", help="detector only")
    ap.add_argument("--eval-images", type=int, default=500)
    ap.add_argument("--calib-images", type=int, default=512)
    ap.add_argument("--calib-method", default="percentile")
    ap.add_argument("--prune", type=float, default=0.3)
    ap.add_argument("--recover-epochs", type=int, default=3, help="distillation after pruning")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds (best kept)")
    ap.add_argument("--nncf-images", type=int, default=300, help="NNCF calibration subset")
    ap.add_argument("--skip", default="",
                    help="comma list to leave out: all,pruned (extras), own (every artefact "
                         "this script builds itself; measure --bundle ones only)")  # fmt: skip
    ap.add_argument("--bundle", type=Path, action="append", default=[],
                    help="an exported bundle (export --target cpu) of --checkpoint: its "
                         "verified (backend, artefact) pairs are ours; repeatable")  # fmt: skip
    ap.add_argument("--det-bundle", type=Path, action="append", default=[],
                    help="the same for --det-checkpoint (repeatable)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=Path("runs/bench_export"))
    args = ap.parse_args()
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    if args.checkpoint is None and not args.no_classifier:
        ap.error("give --checkpoint (the classifier) or --no-classifier")
    cases = [] if args.no_classifier else [classification_case(args)]
    if not args.no_detector:
        cases.append(detection_case(args))
    result: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "cpu": cpu_description(),
                    "cpu_flags": cpu_info().flags, "load_start": os.getloadavg()}  # fmt: skip
    result["gemm"] = gemm_ceiling(args.out / "gemm", args.threads, args.duration)
    gemm = result["gemm"]
    text = [f"CPU: {result['cpu']}",
            f"ViT-S MLP GEMM alone: FP32 {gemm['fp32_gflops']:.0f} GFLOP/s, "
            f"INT8 {gemm['int8_gops']:.0f} GOP/s = {gemm['ratio']:.2f}x"]  # fmt: skip
    result["cases"] = []
    for i, case in enumerate(cases):
        rows = measure(case, args, args.out / f"case{i}")
        md = table(rows, batches, case.metric)
        result["cases"].append({"name": case.name, "checkpoint": str(case.checkpoint),
                                "eval_images": len(case.x), "rows": rows, "table": md})  # fmt: skip
        text += ["", f"{case.name}, {len(case.x)} held-out images, {case.checkpoint}:", "", md]
    result["load_end"] = os.getloadavg()
    text.insert(1, f"load average (1/5/15 min) at start {result['load_start']}, "
                   f"at end {tuple(round(v, 1) for v in result['load_end'])}")  # fmt: skip
    print("\n".join(text))
    (args.out / "bench_export.json").write_text(json.dumps(result, indent=2))
    (args.out / "bench_export.md").write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
