"""The trackio sink: ``crystal/*`` scalars into the current trackio run, at the global step.

The Trainer's trackio callback starts the run (``report_to="trackio"``); in a loop of your own, call
``trackio.init`` first, or the sink starts a run named after the crystalwatch run in project
``crystalwatch`` (``$TRACKIO_PROJECT`` when set) and finishes it when closed. Data stay local
(``$TRACKIO_DIR``) unless trackio is told to sync. The measurement's alerts (:mod:`crystalwatch.actions`) become
``trackio.alert`` calls (printed, stored with the run, shown in its dashboard, sent to its webhook when set).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import trackio

from crystalwatch.sinks.base import RunInfo
from crystalwatch.sinks.scalars import Scalars

if TYPE_CHECKING:  # the type of what write() receives; nothing of it runs here
    from crystalwatch.actions import Reading


class TrackioSink:
    """Logs every measurement's scalars to trackio; see the module docstring."""

    name = "trackio"

    def __init__(self, **_: Any) -> None:
        self._owned = False
        self._scalars = Scalars()

    def start(self, run: RunInfo) -> None:
        if trackio.context_vars.current_run.get() is None:
            trackio.init(project=os.environ.get("TRACKIO_PROJECT", "crystalwatch"), name=run.name,
                         config={"crystalwatch": run.config})  # fmt: skip
            self._owned = True

    def write(self, reading: Reading, step: int, extra: dict[str, float]) -> None:
        if trackio.context_vars.current_run.get() is None:  # the run ended (its owner finished it)
            return
        trackio.log(dict(self._scalars(reading, extra)), step=int(step))
        for alert in reading.alerts:
            trackio.alert(title=alert.title, text=alert.text, level=trackio.AlertLevel(alert.level.lower()))

    def close(self) -> None:
        if self._owned:
            trackio.finish()
            self._owned = False
