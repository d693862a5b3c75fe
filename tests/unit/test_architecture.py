"""The shape of the house: import directions, top-level folders, lint."""

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


# The import rules, in one table: each layer and what it may import (the layering:
# cli -> train | export | serve | pipeline -> models | data -> core). train, export and serve
# never import each other; serve and core, the torch-free ones, also forbid torch and timm.
LAYERS: dict[str, tuple[set[str], tuple[str, ...]]] = {
    # layer:     (simmim_deploy subpackages it may import, third-party roots it must not)
    "cli": ({"train", "export", "serve", "pipeline", "models", "data", "core"}, ()),
    "pipeline": ({"train", "export", "serve", "models", "data", "core"}, ("typer",)),
    "train": ({"models", "data", "core"}, ("typer",)),
    "export": ({"models", "data", "core"}, ("typer",)),
    "serve": ({"core"}, ("typer", "torch", "torchvision", "timm")),
    "models": ({"data", "core"}, ("typer",)),
    "data": ({"core"}, ("typer",)),
    "core": (set(), ("typer", "torch", "torchvision", "timm")),
}


def test_the_table_covers_every_layer() -> None:
    packages = {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS), f"add {packages ^ set(LAYERS)} to LAYERS"


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_imports_follow_the_layer_table(layer: str) -> None:
    allowed, forbidden = LAYERS[layer]
    for path in _files(layer):
        bad = set()
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "simmim_deploy" and len(parts) > 1:
                if parts[1] not in allowed | {layer} and parts[1] in LAYERS:
                    bad.add(name)
            elif parts[0] in forbidden:
                bad.add(name)
        assert not bad, f"{path.relative_to(ROOT)} ({layer}) imports {sorted(bad)}"


def test_the_table_would_catch_models_importing_export(tmp_path: Path) -> None:
    """The rule that let ``models -> export`` through (export missing from a list) is gone."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from simmim_deploy.export.prune import apply_pruned_arch\n")
    allowed, _ = LAYERS["models"]
    assert not {m.split(".")[1] for m in _imports(probe)} <= allowed | {"models"}


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
