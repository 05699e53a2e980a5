"""The TensorBoard sink: ``crystal/*`` scalars, the consensus-vs-seed bars and the phase table, per step.

It writes its own event files under ``<output_dir>/runs/crystalwatch`` (``$TENSORBOARD_LOGGING_DIR`` when
set, as the Trainer's TensorBoard callback does), so TensorBoard shows crystalwatch as a run beside the
Trainer's. Scalars use the keys of :mod:`crystalwatch.sinks.scalars` at the global step; the bars are
images ``crystal/<task>/bars`` (drawn with Pillow: :func:`crystalwatch.bars.bars_rgb`); the measurement's rows
of the phase table are markdown text ``crystal/phase_table``. The Custom Scalars tab gets one chart per task with its
answers' lines together (``crystal/<task>/answer/*``): the answers over steps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystalwatch.bars import bars_rgb
from crystalwatch.records import Record
from crystalwatch.sinks.base import RunInfo
from crystalwatch.sinks.scalars import PREFIX, TABLE_COLUMNS, Scalars, imaged, table_row

if TYPE_CHECKING:  # the type of what write() receives; nothing of it runs here
    from crystalwatch.actions import Reading


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def phase_table_markdown(records: Sequence[Record]) -> str:
    """One measurement's phase-table rows as a markdown table."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(_cell(v) for v in table_row(r)) + " |" for r in records]
    return "\n".join(lines)


class TensorBoardSink:
    """Writes every measurement into TensorBoard event files; see the module docstring."""

    name = "tensorboard"

    def __init__(self, *, images: str | bool = "transitions", log_dir: str | Path | None = None, **_: Any) -> None:
        self.images = {True: "all", False: "none"}.get(images, images) if isinstance(images, bool) else images
        self._imaged: set[str] = set()
        self.log_dir = Path(log_dir) if log_dir else None
        self._writer: Any = None
        self._scalars = Scalars()

    def start(self, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if self.log_dir is None:
            root = os.environ.get("TENSORBOARD_LOGGING_DIR")
            self.log_dir = (Path(root).expanduser() if root else run.output_dir / "runs") / "crystalwatch"
        self._writer = SummaryWriter(log_dir=str(self.log_dir))
        self._writer.add_text(f"{PREFIX}/config", f"run {run.name}, seed library {run.library_digest} "
                              f"(base {run.library_model})", 0)  # fmt: skip

    def write(self, reading: Reading, step: int, extra: dict[str, float]) -> None:
        if self._writer is None:
            return
        if not self._scalars.kept:  # the first measurement: one multi-line chart per task, answers together
            self._writer.add_custom_scalars({"crystalwatch: answers over steps": {
                r.task: ["Multiline", [f"^{re.escape(PREFIX)}/{re.escape(r.task)}/answer/"]] for r in reading}})
        for key, value in self._scalars(reading, extra).items():
            self._writer.add_scalar(key, value, step)
        for record in imaged(reading, self.images, self._imaged):
            self._writer.add_image(f"{PREFIX}/{record.task}/bars", bars_rgb(record), step, dataformats="HWC")
        self._writer.add_text(f"{PREFIX}/phase_table", phase_table_markdown(reading), step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

