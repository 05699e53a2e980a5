"""The ``crystalwatch`` command line. Importing it loads typer and rich only: every command imports what it
needs (torch, transformers, matplotlib) when it runs, so ``crystalwatch --help`` and ``crystalwatch report``
stay fast."""

from crystalwatch.cli.commands import app

__all__ = ["app"]
