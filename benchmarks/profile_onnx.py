"""Where an ONNX model's CPU time goes: ONNX Runtime's own profiler, summed per operator type.

Explains the export benchmark's ratios: for an INT8 file it shows how much of a batch the
integer GEMMs take (MatMulIntegerToFloat, QLinearMatMul, ...) and how much stays in float ops, so
the best speed-up INT8 can give on this CPU is read off directly. ``--openvino`` profiles the
same files on OpenVINO instead (``PERF_COUNT``; per layer type and the kernel it ran, e.g.
``brgemm_avx512_I8``, so one sees which layers really ran in INT8 or bf16).

    python benchmarks/profile_onnx.py runs/bench_export/case0/model.onnx \\
        runs/bench_export/case0/linear.onnx --batch 32 [--openvino]
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

INT8_GEMMS = {"MatMulIntegerToFloat", "QLinearMatMul", "MatMulInteger", "QGemm", "QLinearConv",
              "ConvInteger", "DynamicQuantizeMatMul"}  # fmt: skip


def profile(path: Path, batch: int, runs: int, threads: int) -> dict[str, float]:
    """Mean milliseconds per run spent in each operator type."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = str(Path("/tmp") / f"ort_profile_{path.stem}")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    side = inp.shape[2] if isinstance(inp.shape[2], int) else 224
    x = np.random.default_rng(0).standard_normal((batch, 3, side, side)).astype(np.float32)
    sess.run(None, {inp.name: x})  # warm-up, included in the trace and subtracted below
    for _ in range(runs):
        sess.run(None, {inp.name: x})
    trace = Path(sess.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    per_run: list[collections.Counter] = []
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            per_run.append(collections.Counter())
        elif event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and per_run:
            per_run[-1][event["args"]["op_name"]] += event["dur"] / 1000.0
    measured = per_run[-runs:] if len(per_run) > runs else per_run
    total: collections.Counter = collections.Counter()
    for counts in measured:
        total.update(counts)
    return {op: ms / len(measured) for op, ms in total.most_common()}


def profile_openvino(path: Path, batch: int, runs: int, threads: int) -> dict[str, float]:
    """Mean milliseconds per run per ``layer type [kernel]`` on OpenVINO (LATENCY hint)."""
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    shape = compiled.inputs[0].get_partial_shape()
    side = shape[2].get_length() if shape[2].is_static else 224
    x = np.random.default_rng(0).standard_normal((batch, 3, side, side)).astype(np.float32)
    request.infer({0: x})  # warm-up, not counted
    total: collections.Counter = collections.Counter()
    for _ in range(runs):
        request.infer({0: x})
        for info in request.profiling_info:
            if info.status == info.Status.EXECUTED and info.real_time.total_seconds() > 0:
                key = f"{info.node_type} [{info.exec_type}]"
                total[key] += info.real_time.total_seconds() * 1000.0
    return {op: ms / runs for op, ms in total.most_common()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--openvino", action="store_true", help="profile on OpenVINO, not ORT")
    args = ap.parse_args()
    for path in args.models:
        run = profile_openvino if args.openvino else profile
        ops = run(path, args.batch, args.runs, args.threads)
        total = sum(ops.values())
        gemm = sum(ms for op, ms in ops.items() if op in INT8_GEMMS)
        where = "OpenVINO" if args.openvino else "ONNX Runtime"
        print(f"\n{path} on {where} (batch {args.batch}): {total:.0f} ms of kernels per run")
        print("| op type | ms per run | share |\n| --- | --- | --- |")
        for op, ms in list(ops.items())[: args.top]:
            print(f"| {op} | {ms:.0f} | {ms / total:.0%} |")
        if gemm:
            best = args.batch / gemm * 1000
            print(f"integer GEMMs {gemm:.0f} ms = {gemm / total:.0%}; with every other op free "
                  f"a batch would take {gemm:.0f} ms ({best:.1f} img/s)")  # fmt: skip


if __name__ == "__main__":
    main()
