"""The JSONL trajectory: one record per (measurement, task), append-only (format: docs/trajectory.md)."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = "crystalwatch.trajectory/1"
REQUIRED = ("run", "index", "step", "task", "outcomes", "consensus", "metrics", "state", "events")


class TrajectoryError(ValueError):
    """A trajectory file cannot be read; the message names the file and line and says how to fix it."""


def json_safe(value: Any) -> Any:
    """A JSON-safe copy: NaN and inf become null (strict JSON), numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class TrajectoryWriter:
    """Appends records to a JSONL file and flushes after every batch, so nothing measured is lost."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        lines = [json.dumps(json_safe({"schema": SCHEMA, **r}), ensure_ascii=False, allow_nan=False) for r in records]
        if not lines:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()


def read_trajectory(path: str | Path) -> list[dict[str, Any]]:
    """Read and check every record of a trajectory file, in order.

    A truncated last line (a crash in the middle of a write) is skipped with a warning; any other
    malformed line raises :class:`TrajectoryError` naming the file and the line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise TrajectoryError(f"{path}: cannot read the trajectory ({err.strerror})") from None
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if n == len(lines):
                warnings.warn(f"{path}:{n}: skipping a truncated last record ({err.msg})", stacklevel=2)
                continue
            raise TrajectoryError(
                f"{path}:{n}: not a JSON record ({err.msg} at column {err.colno}); "
                "the file was edited or two writers interleaved: remove the line or rewrite the run"
            ) from None
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            found = record.get("schema") if isinstance(record, dict) else type(record).__name__
            raise TrajectoryError(f"{path}:{n}: schema is {found!r}, expected {SCHEMA!r}; is this a trajectory file?")
        missing = [k for k in REQUIRED if k not in record]
        if missing:
            raise TrajectoryError(f"{path}:{n}: record lacks field(s) {', '.join(missing)} (see docs/trajectory.md)")
        if len(record["consensus"]) != len(record["outcomes"]):
            raise TrajectoryError(f"{path}:{n}: 'consensus' has {len(record['consensus'])} values for "
                                  f"{len(record['outcomes'])} outcomes")  # fmt: skip
        records.append(record)
    if not records:
        raise TrajectoryError(f"{path}: no records; was the run measured at least once?")
    return records
