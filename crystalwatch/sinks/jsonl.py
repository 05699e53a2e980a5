"""The JSONL trajectory sink: one record per (measurement, task), appended in whole lines (docs/trajectory.md).

It owns the file: appending, repairing a torn last line, counting its records (a checkpoint keeps the count),
cutting it back when a run resumes from a checkpoint, and replaying a run's records when a new stage continues it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from crystalwatch.answers import Reference
from crystalwatch.files import append_lines, ensure_folder, write_atomic
from crystalwatch.phases import PhaseTracker
from crystalwatch.records import Record, TrajectoryError, read_trajectory, record_lines
from crystalwatch.sinks.base import RunInfo

if TYPE_CHECKING:  # the type of what write() receives; nothing of it runs here
    from crystalwatch.actions import Reading


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

    def write(self, records: Iterable[Record]) -> None:
        append_lines(self.path, record_lines(list(records)))

    def keep(self, records: int) -> None:
        """Cut the file back to its first ``records`` lines, atomically: resuming from a checkpoint, what was
        written after it is an abandoned future."""
        if self.path.is_file():
            text = self.path.read_text(encoding="utf-8")
            write_atomic(self.path, "".join(text.splitlines(keepends=True)[:records]))


def _is_gzip(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


@dataclass
class RunSoFar:
    """What an existing trajectory file already holds for one run (see :meth:`JsonlSink.replay`)."""

    next_index: int = 0  # the index the run's next measurement gets
    last_step: int | None = None  # the run's last measured step (None: the run is new)
    library: str | None = None  # the digest of the library its last record was compared with
    records: int = 0  # records in the file, all runs


class JsonlSink:
    """The trajectory file as a sink (always on; the main process only)."""

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.writer = TrajectoryWriter(path)
        self.count = 0  # records in the file (all runs) once replay() or cut_back() read it; checkpoints keep it

    @property
    def path(self) -> Path:
        return self.writer.path

    def replay(self, run: str, tracker: PhaseTracker | None) -> RunSoFar:
        """Count the file's records and replay those of ``run`` into ``tracker`` (states, hysteresis, the last
        consensus for velocity), so that a new stage or a new ladder continues the run without duplicate
        (run, index, task) keys. ``tracker=None`` only counts (a new segment of a run)."""
        records = read_trajectory(self.path, empty_ok=True) if self.path.is_file() else []
        self.count = len(records)
        mine = [r for r in records if r.run == run] if tracker is not None else []
        centroids: dict[str, dict[str, list[float]]] = {}
        for r in mine:
            consensus = np.array(r.consensus, dtype=float)
            centroids.setdefault(r.task, {})[r.seed] = r.seed_centroid
            if r.reference == "start" and not tracker.seen(r.task) and r.variants:  # type: ignore[union-attr]
                tracker.set_reference(r.task, Reference.of(*r.prompts(), "start"))  # type: ignore[union-attr]
            tracker.update(r.step, r.task, r.metrics, consensus, r.seed, centroids[r.task])  # type: ignore[union-attr]
        if not mine:
            return RunSoFar(records=self.count)
        last = mine[-1]
        return RunSoFar(last.index + 1, last.step, last.library, self.count)

    def cut_back(self, records: int) -> None:
        """Keep the file's first ``records`` records: resuming from a checkpoint, what was written after it is an
        abandoned future."""
        self.writer.keep(records)
        self.count = records

    def start(self, run: RunInfo) -> None:
        pass

    def write(self, reading: Reading, step: int, extra: dict[str, float]) -> None:
        self.writer.write(reading)
        self.count += len(reading)

    def close(self) -> None:
        pass
