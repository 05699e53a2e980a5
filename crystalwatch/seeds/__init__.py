"""Seed libraries: build from a base model, save/load with provenance, compare measurements to seeds.

Reading and comparing (``SeedLibrary``) needs no torch; the building half (``seeds.build``: it measures a model)
is imported on first use, so that ``crystalwatch seeds show`` and ``report`` run without torch."""

from typing import Any

from crystalwatch.seeds.library import SeedLibrary, seed_pvalue, tokenizer_fingerprint
from crystalwatch.seeds.types import (
    SCHEMA,
    CrossModelWarning,
    Seed,
    SeedLibraryError,
    SeedLibraryWarning,
    TaskSeeds,
    VariantDist,
)

_BUILD = ("CLUSTER_THRESHOLD", "MIN_CHAT_COVERAGE", "build_seed_library", "cluster", "library_from_measurements",
          "load_or_build", "task_seeds")  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _BUILD:
        from crystalwatch.seeds import build

        return getattr(build, name)
    raise AttributeError(f"module 'crystalwatch.seeds' has no attribute {name!r}")


__all__ = [
    "CLUSTER_THRESHOLD",
    "MIN_CHAT_COVERAGE",
    "SCHEMA",
    "CrossModelWarning",
    "Seed",
    "SeedLibrary",
    "SeedLibraryError",
    "SeedLibraryWarning",
    "TaskSeeds",
    "VariantDist",
    "build_seed_library",
    "library_from_measurements",
    "load_or_build",
    "cluster",
    "seed_pvalue",
    "task_seeds",
    "tokenizer_fingerprint",
]
