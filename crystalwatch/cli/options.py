"""What every command shares: reading comma-separated options, checking them, and turning errors into one line."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

import typer

from crystalwatch.errors import CrystalwatchError, CrystalwatchWarning
from crystalwatch.sinks.console import console


def _task_list(tasks: str | None, option: str = "--tasks") -> list[str] | None:
    """Task ids or paths from a comma-separated option; None when the option is not given."""
    if tasks is None:
        return None
    items = [t.strip() for t in tasks.split(",") if t.strip()]
    if not items:
        raise CrystalwatchError(f"{option} is empty: name task ids or YAML paths, e.g. {option} coin_flip,weekday "
                                "(leave the option out for every task)")  # fmt: skip
    return items


def _csv(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise CrystalwatchError(f"{option} {text!r} has an empty item; separate the values with single commas")
    return items


def _steps(text: str | None) -> list[int] | None:
    items = _csv(text, "--steps")
    if items is None:
        return None
    try:
        return [int(x) for x in items]
    except ValueError:
        raise CrystalwatchError(f"--steps {text!r}: each step must be a whole number, e.g. 0,100,200") from None


def _device(device: str) -> str:
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise CrystalwatchError(f"--device: {device!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    return device


def _say(kind: str, message: Any) -> None:
    """One message line, never hard-wrapped (the console soft-wraps), markup in the message left as text."""
    colour = "red" if kind == "error" else "yellow"
    console.print(f"[{colour}]{kind}:[/{colour}] ", end="")
    console.print(str(message), markup=False, highlight=False)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Known input errors become one red line and exit code 2; crystalwatch's warnings become yellow lines."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    original = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int, *rest: Any) -> None:
        if issubclass(category, CrystalwatchWarning):
            _say("warning", message)
        else:
            original(message, category, filename, lineno, *rest)

    with warnings.catch_warnings():
        warnings.showwarning = show
        warnings.simplefilter("always", CrystalwatchWarning)
        try:
            yield
        except CrystalwatchError as err:
            _say("error", err)
            raise typer.Exit(2) from None
        except OSError as err:  # a place the OS refused that no check above foresaw: still one line, no traceback
            where = f"{err.filename}: " if err.filename else ""
            _say("error", f"{where}{err.strerror or err}")
            raise typer.Exit(2) from None
