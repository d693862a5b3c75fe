"""The row checks the small-data benchmark parts share (classification, detection)."""

from __future__ import annotations

import argparse


def check_rows(parser: argparse.ArgumentParser, args: argparse.Namespace, rows: tuple) -> None:
    """Refuse unknown ``args.rows``; drop the old-defaults row when no ``--old-src`` is given."""
    unknown = sorted(set(args.rows) - set(rows))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(rows)}")
    if "old defaults" in args.rows and args.old_src is None:
        args.rows.remove("old defaults")
        print("no --old-src: the old-defaults row is left out", flush=True)
