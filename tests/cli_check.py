"""Checking what a command printed: words, not line breaks; refusals without a traceback."""

from __future__ import annotations


def said(result) -> str:
    """The command's output with whitespace normalised: tests compare words, not line breaks."""
    return " ".join(result.output.split())


def refused(result, *phrases: str) -> None:
    """Exit code 2, one error line holding every phrase, and no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for phrase in phrases:
        assert phrase in said(result), result.output
