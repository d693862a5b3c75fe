"""The edge runtime imports and runs in a fresh interpreter where torch cannot be imported."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("torch", "torchvision", "timm", "typer", "ray", "pyarrow", "simmim_deploy.train",
               "simmim_deploy.models", "simmim_deploy.export", "simmim_deploy.cli")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"{name} is blocked: the edge runtime must not need it")
            return None

    sys.meta_path.insert(0, Block())
    """
)

PROBE = textwrap.dedent(
    """
    import importlib, importlib.util, json, pkgutil, sys
    import simmim_deploy.serve as serve

    names = [m.name for m in pkgutil.walk_packages(serve.__path__, "simmim_deploy.serve.")]
    for name in names:
        importlib.import_module(name)
    from simmim_deploy.serve.predict import predict
    from simmim_deploy.serve.server import create_app

    summary = predict(sys.argv[1], [sys.argv[2]], batch_size=2)
    names_ = ("openvino", "auto") if importlib.util.find_spec("openvino") else ("auto",)
    by_backend = {b: predict(sys.argv[1], [sys.argv[2]], backend=b)["runtime"]["backend"]["backend"]
                  for b in names_}
    create_app(sys.argv[1])
    try:
        import torch  # noqa: F401
        blocked = False
    except ImportError:
        blocked = True
    print(json.dumps({"modules": names, "torch": "torch" in sys.modules, "blocked": blocked,
                      "ok": summary["ok"], "by_backend": by_backend}))
    """
)


def test_serve_runs_without_torch(cls_bundle: Path, image_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[3]}", "PATH": "/usr/bin",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(cls_bundle), str(image_dir)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["blocked"], "the blocker did not work: the test would prove nothing"
    assert report["torch"] is False
    assert report["ok"] == 5
    if importlib.util.find_spec("openvino") is not None:  # the openvino extra
        assert report["by_backend"]["openvino"] == "openvino"
    assert report["by_backend"]["auto"] in ("openvino", "onnxruntime")
    expected = {
        "server",
        "predict",
        "bench",
        "batcher",
        "pipeline",
        "backends.trt",
        "backends.ort",
        "backends.openvino",
        "backends.auto",
    }
    assert {m.removeprefix("simmim_deploy.serve.") for m in report["modules"]} >= expected
