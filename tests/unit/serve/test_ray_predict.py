"""``predict --engine ray`` on a real local Ray instance (127.0.0.1): the records of local predict.

One Ray start for the module (through the engine's own ``connect``); every run reuses it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from simmim_deploy.core.errors import UserError
from simmim_deploy.serve.predict import PredictConfig, predict
from simmim_deploy.serve.ray_options import RayOptions
from simmim_deploy.serve.ray_predict import Predictor, connect, run_ray_predict
from simmim_deploy.serve.ray_sources import list_sources

# Not imported here: connect() must be the first to import ray (see its loopback note).
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None,
    reason="needs the ray extra (pip install 'simmim-deploy[ray]')",
)


@pytest.fixture(scope="module")
def ray_session():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline machine: no usage report
    ray, started = connect(None)
    assert started, "a Ray session was already running: this test must start its own"
    assert [node["NodeManagerAddress"] for node in ray.nodes()] == ["127.0.0.1"]
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The serving photos plus a corrupt JPEG and a file name with a space."""
    root = tmp_path_factory.mktemp("ray photos") / "my photos"
    shutil.copytree(image_dir, root)
    shutil.copy(root / "img_0.jpg", root / "holiday photo 1.jpg")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_same_records(ray_records: list[dict], local: list[dict]) -> None:
    assert [r["path"] for r in ray_records] == [r["path"] for r in local]  # input order too
    for got, want in zip(ray_records, local, strict=True):
        assert set(got) == set(want)
        if "error" in want:
            assert got["error"] == want["error"]
            continue
        assert (got["width"], got["height"]) == (want["width"], want["height"])
        key = "topk" if "topk" in want else "boxes"
        assert [e["label"] for e in got[key]] == [e["label"] for e in want[key]]
        np.testing.assert_allclose(
            [e["score"] for e in got[key]], [e["score"] for e in want[key]], rtol=1e-5, atol=1e-6
        )
        if key == "boxes":
            np.testing.assert_allclose(
                [b["xyxy"] for b in got[key]], [b["xyxy"] for b in want[key]], atol=0.02
            )


def test_cli_ray_records_equal_local_predict(
    ray_session, cls_bundle: Path, photos: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from simmim_deploy.cli.main import app

    out = tmp_path / "out dir" / "ray results.jsonl"
    args = ["predict", str(cls_bundle), str(photos), "--engine", "ray", "--actors", "1",
            "--batch-size", "3", "--top-k", "2", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    n = len(list_sources([str(photos)]))
    assert f"{n} images (1 errors)" in res.output and "on 1 Ray actor(s)" in res.output
    assert "(decoding in actors)" in res.output  # one node: --decode-in auto decodes in actors
    assert f"{n} records for {n} inputs, each once" in res.output
    local = predict(cls_bundle, [str(photos)], batch_size=4, top_k=2)["results"]
    records = _lines(out)
    _assert_same_records(records, local)
    assert any(" " in Path(r["path"]).name for r in records)
    assert [r for r in records if "error" in r][0]["path"].endswith("broken.jpg")


def test_detection_to_parquet_equals_local(
    ray_session, det_bundle: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "boxes.parquet"
    cfg = PredictConfig(str(det_bundle), (str(photos),), batch_size=4, score_thresh=0.5,
                        out=str(out))  # fmt: skip
    calls: list[tuple[int, int]] = []
    summary = run_ray_predict(
        cfg, RayOptions(actors=1, decode_in="tasks"), progress=lambda *done: calls.append(done)
    )
    n = len(list_sources([str(photos)]))
    assert calls == [(i, n) for i in range(1, n + 1)]  # after every record, as local predict
    assert summary["images"] == n and summary["errors"] == 1 and summary["actors"] == 1
    assert summary["ray"]["decode_in"] == "tasks" and summary["ray"]["decode_threads"] == 0
    assert summary["checked"] == {"inputs": n, "records": n, "repeats_dropped": 0}
    assert summary["runtime"]["backend"]["backend"] == "onnxruntime"
    import pyarrow.parquet as pq

    rows = pq.read_table(out).to_pylist()
    # Parquet has every column on every row: drop the nulls to get the JSON records back.
    records = [{k: v for k, v in row.items() if v is not None} for row in rows]
    local = predict(det_bundle, [str(photos)], batch_size=3, score_thresh=0.5)["results"]
    _assert_same_records(records, local)
    assert sum(len(r.get("boxes", [])) for r in records) > 0


class DiesOnce(Predictor):
    """Kills its own worker process on the first batch (a real crash, no exception)."""

    def __call__(self, batch):
        marker = Path(self.cfg.bundle).parent / "died-once"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().__call__(batch)


def test_dead_actor_is_restarted_and_no_image_is_lost_or_doubled(
    ray_session, cls_bundle: Path, photos: Path, tmp_path: Path
) -> None:
    import cloudpickle

    bundle = tmp_path / "bundle copy"
    shutil.copytree(cls_bundle, bundle)
    listing = tmp_path / "list.txt"  # every photo twice, and one that does not exist
    paths = list_sources([str(photos)])
    listing.write_text("\n".join([*paths, "gone.jpg", *paths]) + "\n")
    cloudpickle.register_pickle_by_value(__import__(__name__))  # workers need not import tests
    cfg = PredictConfig(str(bundle), (str(listing),), batch_size=2, top_k=3)
    summary = run_ray_predict(cfg, RayOptions(actors=1), predictor=DiesOnce)
    assert (bundle.parent / "died-once").exists(), "the actor never died: nothing was tested"
    assert summary["ray"]["decode_in"] == "actors"  # one node: the actor decoded its batches
    n = 2 * len(paths) + 1
    assert summary["checked"] == {"inputs": n, "records": n, "repeats_dropped": 0}
    local = predict(cls_bundle, [str(listing)], batch_size=8, top_k=3)["results"]
    _assert_same_records(summary["results"], local)
    assert summary["results"][len(paths)] == {"path": str(tmp_path / "gone.jpg"),
                                     "error": f"no such file: {tmp_path / 'gone.jpg'}"}  # fmt: skip


def test_pool_plan_splits_the_node_among_the_actors(ray_session, cls_bundle: Path) -> None:
    from simmim_deploy.serve.ray_plan import DECODE_CPUS, plan_pool

    cpus = ray_session.cluster_resources()["CPU"]
    cfg = PredictConfig(str(cls_bundle), ("x",))
    whole = plan_pool(ray_session, cfg, RayOptions(actors=1))
    # one actor on a one-node cluster: it decodes, and runs as many threads as local predict
    assert (whole.decode_in, whole.cpus_per_actor, whole.threads) == ("actors", cpus, None)
    assert (
        whole.decoders == max(1, int(cpus) - 1) and whole.pool.max_concurrent_calls_per_actor == 2
    )
    two = plan_pool(ray_session, cfg, RayOptions(actors=2))
    assert two.cpus_per_actor == cpus / 2 and two.threads == max(1, int(cpus / 2))
    assert (two.pool.min_size, two.pool.max_size) == (2, 2)
    tasks = plan_pool(ray_session, cfg, RayOptions(actors=1, decode_in="tasks"))
    assert tasks.decoders == 0 and tasks.cpus_per_actor == cpus - DECODE_CPUS
    assert tasks.pool.max_concurrent_calls_per_actor is None
    pinned = plan_pool(ray_session, replace(cfg, threads=1, workers=3), RayOptions(actors=1))
    assert (pinned.threads, pinned.decoders) == (1, 3)  # --threads and --workers win


def test_local_workers_run_at_the_commands_priority(ray_session) -> None:
    """Ray renices its workers by +15 unless told otherwise; a local instance's work must not."""

    @ray_session.remote(num_cpus=0)
    class Niceness:
        def get(self) -> int:
            return os.nice(0)

    actor = Niceness.remote()
    assert ray_session.get(actor.get.remote()) == os.nice(0)
    ray_session.kill(actor)


def test_bad_options_are_one_line_errors(ray_session, cls_bundle: Path, photos: Path) -> None:
    with pytest.raises(UserError, match="--actors must be >= 0"):
        RayOptions(actors=-1)
    with pytest.raises(
        UserError, match="^--decode-in must be one of auto, actors, tasks, got 'x'$"
    ):
        RayOptions(decode_in="x")
    with pytest.raises(UserError, match="--save-vis needs the local engine"):
        run_ray_predict(PredictConfig(str(cls_bundle), (str(photos),), save_vis="v"), RayOptions())
    with pytest.raises(UserError, match="^the bundle has no 'int8' ONNX model"):  # in an actor
        cfg = PredictConfig(str(cls_bundle), (str(photos),), backend="ort-cpu", precision="int8")
        run_ray_predict(cfg, RayOptions(actors=1))
    with pytest.raises(UserError, match="the Ray cluster has 0"):
        run_ray_predict(
            PredictConfig(str(cls_bundle), (str(photos),)), RayOptions(actors=1, gpus_per_actor=1.0)
        )


def test_file_uri_sources_list_like_local_paths(photos: Path) -> None:
    from urllib.parse import quote

    local = list_sources([str(photos)])
    assert list_sources([photos.as_uri()]) == ["file://" + quote(p) for p in local]
    top_jpgs = [p for p in local if p.endswith(".jpg") and Path(p).parent == photos]
    assert list_sources([photos.as_uri() + "/*.jpg"]) == sorted(
        "file://" + quote(p) for p in top_jpgs
    )


def test_decode_task_reads_uris_like_local_paths(cls_bundle: Path, photos: Path) -> None:
    from simmim_deploy.core.manifest import read_manifest
    from simmim_deploy.serve.preprocess import PreprocessSpec
    from simmim_deploy.serve.ray_predict import decode_batch
    from simmim_deploy.serve.runtime import prepare_image

    spec = PreprocessSpec.from_manifest(read_manifest(cls_bundle))
    local = list_sources([str(photos)])
    good = next(p for p in local if "broken" not in p)
    uri = Path(good).as_uri()  # spaces become %20
    batch = {"index": np.arange(3), "path": np.array([uri, good, "file:///no/x.jpg"])}
    out = decode_batch(batch, spec)
    want = prepare_image(good, spec)
    np.testing.assert_array_equal(out["image"][0], want.array)
    np.testing.assert_array_equal(out["image"][1], want.array)
    assert list(out["error"]) == ["", "", "no such file: file:///no/x.jpg"]
    assert (out["width"][0], out["height"][0]) == (want.width, want.height)


def test_without_the_ray_extra_the_error_names_it(
    cls_bundle: Path, photos: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n"
        "            raise ImportError('ray is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[3]}"}
    cmd = [sys.executable, "-m", "simmim_deploy.cli.main", "predict", str(cls_bundle),
           str(photos), "--engine", "ray"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines() == [
        "error: the optional package 'ray' is not installed (needed for predict --engine ray): "
        "pip install 'simmim-deploy[ray]'"
    ]
