"""The seed library's data types and errors (no behaviour: shared by the library and its file codec)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crystalwatch.answers import Reference
from crystalwatch.errors import CrystalwatchError, CrystalwatchWarning

SCHEMA = "crystalwatch.seeds/1"


class SeedLibraryError(CrystalwatchError):
    """A seed library file is unreadable or does not fit what is measured; the message says how to fix it."""


class SeedLibraryWarning(CrystalwatchWarning):
    """The library fits, but something differs from what is measured (task revised, other tokenizer)."""


class CrossModelWarning(SeedLibraryWarning):
    """The library was built from another model or tokenizer: comparable (outcomes, not tokens), but say so."""


@dataclass
class VariantDist:
    """One base-model prompt variant: its distribution over the task's outcomes and its coverage."""

    id: str
    kind: str
    probs: np.ndarray
    coverage: float
    clustered: bool = True  # False: coverage too low to trust, stored for reference only


@dataclass
class Seed:
    id: str  # s0, s1, ... by decreasing weight
    centroid: np.ndarray  # coverage-weighted mean of the members
    members: list[str]  # "kind/variant" ids
    weight: float  # share of the clustered variants in this seed


@dataclass
class TaskSeeds:
    """The seeds of one task, the base's variant distributions, and the base's own metrics per prompt kind."""

    task: str
    version: int
    spec_hash: str
    outcomes: list[str]
    variants: list[VariantDist]
    seeds: list[Seed]
    base: dict[str, dict[str, float]]  # kind ("completion", "chat", "all") -> entropy, diversity, coverage

    @property
    def centroids(self) -> np.ndarray:
        return np.stack([s.centroid for s in self.seeds])

    def base_diversity(self, kind: str) -> float:
        """The base's diversity on the same prompt family when it was measured there, else over all prompts."""
        return self.base.get(kind, self.base["all"])["diversity"]

    def base_consensus(self, kind: str) -> np.ndarray:
        """The base's coverage-weighted consensus on the same prompt family (all prompts when it has none)."""
        return self.reference(kind).consensus

    def prompts(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """The base's prompts of the same family (all prompts when it has none): distributions [V, K], coverage."""
        mine = [v for v in self.variants if v.kind == kind] or self.variants
        return np.stack([v.probs for v in mine]), np.array([v.coverage for v in mine])

    def reference(self, kind: str) -> Reference:
        """The base's prompts of the same family (all prompts when it has none) as a run's reference."""
        return Reference.of(*self.prompts(kind), "base")


def variant_key(v: VariantDist) -> str:
    return f"{v.kind}/{v.id}"
