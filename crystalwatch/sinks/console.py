"""The console sink: one readable line per transition (and the console every crystalwatch message uses)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console

from crystalwatch.phases import TAKEOVER, state_info
from crystalwatch.records import Record
from crystalwatch.sinks.base import RunInfo

if TYPE_CHECKING:  # the type of what write() receives; nothing of it runs here
    from crystalwatch.actions import Reading

LOG_WIDTH = 200  # columns of a table printed to a log (the demo's summary: a task and its transitions on one line)

console = Console(soft_wrap=True)  # messages are never hard-wrapped (logs, pipes); tables keep the width
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = LOG_WIDTH  # a log or a pipe: tables as wide as their rows, not rich's 80 columns


def styled(state: Any) -> str:
    """A state name in its console style from the state table."""
    info = state_info(state)
    return f"[{info.style}]{state}[/]" if info else str(state)


def print_events(records: Sequence[Record]) -> None:
    """One readable line per transition or early warning."""
    for r in records:
        for e in r.events:
            where = f"step {e.step}{' (' + r.label + ')' if r.label else ''}: {e.task}"
            if e.warning:
                console.print(f"{where} early warning: the prompts split on the top answer ({styled(e.to_state)})")
                continue
            tag = " (remelt)" if e.remelt else ""
            seed = f" onto {e.seed}" if e.seed else ""
            top = r.top
            answer = f' ("{top[0]}" {top[1]:.2f})' if top and e.to_state in TAKEOVER else ""
            console.print(f"{where} {styled(e.from_state)} -> {styled(e.to_state)}{seed}{answer}{tag}")


def print_start(records: Sequence[Record], told: set[str]) -> None:
    """One line naming the tasks whose run did not start at the library's base (said once per task)."""
    away = [r.task for r in records if r.reference == "start" and r.task not in told]
    if away:
        told.update(away)
        console.print(f"crystalwatch: {len(away)} task(s) start away from the seed library's base "
                      f"({', '.join(away)}): their readings measure change from this run's start; the seeds still "
                      "come from the library")  # fmt: skip


class ConsoleSink:
    """Prints every transition as it happens (and, once, the tasks whose run did not start at the base)."""

    name = "console"

    def __init__(self) -> None:
        self.told: set[str] = set()

    def start(self, run: RunInfo) -> None:
        pass

    def write(self, reading: Reading, step: int, extra: dict[str, float]) -> None:
        print_start(reading, self.told)
        print_events(reading)

    def close(self) -> None:
        pass
