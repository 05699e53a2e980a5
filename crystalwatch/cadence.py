"""When the Monitor measures, and what measuring has cost: its own wall time against the training time.

The budget promise: everything the monitor spends (setup, measuring, logging, saves, close) stays within
``budget`` of the training time, once the run is long enough to pay for setup. So a measurement is due when what
was spent so far, this measurement and the final one (each costing what the last one did) fit in the budget of the
training so far. ``every_n_steps`` replaces the rule with a fixed cadence (0: at begin and end only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class Cadence:
    """The monitor's own time, the training time between its calls, and when a measurement is due."""

    def __init__(self, clock: Callable[[], float], every_n_steps: int | None, budget: float) -> None:
        self.clock = clock  # the only source of time (tests pass a fake one)
        self.every_n_steps, self.budget = every_n_steps, budget
        self.seconds = 0.0  # the monitor's own wall time in this process
        self.train_seconds = 0.0  # training time: the time between the monitor's calls (or as the caller says)
        self.measure_seconds = 0.0  # what the last measurement cost
        self._mark: float | None = None  # end of the monitor's last call
        self._depth = 0  # nesting of own() (the outermost counts)

    @contextlib.contextmanager
    def own(self) -> Iterator[None]:
        """Count the time inside as the monitor's own (once, however the calls nest), never as training time."""
        if self._depth:
            yield
            return
        start = self.clock()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            spent = self.clock() - start
            self.seconds += spent
            self._mark = start + spent if self._mark is None else self._mark + spent

    def new_run(self) -> None:
        """A new run starts: its training time counts from the end of the monitor's current call."""
        self._mark = None

    def trained(self, seconds: float | None = None) -> None:
        """Count ``seconds`` of training (default: the time since the monitor's last call ended)."""
        now = self.clock()
        self.train_seconds += seconds if seconds is not None else now - (now if self._mark is None else self._mark)
        self._mark = now

    @property
    def fixed(self) -> bool:
        return self.every_n_steps is not None

    def due(self, step: int) -> bool:
        """Whether ``step`` should be measured: a multiple of ``every_n_steps``, or within the budget. With several
        processes the adaptive answer is this process's own: the Monitor takes the main process's."""
        n = self.every_n_steps
        if n is not None:
            return n > 0 and step % n == 0
        return self.seconds + 2 * self.measure_seconds <= self.budget * self.train_seconds

    def __str__(self) -> str:
        n = self.every_n_steps
        if n is None:
            return f"adaptively (measuring <= {self.budget:.0%} of training time)"
        return f"every {n} steps" if n else "at begin and end only"
