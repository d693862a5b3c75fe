"""Where ``predict --engine ray`` writes its records: JSON lines (as local ``predict``) or Parquet.

Both files are written under a temporary name and renamed into place when the run completes.
JSON lines go through ``predict.jsonl_sink``, the writer of local ``predict``. Parquet holds the
same records as columns (``path``, ``width``, ``height``, ``topk`` or ``boxes``, ``error``); a
field a record lacks (``error`` on a decoded image, ``topk`` on an unreadable one) is null.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from simmim_deploy.core.atomic import atomic_path
from simmim_deploy.core.errors import require
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
