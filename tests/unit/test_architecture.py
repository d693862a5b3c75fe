"""The shape of the house (STYLE.md): import directions, top-level folders, lint."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "simmim_deploy"


def _imports(path: Path) -> set[str]:
    """Every module name a file imports, at any depth (lazy imports inside functions count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py"))


@pytest.mark.parametrize(
    "stage", ["train", "export", "serve", "models", "data", "core", "pipeline"]
)
def test_library_code_never_imports_the_cli_or_typer(stage: str) -> None:
    for path in _files(stage):
        bad = {m for m in _imports(path) if m.startswith(("simmim_deploy.cli", "typer"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_serve_imports_neither_torch_nor_training_code() -> None:
    forbidden = (
        "torch",
        "torchvision",
        "timm",
        "simmim_deploy.train",
        "simmim_deploy.models",
        "simmim_deploy.export",
    )
    for path in _files("serve"):
        bad = {m for m in _imports(path) if m == "torch" or m.startswith(forbidden)}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_core_is_torch_free_and_lower_layers_do_not_import_upper_ones() -> None:
    for path in _files("core"):
        bad = {
            m
            for m in _imports(path)
            if m.startswith(("torch", "timm", "simmim_deploy."))
            and not m.startswith("simmim_deploy.core")
        }
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
    for stage in ("models", "data"):
        for path in _files(stage):
            upper = ("simmim_deploy.train", "simmim_deploy.serve", "simmim_deploy.cli")
            bad = {m for m in _imports(path) if m.startswith(upper)}
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("stage", ["train", "export"])
def test_stages_do_not_import_each_other(stage: str) -> None:
    siblings = tuple(f"simmim_deploy.{s}" for s in ("train", "export", "serve") if s != stage)
    for path in _files(stage):
        bad = {m for m in _imports(path) if m.startswith(siblings)}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, simmim_deploy, simmim_deploy.core.manifest; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("folder", ["train", "export", "serve"])
def test_top_level_stage_folders_are_not_packages(folder: str) -> None:
    top = ROOT / folder
    assert (top / "README.md").is_file(), f"{folder}/ needs a README.md"
    assert not list(top.rglob("__init__.py")), f"{folder}/ must not be importable"
    assert not list(top.glob("*.py")), f"{folder}/ holds assets, not code"


def test_cli_help_is_fast_and_lists_every_stage() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "simmim_deploy.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("train", "export", "build", "verify", "predict", "serve", "benchmark", "demo"):
        assert command in out.stdout
    code = "import sys, simmim_deploy.cli.main; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False", "--help must not import torch"


def test_ruff_lint_and_format_are_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install 'simmim-deploy[dev]')")
    lint = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-3000:]
    fmt = subprocess.run([ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout[-3000:]
