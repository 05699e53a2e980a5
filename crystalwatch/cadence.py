"""When the Monitor measures, and what measuring has cost: its own wall time against the training time.

The budget promise: everything the monitor spends (setup, measuring, logging, saves, close) stays within
``budget`` of the training time, once the run is long enough to pay for setup. Two rules keep it:

- **Front-loaded**, when the run's length is known (the Trainer's ``max_steps``; ``Monitor.start(total_steps=)``):
  the whole run's training time is projected (the training so far, plus the steps left at the lower of the mean
  and the last step's time: the first steps, slowed by warm-up, would overstate it), the measurements it can afford
  are counted (:data:`CREDIT` of the budget of the projected run, less what was spent, less the final measurement,
  each costing what the last one did), and they are spread log-uniformly over the steps left: the next one is due when
  log(1 + step) has gone 1/(n + 1) of the way from the last measured step to the end. Post-training moves fastest
  early (coverage and entropy fall most in the first steps), so this looks hardest there.
- **Pay as you go**, when the length is unknown: a measurement is due when what was spent so far, this
  measurement and the final one fit in the budget of the training so far (the first comes after about
  1/budget times a measurement's cost of training).

``every_n_steps`` replaces both with a fixed cadence (0: at begin and end only).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

CREDIT = 0.9  # the front-loaded rule spends on credit, against a projection: it plans with 90% of the budget, so
# that the projection's error and what the monitor cannot time itself (its imports, the Trainer's calls) fit too


class Cadence:
    """The monitor's own time, the training time between its calls, and when a measurement is due."""

    def __init__(self, clock: Callable[[], float], every_n_steps: int | None, budget: float) -> None:
        self.clock = clock  # the only source of time (tests pass a fake one)
        self.every_n_steps, self.budget = every_n_steps, budget
        self.seconds = 0.0  # the monitor's own wall time in this process
        self.train_seconds = 0.0  # training time: the time between the monitor's calls (or as the caller says)
        self.measure_seconds = 0.0  # what the last measurement cost
        self.total_steps: int | None = None  # the run's last step, when known: the front-loaded rule
        self._first_step = 0  # the step this run started at
        self._run_seconds = 0.0  # training time of this run (train_seconds counts every run)
        self._last_seconds = 0.0  # the last call's training time (one step, in a loop that calls every step)
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

    def new_run(self, step: int = 0, total_steps: int | None = None) -> None:
        """A new run starts at ``step`` (of ``total_steps`` when known): its training time counts from the end of
        the monitor's current call."""
        self._mark = None
        self._first_step, self._run_seconds, self._last_seconds = step, 0.0, 0.0
        self.total_steps = total_steps if total_steps and total_steps > step else None

    def trained(self, seconds: float | None = None) -> None:
        """Count ``seconds`` of training (default: the time since the monitor's last call ended)."""
        now = self.clock()
        spent = seconds if seconds is not None else now - (now if self._mark is None else self._mark)
        self.train_seconds += spent
        self._run_seconds += spent
        self._last_seconds = spent
        self._mark = now

    @property
    def fixed(self) -> bool:
        return self.every_n_steps is not None

    def due(self, step: int, last: int | None = None) -> bool:
        """Whether ``step`` should be measured (``last``: the last step measured): a multiple of ``every_n_steps``,
        or by the budget's rule (see the module docstring). With several processes the adaptive answer is this
        process's own: the Monitor takes the main process's."""
        n = self.every_n_steps
        if n is not None:
            return n > 0 and step % n == 0
        total = self.total_steps
        if total is None or step >= total or step <= self._first_step:
            return self.seconds + 2 * self.measure_seconds <= self.budget * self.train_seconds
        per_step = min(self._run_seconds / (step - self._first_step), self._last_seconds)
        projected = self._run_seconds + (total - step) * per_step
        left = CREDIT * self.budget * projected - self.seconds - self.measure_seconds  # the final one's share kept
        affordable = math.floor(left / self.measure_seconds) if self.measure_seconds > 0 else 0
        if affordable < 1:
            return False
        start = math.log1p(max(self._first_step if last is None else last, 0))
        return math.log1p(step) >= start + (math.log1p(total) - start) / (affordable + 1)

    def __str__(self) -> str:
        n = self.every_n_steps
        if n is None:
            shape = f"front-loaded over {self.total_steps} steps, " if self.total_steps else ""
            return f"adaptively ({shape}measuring <= {self.budget:.0%} of training time)"
        return f"every {n} steps" if n else "at begin and end only"
