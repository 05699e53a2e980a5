"""The Sink protocol and how sinks are chosen.

A sink is where measurements go. It is started once per run with what the run is (:class:`RunInfo`),
gets every measurement's records in order, and is closed at the end. Sinks never import each other
or anything above them: they see records (:mod:`crystalwatch.records`), the state table
(:mod:`crystalwatch.phases`) and their own tracker library.

Which sinks a run gets follows ``report_to`` the way transformers' and TRL's callbacks do: JSONL
(the trajectory) and the console always; each tracker when it is named (``"all"``: every tracker
whose package is installed; ``"none"``: no tracker). An explicit list of sink objects overrides it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from crystalwatch.errors import CrystalwatchError, did_you_mean

if TYPE_CHECKING:  # the type of what write() receives
    from crystalwatch.actions import Reading


@dataclass
class RunInfo:
    """What a sink is told when a run starts."""

    name: str  # the run name in the records
    output_dir: Path  # where files of the run go (trajectory, TensorBoard events, ...)
    config: dict[str, Any] = field(default_factory=dict)  # the monitor's settings (JSON-safe)
    library_path: str | None = None  # the seed library file, when there is one
    library_digest: str | None = None
    library_model: str | None = None  # the base model the library was built from
    label: str = ""  # the stage label (sft, dpo, ...)
    trajectory: Path | None = None  # the JSONL trajectory file


@runtime_checkable
class Sink(Protocol):
    """Where measurements go. ``write`` gets one measurement as a :class:`~crystalwatch.actions.Reading`: a list with
    one record per task, all at ``step``, and what the measurement asks for (``transitions``, ``alerts``, ``save``,
    ``stop``); ``extra`` holds the monitor's own numbers (errors, measure_seconds)."""

    name: str

    def start(self, run: RunInfo) -> None: ...

    def write(self, reading: Reading, step: int, extra: dict[str, float]) -> None: ...

    def close(self) -> None: ...


# name -> (module, class, the package it needs): one line per tracker; the module is imported only when chosen.
TRACKERS: dict[str, tuple[str, str, str]] = {
    "wandb": ("crystalwatch.sinks.wandb", "WandbSink", "wandb"),
    "tensorboard": ("crystalwatch.sinks.tensorboard", "TensorBoardSink", "tensorboard"),
    "trackio": ("crystalwatch.sinks.trackio", "TrackioSink", "trackio"),
    "mlflow": ("crystalwatch.sinks.mlflow", "MLflowSink", "mlflow"),
}
# transformers integrations that crystalwatch does not log to: named in report_to, they are ignored here.
OTHER_INTEGRATIONS = {"azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive", "flyte", "neptune",
                      "swanlab"}  # fmt: skip


def installed(tracker: str) -> bool:
    """Whether the package a tracker needs can be imported."""
    return importlib.util.find_spec(TRACKERS[tracker][2]) is not None


def tracker_names(report_to: str | Sequence[str] | None) -> list[str]:
    """The trackers ``report_to`` names (transformers' convention), checked: unknown names are an error."""
    if report_to is None:
        return []
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    if "none" in names:
        return []
    if "all" in names:
        return [t for t in TRACKERS if installed(t)]
    chosen = []
    for name in names:
        if name in TRACKERS:
            chosen.append(name)
        elif name not in OTHER_INTEGRATIONS:
            known = [*TRACKERS, "all", "none"]
            raise CrystalwatchError(f"report_to: unknown tracker {name!r}{did_you_mean(name, known)}; "
                                    f"crystalwatch logs to {', '.join(TRACKERS)} (or 'all', 'none')")  # fmt: skip
    return chosen


def tracker_sink(name: str, **options: Any) -> Sink:
    """A tracker's sink; a missing package is a clear error naming the extra to install."""
    module, cls, package = TRACKERS[name]
    if not installed(name):
        raise CrystalwatchError(f"report_to names {name!r} but the {package!r} package is not installed: "
                                f"pip install 'crystalwatch[{name}]'")  # fmt: skip
    return getattr(importlib.import_module(module), cls)(**options)


@contextlib.contextmanager
def grouped(group: str, job_type: str) -> Iterator[None]:
    """Group the tracker runs started inside (one stage of a chain) as one experiment: W&B reads
    ``WANDB_RUN_GROUP`` / ``WANDB_JOB_TYPE`` when the Trainer starts its run. The environment is restored."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is None:
        wandb.teardown()  # W&B reads its environment once per session: an idle earlier session would hide the group
    with environment({"WANDB_RUN_GROUP": group, "WANDB_JOB_TYPE": job_type}):
        yield


@contextlib.contextmanager
def environment(updates: dict[str, str] | None = None) -> Iterator[None]:
    """``updates`` set in ``os.environ`` for the block; afterwards the whole environment is as it was before (what
    the block set, a stage YAML's ``env:`` included, is undone)."""
    saved = dict(os.environ)
    os.environ.update(updates or {})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
