"""The JSONL trajectory: one record per (measurement, task), append-only (format: docs/trajectory.md)."""

from __future__ import annotations

import gzip
import json
import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from crystalwatch.errors import CrystalwatchError
from crystalwatch.files import RepairWarning, append_lines, ensure_folder

SCHEMA = "crystalwatch.trajectory/1"
REQUIRED = ("run", "index", "step", "task", "outcomes", "consensus", "metrics", "state", "events")


class TrajectoryError(CrystalwatchError):
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
    """Appends records to a JSONL file, whole lines only, so nothing measured is lost.

    Before each append a truncated last line (left by a crash) is cut back, with a warning; a failed
    append (disk full) is undone and raises :class:`~crystalwatch.files.OutputError`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if _is_gzip(self.path):
            raise TrajectoryError(f"{self.path}: a gzip file; trajectories are appended as plain JSONL: "
                                  "decompress it (gunzip) or choose another path")  # fmt: skip
        ensure_folder(self.path.parent)

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        lines = [json.dumps(json_safe({"schema": SCHEMA, **r}), ensure_ascii=False, allow_nan=False) for r in records]
        append_lines(self.path, lines)


def _is_gzip(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _read_text(path: Path) -> str:
    """The file's text (gzip-compressed trajectories are read too); errors name the file."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TrajectoryError(f"{path}: cannot read the trajectory ({err.strerror})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise TrajectoryError(f"{path}: a damaged gzip file ({err}); recover what you can with gunzip") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TrajectoryError(f"{path}: not a text file (byte {err.start} is not UTF-8); a trajectory is the JSONL "
                              "file that `crystalwatch trajectory` or the callback writes") from None  # fmt: skip


def _other_file_kind(text: str) -> str | None:
    """What a JSON file that is not a trajectory is, if it is one of crystalwatch's other files."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return None
    schema = whole.get("schema") if isinstance(whole, dict) else None
    if schema == "crystalwatch.measurement/1":
        return "an audit JSON from `crystalwatch measure`, not a trajectory"
    if isinstance(schema, str) and schema.startswith("crystalwatch.seeds/"):
        return "a seed library, not a trajectory"
    return None


def read_trajectory(path: str | Path, *, empty_ok: bool = False) -> list[dict[str, Any]]:
    """Read and check every record of a trajectory file, in order.

    A truncated last line (a crash in the middle of a write) is skipped with a warning; any other
    malformed line raises :class:`TrajectoryError` naming the file and the line. A file without records
    is an error unless ``empty_ok``.
    """
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            other = _other_file_kind(text)
            if other:
                raise TrajectoryError(f"{path}: this is {other}; pass the .jsonl trajectory that "
                                      "`crystalwatch trajectory` or the callback wrote") from None  # fmt: skip
            if n == len(lines):
                warnings.warn(f"{path}:{n}: skipping a truncated last record ({err.msg})", RepairWarning, stacklevel=2)
                continue
            raise TrajectoryError(
                f"{path}:{n}: not a JSON record ({err.msg} at column {err.colno}); "
                "the file was edited or two writers interleaved: remove the line or rewrite the run"
            ) from None
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            other = _other_file_kind(text) if n == 1 else None
            if other:
                raise TrajectoryError(f"{path}: this is {other}; pass the .jsonl trajectory that "
                                      "`crystalwatch trajectory` or the callback wrote")  # fmt: skip
            found = record.get("schema") if isinstance(record, dict) else type(record).__name__
            raise TrajectoryError(f"{path}:{n}: schema is {found!r}, expected {SCHEMA!r}; is this a trajectory file?")
        missing = [k for k in REQUIRED if k not in record]
        if missing:
            raise TrajectoryError(f"{path}:{n}: record lacks field(s) {', '.join(missing)} (see docs/trajectory.md)")
        if len(record["consensus"]) != len(record["outcomes"]):
            raise TrajectoryError(f"{path}:{n}: 'consensus' has {len(record['consensus'])} values for "
                                  f"{len(record['outcomes'])} outcomes")  # fmt: skip
        records.append(record)
    if not records and not empty_ok:
        raise TrajectoryError(f"{path}: no records; was the run measured at least once?")
    return records
