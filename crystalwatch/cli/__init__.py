"""The ``crystalwatch`` command line. Importing it loads typer and rich only: every command imports what it
needs (torch, transformers, matplotlib) when it runs, so ``crystalwatch --help`` and ``crystalwatch report``
stay fast."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from crystalwatch.cli.commands import app

__all__ = ["app", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """The ``crystalwatch`` command: typer's own usage errors (an unknown option, a missing argument) become one
    line and exit code 2, as crystalwatch's errors do, instead of a boxed panel."""
    import typer.main

    from crystalwatch.cli.options import _say

    try:
        from typer._click import exceptions as click  # typer 0.2x vendors click...
        from typer.exceptions import Abort  # ...and keeps Abort (Ctrl-C) outside it
    except ImportError:  # older typer: click itself
        from click import exceptions as click  # type: ignore[no-redef]
        from click.exceptions import Abort  # type: ignore[no-redef]

    command = typer.main.get_command(app)
    try:
        code = command.main(args=list(argv) if argv is not None else None, prog_name="crystalwatch",
                            standalone_mode=False)  # fmt: skip
    except click.NoArgsIsHelpError as err:  # a bare group: its help, as typer shows it
        click.echo(err.ctx.get_help() if err.ctx else "")
        code = 2
    except click.UsageError as err:
        where = err.ctx.command_path if err.ctx else "crystalwatch"
        _say("error", f"{where}: {err.format_message().rstrip('.')} (see `{where} --help`)")
        code = 2
    except Abort:
        _say("error", "aborted")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
