"""The JSONL trajectory sink: one record per (measurement, task), appended in whole lines (docs/trajectory.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from crystalwatch.files import append_lines, ensure_folder, write_atomic
from crystalwatch.records import Record, TrajectoryError, record_lines
from crystalwatch.sinks.base import RunInfo


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


class JsonlSink:
    """The trajectory file as a sink (always on; the main process only)."""

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.writer = TrajectoryWriter(path)
        self.written = 0  # records written by this sink

    def start(self, run: RunInfo) -> None:
        pass

    def write(self, records: Sequence[Record], step: int, extra: dict[str, float]) -> None:
        self.writer.write(records)
        self.written += len(records)

    def close(self) -> None:
        pass
