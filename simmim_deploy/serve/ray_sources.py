"""Sources for ``predict --engine ray``: local paths as local ``predict`` lists them, plus URIs.

Local paths (files, folders, globs, ``.txt`` lists) go through ``predict.expand_sources``, so
both engines see the same images in the same order under the same names. A source with a scheme
(``s3://bucket/photos/``, ``gs://...``, ``hdfs://...``, ``file:///...``) is listed and read with
``pyarrow.fs``, the filesystem layer Ray Data itself reads through; the record's ``path`` is the
URI as listed. Listing happens once on the driver (metadata only); the bytes are read inside the
Ray decoding tasks, next to the decoder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from simmim_deploy.core.errors import UserError, require
from simmim_deploy.serve.images import IMAGE_SUFFIXES, ImageError
from simmim_deploy.serve.predict import LIST_SUFFIXES, expand_sources


def is_uri(source: str) -> bool:
    """``scheme://...`` (two or more letters, so a Windows drive ``C:/`` is not one)."""
    scheme, sep, _ = source.partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.replace("+", "").isalnum()


def _filesystem(uri: str) -> tuple[Any, str]:
    fs = require("pyarrow.fs", "ray", "reading URIs with predict --engine ray")
    try:
        return fs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # unknown scheme, no credentials, bad bucket
        raise UserError(f"{uri}: cannot open this filesystem: {exc}") from None


def _prefix(uri: str, root: str) -> str:
    """What goes before a listed filesystem path to make its URI.

    pyarrow returns ``bucket/key`` for object stores (``s3://`` + path) and ``/dir/file`` for
    filesystems with a host (``hdfs://host:8020`` + path, ``file://`` + path).
    """
    parts = urlsplit(uri)
    return f"{parts.scheme}://" + (parts.netloc if root.startswith("/") else "")


def _uri(prefix: str, path: str) -> str:
    return prefix + quote(path)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob read as ``glob.glob(recursive=True)``: ``*`` stays in a folder, ``**/`` spans."""
    out = []
    for part in re.split(r"(\*\*/|\*\*|\*|\?|\[[^\]]+\])", pattern):
        if part == "**/":
            out.append("(?:.*/)?")
        elif part == "**":
            out.append(".*")
        elif part == "*":
            out.append("[^/]*")
        elif part == "?":
            out.append("[^/]")
        elif part.startswith("[") and part.endswith("]") and len(part) > 2:
            out.append("[^" + part[2:] if part[1] == "!" else part)
        else:
            out.append(re.escape(part))
    return re.compile("".join(out) + r"\Z")


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


def expand_uri(uri: str) -> list[str]:
    """A folder (recursive), a file, a ``.txt`` list or a glob at a URI -> image URIs, sorted."""
    pafs = require("pyarrow.fs", "ray", "reading URIs with predict --engine ray")
    fs, root = _filesystem(uri)
    prefix = _prefix(uri, root)
    if any(ch in root for ch in "*?["):
        base = root[: min(root.find(ch) for ch in "*?[" if ch in root)].rsplit("/", 1)[0]
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        pattern = _glob_regex(root)
        found = [i.path for i in infos if i.is_file and pattern.match(i.path)]
        if not found:
            raise UserError(f"the glob {uri!r} matches no file")
        return [_uri(prefix, p) for p in sorted(found)]
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.Directory:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        return [_uri(prefix, i.path) for i in sorted(infos, key=lambda i: i.path)
                if i.is_file and _is_image(i.path)]  # fmt: skip
    if info.type == pafs.FileType.File:
        if not root.lower().endswith(LIST_SUFFIXES):
            return [uri]
        with fs.open_input_stream(root) as fh:
            lines = fh.read().decode("utf-8").splitlines()
        parent = uri.rsplit("/", 1)[0]
        entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        return [e if is_uri(e) or e.startswith("/") else f"{parent}/{e}" for e in entries]
    raise UserError(f"{uri}: no such file or folder")


def list_sources(sources: Iterable[str]) -> list[str]:
    """Every image of ``sources`` in order; runs of local sources go through ``expand_sources``."""
    sources = list(sources)
    if not any(is_uri(s) for s in sources):
        return expand_sources(sources)
    paths: list[str] = []
    local: list[str] = []
    for source in [*sources, None]:
        if source is not None and not is_uri(source):
            local.append(source)
            continue
        if local:
            paths.extend(expand_sources(local))
            local = []
        if source is not None:
            paths.extend(expand_uri(source))
    if not paths:
        raise UserError(f"no images found in {', '.join(sources)} (suffixes {IMAGE_SUFFIXES})")
    return paths


class Reader:
    """Turns a record path into what ``load_image`` decodes: the path itself, or a URI's bytes.

    Local paths are handed to Pillow as paths (as local ``predict`` does, so error messages
    match); URIs are read through one cached ``pyarrow.fs`` filesystem per scheme and host.
    """

    def __init__(self) -> None:
        self._filesystems: dict[str, tuple[Any, bool]] = {}

    def __call__(self, path: str) -> str | bytes:
        if not is_uri(path):
            return path
        parts = urlsplit(path)
        host = f"{parts.scheme}://{parts.netloc}"
        if host not in self._filesystems:
            fs, root = _filesystem(path)
            self._filesystems[host] = (fs, root.startswith("/"))
        fs, rooted = self._filesystems[host]
        where = unquote(parts.path) if rooted else parts.netloc + unquote(parts.path)
        try:
            with fs.open_input_stream(where) as fh:
                return fh.read()
        except FileNotFoundError:
            raise ImageError(f"no such file: {path}") from None
