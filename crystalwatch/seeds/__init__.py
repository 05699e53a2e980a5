"""Seed libraries: build from a base model, save/load with provenance, compare measurements to seeds."""

from crystalwatch.seeds.build import (
    CLUSTER_THRESHOLD,
    MIN_CHAT_COVERAGE,
    build_seed_library,
    cluster,
    library_from_measurements,
    load_or_build,
    task_seeds,
)
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
