"""The predict, benchmark and serve commands through the real CLI (subprocesses)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

CLI = [sys.executable, "-m", "simmim_deploy.cli.main"]


def test_predict_and_benchmark_commands(cls_bundle: Path, image_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    out = tmp_path / "res.jsonl"
    run = subprocess.run(
        [*CLI, "predict", str(cls_bundle), str(image_dir), str(tmp_path / "bad.jpg"),
         "--batch-size", "2", "--out", str(out), "--top-k", "1", "--backend", "ort-cpu"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 6 and "error" in lines[-1] and len(lines[0]["topk"]) == 1
    assert "6 images (1 errors)" in run.stderr and "images/s" in run.stderr
    bad = subprocess.run(
        [*CLI, "predict", str(cls_bundle), str(image_dir), "--batch-size", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("error: --batch-size")
    bench = subprocess.run(
        [*CLI, "benchmark", str(cls_bundle), "--backend", "ort-cpu", "--batch-sizes", "1,2",
         "--duration", "0.1", "--images", str(image_dir), "--out",
         str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    assert "fp32" in bench.stdout and "benchmark.json" in bench.stdout
    assert "--batch-sizes is deprecated; use --batch-size instead" in bench.stderr
    assert "--duration is deprecated; use --seconds instead" in bench.stderr
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert [r["batch"] for r in report["results"]] == [1, 2]


def test_serve_command_sigterm_finishes_in_flight(cls_bundle: Path, image_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*CLI, "serve", str(cls_bundle), "--port", str(port), "--max-wait-ms", "1500"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None and time.time() < deadline, "serve did not start"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        image = next(image_dir.rglob("*.jpg")).read_bytes()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                httpx.post, f"{url}/v1/predict", files={"images": ("a.jpg", image)}, timeout=30
            )
            time.sleep(0.5)  # the request now waits in the batcher
            proc.send_signal(signal.SIGTERM)
            reply = pending.result(timeout=30)
        assert reply.status_code == 200 and reply.json()["results"][0]["topk"]
        # uvicorn re-raises the caught SIGTERM after its graceful shutdown
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Finished server process" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_two_workers_share_their_metrics(cls_bundle: Path, image_dir: Path, tmp_path: Path) -> None:
    """With --workers 2 every scrape sums both processes (prometheus multiprocess mode)."""
    import os

    from tests.unit.serve.test_server import scrape

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url, shared = f"http://127.0.0.1:{port}", tmp_path / "metrics"
    shared.mkdir()
    proc = subprocess.Popen(
        [*CLI, "serve", str(cls_bundle), "--port", str(port), "--workers", "2",
         "--max-wait-ms", "1", "--threads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)},
    )  # fmt: skip
    try:
        deadline = time.time() + 90
        while len({p.stem.rsplit("_", 1)[-1] for p in shared.glob("*.db")}) < 2:
            assert proc.poll() is None and time.time() < deadline, "two workers did not start"
            time.sleep(0.2)
        image = next(image_dir.rglob("*.jpg")).read_bytes()

        def post(_: int) -> int:  # a new connection each time: the kernel spreads them
            files = {"images": ("a.jpg", image)}
            return httpx.post(f"{url}/v1/predict", files=files, timeout=30).status_code

        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(post, range(24)))
        scrapes = [scrape(url) for _ in range(4)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert codes == [200] * 24
    pids = {p.stem.rsplit("_", 1)[-1] for p in shared.glob("counter_*.db")}
    assert len(pids) == 2, pids  # both workers wrote their counts
    for metrics in scrapes:  # whichever worker answers, it reports the whole server
        assert metrics[("simmim_serve_images_total", ())] == 24
        key = ("simmim_serve_requests_total", (("code", "200"), ("path", "/v1/predict")))
        assert metrics[key] == 24
