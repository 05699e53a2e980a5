"""Seed libraries: build from a base model, save/load with provenance, compare measurements to seeds."""

from crystalwatch.seeds.build import (
    CLUSTER_THRESHOLD,
    MIN_CHAT_COVERAGE,
    build_from_model,
    build_library,
    cluster,
    task_seeds,
)
from crystalwatch.seeds.library import (
    SCHEMA,
    CrossModelWarning,
    Seed,
    SeedLibrary,
    SeedLibraryError,
    SeedLibraryWarning,
    TaskSeeds,
    VariantDist,
    seed_pvalue,
    tokenizer_fingerprint,
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
    "build_from_model",
    "build_library",
    "cluster",
    "seed_pvalue",
    "task_seeds",
    "tokenizer_fingerprint",
]
