"""``python -m crystalwatch.cli``: the same as the ``crystalwatch`` command."""

from crystalwatch.cli import main

main()
