"""TensorRT: the builder type-checks against tensorrt-stubs; real builds run where a GPU is."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simmim_deploy.core.errors import UserError
from simmim_deploy.export import tensorrt_build as tb

MODULE = Path(tb.__file__)


def _stub_dir(dst: Path) -> Path | None:
    """Copy tensorrt-stubs' ``.pyi`` files and repair the two syntax errors they ship with
    (a parameter named ``in``; a non-default parameter after defaults), so mypy can read them."""
    import importlib.util

    spec = importlib.util.find_spec("tensorrt_bindings")
    if spec is None or not spec.submodule_search_locations:
        return None
    site = Path(next(iter(spec.submodule_search_locations))).parent
    for pkg in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(site / pkg, dst / pkg, ignore=shutil.ignore_patterns("*.py", "*.so"))
    for pyi in dst.rglob("*.pyi"):
        lines = re.sub(r"\bin: ", "in_: ", pyi.read_text()).split("\n")
        for _ in range(100):
            try:
                ast.parse("\n".join(lines))
                break
            except SyntaxError as exc:
                if "non-default argument" not in exc.msg:
                    raise
                i = exc.lineno - 1
                lines[i] = re.sub(r"(, \w+: [\w\[\], .|]+?)(?=[,)])", r"\1 = ...", lines[i])
        pyi.write_text("# mypy: ignore-errors\n" + "\n".join(lines))
    return dst


def test_tensorrt_build_type_checks(tmp_path) -> None:
    stubs = _stub_dir(tmp_path / "stubs")
    if stubs is None:
        pytest.skip("tensorrt-stubs is not installed")
    mypy = [sys.executable, "-m", "mypy", "--follow-imports=skip", "--no-incremental"]
    env = {"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([*mypy, str(MODULE)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    # The stubs are really used: a misspelt TensorRT call must be caught.
    bad = tmp_path / "bad.py"
    bad.write_text("import tensorrt as trt\ntrt.Builder(trt.Logger()).create_networkX(0)\n")
    run = subprocess.run([*mypy, str(bad)], capture_output=True, text=True, env=env, timeout=300)
    assert "create_networkX" in run.stdout


def test_no_tensorrt_is_one_line() -> None:
    if tb.real_tensorrt_available():
        pytest.skip("real TensorRT installed")
    with pytest.raises(UserError) as err:
        tb.require_tensorrt()
    assert "\n" not in str(err.value) and "simmim-deploy[tensorrt]" in str(err.value)


def test_engine_name() -> None:
    name = tb.engine_name("fp16", "8.9", "10.13.0.35", (1, 8, 32))
    assert name == "model.fp16.sm89.trt10.13.b1-8-32.engine"


@pytest.mark.gpu
def test_build_run_parity(vit_digits_ckpt, digits_batch, tmp_path) -> None:
    from simmim_deploy.core.manifest import read_manifest
    from simmim_deploy.export.bundle import export_bundle
    from simmim_deploy.export.config import ExportConfig
    from simmim_deploy.export.tensorrt_build import BuildConfig, build_engines
    from simmim_deploy.serve.backends.trt import TrtBackend, pick_engine

    if not tb.real_tensorrt_available():
        pytest.skip("gpu marker: TensorRT is not installed")
    out = tmp_path / "bundle"
    cfg = ExportConfig(
        checkpoint=str(vit_digits_ckpt), out=str(out), precision=("fp16",),
        eval_data="builtin:digits", verify_images=32, batch="1:8:32",
    )  # fmt: skip
    export_bundle(cfg)
    entries = build_engines(BuildConfig(source=str(out), precision="fp16"))
    engine = out / entries[0]["file"]
    assert engine.read_bytes()[:4] != b'{"fi'  # raw plan, no JSON/metadata header
    from simmim_deploy.export.verify import compare_classification, ort_runner

    ref = ort_runner(out / "model.onnx")(digits_batch[:8])[0]
    # The runtime picks the engine built for this GPU and TensorRT, and runs it.
    assert pick_engine(read_manifest(out), "fp16")["file"] == entries[0]["file"]
    got = TrtBackend(engine).run(digits_batch[:8])["logits"]
    assert compare_classification(ref, got)["cosine_mean"] > 0.999
