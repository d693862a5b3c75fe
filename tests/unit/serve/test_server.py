"""A real uvicorn server on 127.0.0.1: batching, auth, limits, malformed input, shutdown."""

from __future__ import annotations

import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from PIL import Image

from simmim_deploy.serve.predict import expand_sources, predict
from simmim_deploy.serve.server import create_app


class LiveServer:
    """uvicorn.Server in a thread on a socket bound to a free port (no race for the port)."""

    def __init__(self, app, graceful_s: float = 10.0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=graceful_s)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(20)


def _jpeg(path: str) -> bytes:
    return Path(path).read_bytes()


def _post(url: str, data: bytes, **kw) -> httpx.Response:
    return httpx.post(f"{url}/v1/predict", files={"images": ("a.jpg", data)}, timeout=20, **kw)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed by prometheus_client's own parser: (sample, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _histogram(metrics: dict, name: str) -> dict[str, float]:
    return {dict(lab)["le"]: v for (n, lab), v in metrics.items() if n == f"{name}_bucket"}


def test_concurrent_requests_are_batched(cls_bundle: Path, image_dir: Path) -> None:
    paths = expand_sources([str(image_dir)])
    offline = predict(cls_bundle, paths, batch_size=4)["results"]
    app = create_app(str(cls_bundle), max_batch=8, max_wait_ms=300, backend="ort-cpu")
    with LiveServer(app) as srv, ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda p: _post(srv.url, _jpeg(p)), paths + paths[:3]))
        metrics = scrape(srv.url)
        health = httpx.get(f"{srv.url}/healthz").json()
        docs = httpx.get(f"{srv.url}/openapi.json").json()
    assert [r.status_code for r in replies] == [200] * 8
    for reply, ref in zip(replies, offline + offline[:3], strict=True):
        (rec,) = reply.json()["results"]
        assert set(rec) == {"path", "width", "height", "topk"}
        assert (rec["width"], rec["height"]) == (ref["width"], ref["height"])
        assert [c["index"] for c in rec["topk"]] == [c["index"] for c in ref["topk"]]
        assert rec["topk"][0]["score"] == pytest.approx(ref["topk"][0]["score"], abs=1e-5)
    hist = _histogram(metrics, "simmim_serve_batch_size")
    assert hist["+Inf"] < 8, f"8 concurrent requests ran in {hist['+Inf']} batches: {hist}"
    assert hist["1.0"] < hist["+Inf"], "no batch held more than one image"
    assert metrics[("simmim_serve_batch_size_sum", ())] == 8
    assert metrics[("simmim_serve_images_total", ())] == 8
    assert metrics[("simmim_serve_requests_total", (("code", "200"), ("path", "/v1/predict")))] == 8
    assert metrics[("simmim_serve_request_latency_seconds_count", (("path", "/v1/predict"),))] == 8
    assert metrics[("simmim_serve_queue_seconds_count", ())] == 8
    assert health["status"] == "ok" and health["task"] == "classification"
    assert "/v1/predict" in docs["paths"]


def test_bearer_token(cls_bundle: Path, image_dir: Path) -> None:
    img = _jpeg(expand_sources([str(image_dir)])[0])
    app = create_app(str(cls_bundle), token="s3cret token", max_wait_ms=1)
    with LiveServer(app) as srv:
        missing = _post(srv.url, img)
        wrong = _post(srv.url, img, headers={"Authorization": "Bearer nope"})
        right = _post(srv.url, img, headers={"Authorization": "Bearer s3cret token"})
        assert httpx.get(f"{srv.url}/metrics").status_code == 401
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
    assert missing.status_code == wrong.status_code == 401
    assert "token" in missing.json()["error"] and missing.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200


def _png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("L", size).save(buf, "PNG")
    return buf.getvalue()


def test_limits_and_malformed_inputs_get_4xx_json(cls_bundle: Path, image_dir: Path) -> None:
    good = _jpeg(expand_sources([str(image_dir)])[1])
    bomb = _png((4000, 4000))  # 16 Mpx in a few kB
    assert len(bomb) < 50_000
    app = create_app(str(cls_bundle), max_body_bytes=100_000, max_pixels=1_000_000, max_wait_ms=1)
    with LiveServer(app) as srv:
        url = f"{srv.url}/v1/predict"
        cases = {
            "too big body": (413, _post(srv.url, b"\xff" * 150_000)),
            "bomb": (413, _post(srv.url, bomb)),
            "not an image": (422, _post(srv.url, b"hello, I am text")),
            "truncated": (422, _post(srv.url, good[: len(good) // 2])),
            "wrong field": (422, httpx.post(url, files={"image": ("a.jpg", good)})),
            "text field": (422, httpx.post(url, data={"images": "x"}, files={"f": ("a", good)})),
            "empty": (400, httpx.post(url, content=b"")),
            "json": (415, httpx.post(url, json={"images": "x"})),
            "bad multipart": (
                400,
                httpx.post(
                    url,
                    content=b"--x\r\ngarbage",
                    headers={"content-type": "multipart/form-data; boundary=zz"},
                ),
            ),  # fmt: skip
            "bad query": (422, httpx.post(url, params={"top_k": "many"}, content=good)),
            "wrong path": (404, httpx.get(f"{srv.url}/v2/nothing")),
        }
        raw = httpx.post(url, content=good, headers={"content-type": "image/jpeg"})
        two = httpx.post(url, files=[("images", ("x.jpg", good)), ("images", ("y.jpg", good))])
        metrics = scrape(srv.url)
    for name, (status, reply) in cases.items():
        assert reply.status_code == status, (name, reply.status_code, reply.text)
        assert isinstance(reply.json()["error"], str) and reply.json()["error"], name
    assert raw.status_code == 200 and raw.json()["results"][0]["path"] == "body"
    assert [r["path"] for r in two.json()["results"]] == ["x.jpg", "y.jpg"]
    errors = sum(
        v for (n, lab), v in metrics.items()
        if n == "simmim_serve_requests_total" and int(dict(lab)["code"]) >= 400
    )  # fmt: skip
    assert errors == 11
    assert metrics[("simmim_serve_requests_total", (("code", "404"), ("path", "other")))] == 1


def test_timeout_gives_504(cls_bundle: Path, image_dir: Path) -> None:
    img = _jpeg(expand_sources([str(image_dir)])[0])
    app = create_app(str(cls_bundle), max_wait_ms=2000, request_timeout_s=0.3)
    with LiveServer(app) as srv:
        reply = _post(srv.url, img)
    assert reply.status_code == 504 and "0.3" in reply.json()["error"]


def test_graceful_shutdown_finishes_in_flight_request(cls_bundle: Path, image_dir: Path) -> None:
    img = _jpeg(expand_sources([str(image_dir)])[0])
    # A lone request waits max_wait_ms for company: it is in flight when shutdown starts.
    app = create_app(str(cls_bundle), max_batch=8, max_wait_ms=1500)
    srv = LiveServer(app).__enter__()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_post, srv.url, img)
        time.sleep(0.5)
        srv.server.should_exit = True
        reply = pending.result(timeout=20)
    srv.thread.join(20)
    assert reply.status_code == 200 and reply.json()["results"][0]["topk"]
    assert not srv.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{srv.url}/healthz", timeout=2)
