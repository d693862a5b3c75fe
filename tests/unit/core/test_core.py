"""core/: config dataclasses from YAML, atomic writes, manifest validation."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Literal

import pytest

from simmim_deploy.core.atomic import atomic_directory, atomic_path, atomic_write_text
from simmim_deploy.core.config import load_config, save_config
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.manifest import Manifest, read_manifest, write_manifest
from simmim_deploy.core.preprocess import PreprocessSpec


@dataclasses.dataclass(frozen=True)
class _Cfg:
    epochs: int = 1
    lr: float = 1e-3
    precision: Literal["fp32", "bf16"] = "fp32"
    milestones: tuple[int, ...] = ()
    name: str | None = None


def test_yaml_fills_the_dataclass_and_overrides_win(spaced_tmp: Path) -> None:
    recipe = spaced_tmp / "recipe.yaml"
    recipe.write_text("epochs: 3\nlr: 1\nmilestones: [1, 2]\n")
    cfg = load_config(_Cfg, recipe, {"epochs": 5, "name": None})
    assert cfg == _Cfg(epochs=5, lr=1.0, milestones=(1, 2))
    save_config(cfg, spaced_tmp / "resolved.yaml")
    assert load_config(_Cfg, spaced_tmp / "resolved.yaml") == cfg


def test_unknown_key_suggests_the_close_match(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epoch: 3\n")
    with pytest.raises(UserError, match="unknown config key 'epoch'.*did you mean 'epochs'"):
        load_config(_Cfg, recipe)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs: three\n", "must be an integer"),
        ("precision: fp64\n", "must be one of"),
        ("epochs: [1\n", "not valid YAML"),
        ("- 1\n", "must hold a mapping"),
    ],
)
def test_bad_recipes_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        load_config(_Cfg, recipe)
    assert "\n" not in str(info.value)


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    atomic_write_text(target, "whole")
    assert target.read_text() == "whole"
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_atomic_directory_appears_only_complete(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    with pytest.raises(RuntimeError), atomic_directory(bundle) as tmp:
        (tmp / "manifest.json").write_text("{}")
        raise RuntimeError("interrupted")
    assert not bundle.exists() and list(tmp_path.iterdir()) == []
    with atomic_directory(bundle) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(FileExistsError), atomic_directory(bundle):
        pass
    with atomic_directory(bundle, overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in bundle.iterdir()) == ["b"]


def test_manifest_is_validated(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "task": "x"}))
    with pytest.raises(UserError, match="missing"):
        read_manifest(tmp_path)
    spec = PreprocessSpec("letterbox", "bilinear", size=32)
    good = Manifest("detection", ("a",), {}, spec, [], {}).to_dict()
    write_manifest(tmp_path, good)
    assert read_manifest(tmp_path) == good
