"""crystalwatch: watch a language model crystallize while it is post-trained.

The public names load on first use, so that ``import crystalwatch`` (and the ``crystalwatch`` command's
``--help``) does not import torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

from crystalwatch._version import __version__

_PUBLIC = {  # name -> module
    "CrystalWatchCallback": "crystalwatch.callback",
    "CrystalWatchConfig": "crystalwatch.settings",
    "CrystalwatchError": "crystalwatch.errors",
    "Measurement": "crystalwatch.measure",
    "Monitor": "crystalwatch.monitor",
    "PhaseConfig": "crystalwatch.phases",
    "PhaseTracker": "crystalwatch.phases",
    "Record": "crystalwatch.records",
    "STATE_TABLE": "crystalwatch.phases",
    "SeedLibrary": "crystalwatch.seeds",
    "SeedLibraryError": "crystalwatch.seeds",
    "Task": "crystalwatch.tasks",
    "TaskResult": "crystalwatch.measure",
    "TaskSpecError": "crystalwatch.tasks",
    "VariantResult": "crystalwatch.measure",
    "build_seed_library": "crystalwatch.seeds",
    "builtin_task_ids": "crystalwatch.tasks",
    "consensus": "crystalwatch.metrics",
    "diversity": "crystalwatch.metrics",
    "entropy": "crystalwatch.metrics",
    "jsd": "crystalwatch.metrics",
    "load_model": "crystalwatch.models",
    "load_or_build": "crystalwatch.seeds",
    "load_task": "crystalwatch.tasks",
    "load_tasks": "crystalwatch.tasks",
    "measure": "crystalwatch.measure",  # the module is callable: it is the function too (measure.py)
    "measure_ladder": "crystalwatch.ladder",
    "normalized_entropy": "crystalwatch.metrics",
    "read_trajectory": "crystalwatch.records",
    "render_report": "crystalwatch.report",
    "velocity": "crystalwatch.metrics",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'crystalwatch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


__all__ = ["__version__", *_PUBLIC]
