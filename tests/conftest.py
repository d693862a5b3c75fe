"""Shared fixtures. The suite is CPU-only by default; ``gpu`` tests skip with their reason."""

from __future__ import annotations

import os

import pytest

# Keep the 2-core CI machine responsive and results repeatable.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _cuda_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "needs a CUDA GPU (none found)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _cuda_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"gpu marker: {reason}")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # not keywords: a param id "gpu" matches
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """``--backend auto`` caches timings under XDG_CACHE_HOME: never the user's own cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture
def spaced_tmp(tmp_path_factory: pytest.TempPathFactory):
    """A temporary directory whose path contains spaces (users' paths do)."""
    path = tmp_path_factory.mktemp("with space") / "my data dir"
    path.mkdir()
    return path
