"""Sinks: where measurements go. JSONL and the console always; W&B, TensorBoard, trackio and MLflow when
``report_to`` names them (the protocol and the choice: ``crystalwatch.sinks.base``). Trackers are imported
only when chosen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crystalwatch.sinks.base import Sink, tracker_names, tracker_sink
from crystalwatch.sinks.console import ConsoleSink
from crystalwatch.sinks.jsonl import JsonlSink


def default_sinks(trajectory: Path, config: Any, report_to: Any = None) -> list[Sink]:
    """The sinks a run gets unless it names its own: the JSONL trajectory (first, so that tracker trouble loses
    nothing), the console when ``config.console``, and each tracker ``config.report_to`` (else ``report_to``, the
    Trainer's) names, with the config's image setting (alerts come planned, with each measurement)."""
    sinks: list[Sink] = [JsonlSink(trajectory)]
    if config.console:
        sinks.append(ConsoleSink())
    for name in tracker_names(config.report_to if config.report_to is not None else report_to):
        sinks.append(tracker_sink(name, images=config.images))
    return sinks
