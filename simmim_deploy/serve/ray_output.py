"""Where ``predict --engine ray`` writes its records: JSON lines (as local ``predict``) or Parquet.

Both files are written under a temporary name and renamed into place when the run completes.
JSON lines go through ``predict.jsonl_sink``, the writer of local ``predict``. Parquet holds the
same records as columns (``path``, ``width``, ``height``, ``topk`` or ``boxes``, ``error``); a
field a record lacks (``error`` on a decoded image, ``topk`` on an unreadable one) is null.
:func:`write_in_order` streams the records back from Ray in input order, checks that every input
index arrived exactly once, and turns a ``UserError`` raised in a task or actor into one line.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from simmim_deploy.core.atomic import atomic_path
from simmim_deploy.core.errors import UserError, require
from simmim_deploy.serve.predict import jsonl_sink

ROW_GROUP = 4096  # records per Parquet row group


def parquet_schema(task: str) -> Any:
    """The Arrow schema of a record of ``task`` (classification or detection)."""
    pa = require("pyarrow", "ray", "Parquet output")
    if task == "detection":
        box = pa.struct([("xyxy", pa.list_(pa.float64())), ("score", pa.float64()),
                         ("label", pa.string()), ("index", pa.int64())])  # fmt: skip
        result = ("boxes", pa.list_(box))
    else:
        top = pa.struct([("label", pa.string()), ("index", pa.int64()), ("score", pa.float64())])
        result = ("topk", pa.list_(top))
    return pa.schema([("path", pa.string()), ("width", pa.int64()), ("height", pa.int64()),
                      result, ("error", pa.string())])  # fmt: skip


class RecordWriter:
    """Context manager yielding ``write(record)``: JSON lines, Parquet (``.parquet``) or nothing.

    Args:
        out: the file to write, None to write nothing.
        task: the bundle's task (picks the Parquet schema).
    """

    def __init__(self, out: str | None, task: str = "classification") -> None:
        self.out = out
        self.task = task
        self._stack = contextlib.ExitStack()
        self._rows: list[dict[str, Any]] = []
        self._parquet: Any = None

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        if self.out is None or not self.out.lower().endswith(".parquet"):
            return self._stack.enter_context(jsonl_sink(self.out))
        pq = require("pyarrow.parquet", "ray", "Parquet output")
        tmp = self._stack.enter_context(atomic_path(self.out))
        self._schema = parquet_schema(self.task)
        self._parquet = self._stack.enter_context(pq.ParquetWriter(str(tmp), self._schema))
        return self._write_row

    def _write_row(self, record: dict[str, Any]) -> None:
        self._rows.append(record)
        if len(self._rows) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            pa = require("pyarrow", "ray", "Parquet output")
            self._parquet.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None and self._parquet is not None:
            self._flush()
        self._stack.__exit__(*exc)


def _in_order(batches: Any, seen: bytearray) -> Iterator[tuple[dict, str, str]]:
    """Yield ``(record, actor, runtime)`` in input order, marking ``seen[index]``.

    An index outside ``seen`` or seen before (a retried task whose first output also arrived)
    is counted in ``seen``'s extra last byte and dropped, so no image is written twice.
    """
    total = len(seen) - 1
    waiting: dict[int, tuple[dict, str, str]] = {}
    nxt = 0
    for batch in batches:
        for index, rec, actor, rt in zip(
            batch["index"], batch["record"], batch["actor"], batch["runtime"], strict=True
        ):
            index = int(index)
            if not 0 <= index < total or seen[index]:
                seen[total] = min(255, seen[total] + 1)
                continue
            seen[index] = 1
            waiting[index] = (json.loads(rec), str(actor), str(rt))
            while nxt in waiting:
                yield waiting.pop(nxt)
                nxt += 1


def write_in_order(
    records: Any,
    out: str | None,
    task: str,
    total: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Stream the records to ``out`` in input order; raises ``UserError`` if one is missing.

    ``progress(done, total)`` is called after each record, as local ``predict`` calls it.
    """
    seen = bytearray(total + 1)  # one byte per input, then the dropped repeats
    got: dict[str, Any] = {"results": [], "errors": 0, "actors": set(), "runtime": None,
                           "first": None}  # fmt: skip
    begin = time.perf_counter()
    try:
        with RecordWriter(out, task) as write:
            stream = records.iter_batches(batch_size=None, batch_format="numpy")
            for done, (record, actor, described) in enumerate(_in_order(stream, seen), 1):
                got["errors"] += "error" in record
                got["actors"].add(actor)
                got["runtime"] = got["runtime"] or (json.loads(described) if described else None)
                got["first"] = got["first"] or time.perf_counter() - begin
                write(record)
                if out is None:
                    got["results"].append(record)
                if progress:
                    progress(done, total)
            missing = total - sum(seen[:-1])
            if missing:
                raise UserError(f"{missing} of {total} images came back without a record; "
                                "nothing was written")  # fmt: skip
    except Exception as exc:  # a UserError raised in a task or an actor: one line, no traceback
        message = _user_error(exc)
        if message is None:
            raise
        raise UserError(message) from None
    got["seconds"] = time.perf_counter() - begin
    got["repeats"] = seen[-1]
    return got


# "simmim_deploy.core.errors.UserError: message" in a remote traceback
_USER_ERROR_LINE = re.compile(
    r"^\s*(?:[\w.]+\.)?(?:UserError|MissingExtraError|ImageError\w*): (.+)$", re.MULTILINE
)


def _user_error(exc: BaseException) -> str | None:
    """The message of a ``UserError`` in ``exc``: raised here, or inside a Ray task or actor.

    Ray re-raises a task's exception as a ``RayTaskError`` (``.cause``: the original); an actor
    whose constructor raised dies with only the traceback text, so that is searched last.
    """
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = getattr(exc, "cause", None) or exc.__cause__  # type: ignore[assignment]
    for e in chain:
        if isinstance(e, UserError) and not hasattr(e, "cause"):
            return str(e)
    found = _USER_ERROR_LINE.findall("\n".join(str(e) for e in chain))
    return found[-1] if found else None
