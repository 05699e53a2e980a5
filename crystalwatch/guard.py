"""The monitor's error policy: report, count and carry on; agree across ranks on whether a stage worked.

Errors never break training: each is reported once with its traceback (then one line each) and counted — a
:class:`~crystalwatch.errors.CrystalwatchError` (bad input, its message says how to fix it) always in one line;
``strict=True`` raises. A stage every rank runs (setup, the library, a measurement) ends with one collective in
which the ranks learn whether it worked everywhere (``sharded.failures``), so that no rank waits for another in a
collective it will never join. The one error that is raised whatever ``strict`` says is a fatal
:class:`~crystalwatch.scoring.sharded.RankFault`: a failure inside a sharded forward, where the other ranks wait
in a weight gather that cannot be unwound (docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable, Iterator

from crystalwatch.errors import CrystalwatchError
from crystalwatch.scoring.sharded import RankFault, context, describe, failures

logger = logging.getLogger("crystalwatch")


class Guard:
    """Counts and reports the monitor's errors (``errors``, ``last_error``) and runs its stages guarded."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.errors = 0  # errors reported (not raised)
        self.last_error = ""  # the last of them, as "Type: message"
        self._reported = False  # the first error's traceback is shown; later ones get one line

    @contextlib.contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        """Report an error raised inside once with its traceback (then one line each), count it, and carry on."""
        try:
            yield
        except Exception as err:
            self.errors += 1
            self.last_error = str(err) if isinstance(err, RankFault) else f"{type(err).__name__}: {err}"
            if self.strict:
                raise
            if isinstance(err, RankFault) and err.fatal:  # the other ranks wait where this one cannot follow
                logger.error("crystalwatch: %s", err)
                raise
            if isinstance(err, CrystalwatchError):  # a user's error known in advance: its message says the fix
                logger.warning("crystalwatch: error while %s (training continues): %s", what, err)
            elif not self._reported:
                logger.warning("crystalwatch: error while %s (training continues; strict=True raises):\n%s",
                               what, traceback.format_exc())  # fmt: skip
                self._reported = True
            else:
                logger.warning("crystalwatch: error while %s: %s: %s", what, type(err).__name__, err)

    def agreed(self, what: str, work: Callable[[], None]) -> bool:
        """Run ``work`` guarded; True when it worked on every rank (one collective, which tells every rank which
        ranks failed and why)."""
        error: str | None = "not run"
        with self(what):
            work()
            error = None
        failed = failures(self.last_error if error else None)
        if failed and context()[1] > 1:
            logger.warning("crystalwatch: %s failed on %s; measuring is off on every process and training goes on",
                           what, describe(failed))  # fmt: skip
        return not failed
