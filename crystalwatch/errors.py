"""The base classes of crystalwatch's errors and warnings.

Every error that bad input or an unwritable place can cause derives from :class:`CrystalwatchError`
(a ``ValueError``): its message names the file, field, option or task, says what is wrong and how to
fix it. The CLI prints it as one line and exits with code 2; the callback reports it and training goes
on. Warnings that a user should read (a library built by another model, a repaired file) derive from
:class:`CrystalwatchWarning`.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Iterable


class CrystalwatchError(ValueError):
    """Bad input or an unusable place; the message says what and how to fix it."""


class CrystalwatchWarning(UserWarning):
    """Something the user should know; nothing was lost."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else a :class:`CrystalwatchError` with a suggestion."""
    choices = list(choices)
    if value not in choices:
        raise CrystalwatchError(
            f"unknown {name} {value!r}{did_you_mean(value, choices)}; use one of {', '.join(choices)}"
        )
    return value


def check_int(name: str, value: object, minimum: int = 0) -> int:
    """``value`` if it is a whole number >= ``minimum`` (not a bool, not 2.5), else a :class:`CrystalwatchError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise CrystalwatchError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    if value < minimum:
        raise CrystalwatchError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_number(name: str, value: object, low: float, high: float, *, open_low: bool = False,
                 open_high: bool = False) -> float:  # fmt: skip
    """``value`` if it is a number in the range (ends open or closed), else a :class:`CrystalwatchError`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        x = float(value)  # type: ignore[arg-type]
        ok = (low < x if open_low else low <= x) and (x < high if open_high else x <= high)
    if not ok:
        span = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise CrystalwatchError(f"{name} must be a number in {span}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def require_extra(extra: str, *modules: str, what: str) -> None:
    """A command that needs packages an extra installs: one line naming the extra when any is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise CrystalwatchError(f"{what} needs {', '.join(missing)}, which this install lacks: "
                                f"pip install 'crystalwatch[{extra}]'")  # fmt: skip
