"""The measurement record: the one shape of what crystalwatch measured, and its JSON in and out.

One :class:`Record` per (measurement, task). The monitor makes them, every sink writes them, the JSONL
trajectory stores them (schema ``crystalwatch.trajectory/1``, docs/trajectory.md), and the report, the
demo summary and resume replay read them back. Records also read like the JSON object they are stored
as (``record["step"]``), so code written against the files keeps working.
"""

from __future__ import annotations

import gzip
import json
import math
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from crystalwatch.errors import CrystalwatchError
from crystalwatch.files import RepairWarning, ensure_folder
from crystalwatch.phases import Event

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


@dataclass
class Record:
    """What one measurement found for one task (fields: docs/trajectory.md)."""

    run: str
    index: int
    step: int
    task: str
    outcomes: list[str]
    consensus: list[float]
    metrics: dict[str, float | None]
    state: str
    events: list[Event] = field(default_factory=list)  # stored objects given here are read as events
    label: str = ""
    model: str = ""
    time: str = ""
    kind: str = ""
    estimator: str = ""
    terminators: str = ""
    library: str | None = None
    seed: str | None = None
    seed_centroid: list[float] = field(default_factory=list)
    candidate: str | None = None
    reference: str = "base"  # where change is measured from: the library's "base", or the run's "start"
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    trainer: dict[str, float] = field(default_factory=dict)  # the trainer's own signals logged since the last one
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know, kept as read

    def __post_init__(self) -> None:
        self.events = [e if isinstance(e, Event) else Event.from_json(e) for e in self.events]

    # -- reading like the stored JSON object --------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key == "schema":
            return SCHEMA
        if key in _FIELDS:
            return getattr(self, key)
        if key in self.extra:
            return self.extra[key]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key == "schema" or key in _FIELDS or key in self.extra

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    @property
    def top(self) -> tuple[str, float] | None:
        """The consensus's most likely outcome and its probability (None when the consensus is empty)."""
        probs = [(p if isinstance(p, (int, float)) and math.isfinite(p) else -1.0) for p in self.consensus]
        if not probs or max(probs) < 0:
            return None
        best = max(range(len(probs)), key=probs.__getitem__)
        return str(self.outcomes[best]), float(probs[best])

    def prompts(self) -> tuple[np.ndarray, np.ndarray]:
        """The measured prompts' distributions ([V, K], in ``outcomes`` order) and coverage, from ``variants``."""
        v = list(self.variants.values())
        return np.array([x["probs"] for x in v], dtype=float), np.array([x["coverage"] for x in v], dtype=float)

    # -- JSON ---------------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The stored object: ``schema`` first, then every field (NaN as null)."""
        out: dict[str, Any] = {"schema": SCHEMA}
        for name in _FIELDS:
            if name != "extra":
                out[name] = getattr(self, name)
        out["events"] = [e.to_json() for e in self.events]
        out.update(self.extra)
        return json_safe(out)

    @classmethod
    def from_json(cls, raw: Any, where: str = "<record>") -> Record:
        """Check a stored object (schema, required fields, shapes) and build the record; errors name ``where``."""
        if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
            found = raw.get("schema") if isinstance(raw, dict) else type(raw).__name__
            raise TrajectoryError(f"{where}: schema is {found!r}, expected {SCHEMA!r}; is this a trajectory file?")
        missing = [k for k in REQUIRED if k not in raw]
        if missing:
            raise TrajectoryError(f"{where}: record lacks field(s) {', '.join(missing)} (see docs/trajectory.md)")
        if not isinstance(raw["consensus"], list) or not isinstance(raw["outcomes"], list):
            raise TrajectoryError(f"{where}: 'consensus' and 'outcomes' must be lists")
        if len(raw["consensus"]) != len(raw["outcomes"]):
            raise TrajectoryError(f"{where}: 'consensus' has {len(raw['consensus'])} values for "
                                  f"{len(raw['outcomes'])} outcomes")  # fmt: skip
        if not isinstance(raw["metrics"], dict) or not isinstance(raw["events"], list):
            raise TrajectoryError(f"{where}: 'metrics' must be an object and 'events' a list")
        known = {k: v for k, v in raw.items() if k in _FIELDS and k != "extra"}
        extra = {k: v for k, v in raw.items() if k not in _FIELDS and k != "schema"}
        for key in ("label", "model", "time", "kind", "estimator", "terminators", "reference", "trainer"):
            if known.get(key) is None:
                known.pop(key, None)
        try:
            return cls(**known, extra=extra)
        except (KeyError, TypeError, ValueError) as err:
            raise TrajectoryError(f"{where}: an event lacks or mistypes a field ({err}); each event needs step, "
                                  "task, from and to (see docs/trajectory.md)") from None


_FIELDS = tuple(f.name for f in fields(Record))


# -- files --------------------------------------------------------------------------------------------------------


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


def _not_a_trajectory(path: Path, other: str) -> TrajectoryError:
    return TrajectoryError(f"{path}: this is {other}; pass the .jsonl trajectory that `crystalwatch trajectory` "
                           "or the callback wrote")  # fmt: skip


def number(value: Any) -> float | None:
    """A finite float, or None for null, NaN, inf, booleans and non-numbers."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def run_files(folder: str | Path | None = None, *, trajectory: str | Path | None = None) -> tuple[Path, Path]:
    """(seed library, trajectory) of a run: the one place that decides where they live.

    A run with an output ``folder`` (a Trainer's ``output_dir``, a recipe chain's or the demo's folder):
    ``<folder>/crystalwatch/seeds.json.gz`` and ``<folder>/crystalwatch/trajectory.jsonl``. A run known by its
    ``trajectory`` file (a measured ladder of checkpoints): that file, and its library beside it,
    ``<trajectory>`` with the suffix ``.seeds.json``."""
    if trajectory is not None:
        return Path(trajectory).with_suffix(".seeds.json"), Path(trajectory)
    if folder is None:
        raise TypeError("run_files needs a folder or a trajectory")
    return Path(folder) / "crystalwatch" / "seeds.json.gz", Path(folder) / "crystalwatch" / "trajectory.jsonl"


def report_folder(trajectory: str | Path) -> Path:
    """Where a run's HTML report goes: ``<folder>/report`` for a run folder's trajectory
    (``<folder>/crystalwatch/trajectory.jsonl``: :func:`run_files`), else a ``report`` folder beside the file."""
    path = Path(trajectory)
    in_run_folder = path.name == "trajectory.jsonl" and path.parent.name == "crystalwatch"
    return (path.parent.parent if in_run_folder else path.parent) / "report"


def new_trajectory(folder: str | Path) -> Path:
    """The trajectory of a new run of stages (the demo, a recipe chain) in ``folder`` (:func:`run_files`): a file
    an earlier run left there is kept beside it as ``trajectory.previous.jsonl`` (which replaces an older one)."""
    path = run_files(folder)[1]
    if path.exists():
        path.replace(path.with_name("trajectory.previous.jsonl"))
    ensure_folder(path.parent)
    return path


def read_trajectory(path: str | Path, *, empty_ok: bool = False) -> list[Record]:
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
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            other = _other_file_kind(text)
            if other:
                raise _not_a_trajectory(path, other) from None
            if n == len(lines):
                warnings.warn(f"{path}:{n}: skipping a truncated last record ({err.msg})", RepairWarning, stacklevel=2)
                continue
            raise TrajectoryError(
                f"{path}:{n}: not a JSON record ({err.msg} at column {err.colno}); "
                "the file was edited or two writers interleaved: remove the line or rewrite the run"
            ) from None
        if n == 1 and not (isinstance(raw, dict) and raw.get("schema") == SCHEMA):
            other = _other_file_kind(text)
            if other:
                raise _not_a_trajectory(path, other)
        records.append(Record.from_json(raw, f"{path}:{n}"))
    if not records and not empty_ok:
        raise TrajectoryError(f"{path}: no records; was the run measured at least once?")
    return records


def record_lines(records: list[Record]) -> list[str]:
    """Records as JSONL lines (strict JSON: NaN is written as null)."""
    return [json.dumps(r.to_json(), ensure_ascii=False, allow_nan=False) for r in records]
