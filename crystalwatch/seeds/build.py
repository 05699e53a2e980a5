"""Building a seed library: measure a base model, cluster each task's variant distributions into seeds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from crystalwatch import metrics
from crystalwatch._version import __version__
from crystalwatch.measure import Measurement, TaskResult, measure
from crystalwatch.scoring.prompts import DEFAULT_TERMINATORS, chat_template_for
from crystalwatch.seeds.library import SeedLibrary, tokenizer_fingerprint
from crystalwatch.seeds.types import Seed, SeedLibraryError, TaskSeeds, VariantDist, variant_key

CLUSTER_THRESHOLD = 0.1  # JSD bits (average linkage): variants closer than this share a seed
MIN_CHAT_COVERAGE = 1e-3  # chat prompts of a base model below this coverage are kept but not clustered


def cluster(p: np.ndarray, threshold: float = CLUSTER_THRESHOLD) -> np.ndarray:
    """Deterministic cluster labels (0..n-1, ordered by first appearance) for the rows of ``p``."""
    if len(p) == 1:
        return np.zeros(1, dtype=int)
    tree = linkage(squareform(metrics.pairwise_jsd(p), checks=False), method="average")
    raw = fcluster(tree, t=threshold, criterion="distance")
    order = {label: i for i, label in enumerate(dict.fromkeys(raw))}
    return np.array([order[r] for r in raw])


def _base_stats(variants: list[VariantDist]) -> dict[str, float]:
    """The base's own metrics on these variants: the same ``task_metrics`` a later measurement gets."""
    return metrics.task_metrics(np.stack([v.probs for v in variants]), np.array([v.coverage for v in variants]))


def task_seeds(
    results: Sequence[TaskResult], threshold: float = CLUSTER_THRESHOLD, min_chat_coverage: float = MIN_CHAT_COVERAGE
) -> TaskSeeds:
    """Cluster one task's base-model variants (of one or more prompt kinds) into seeds."""
    task = results[0].task
    variants = [
        VariantDist(
            v.request.variant, r.kind, v.probs, v.coverage, r.kind != "chat" or v.coverage >= min_chat_coverage
        )
        for r in results
        for v in r.variants
    ]
    used = [v for v in variants if v.clustered]
    if not used:
        raise SeedLibraryError(
            f"task '{task.id}': no prompt variant has usable coverage on the base model; "
            f"measure completion prompts too or lower min_chat_coverage (now {min_chat_coverage})"
        )
    p = np.stack([v.probs for v in used])
    cov = np.array([v.coverage for v in used])
    labels = cluster(p, threshold)
    groups = sorted(range(labels.max() + 1), key=lambda g: (-(labels == g).sum(), int(np.argmax(labels == g))))
    seeds = [
        Seed(
            f"s{i}",
            metrics.consensus(p[labels == g], cov[labels == g]),
            [variant_key(used[j]) for j in np.flatnonzero(labels == g)],
            float((labels == g).mean()),
        )
        for i, g in enumerate(groups)
    ]
    # The base's own metrics on exactly the prompts a later measurement uses: every variant of a kind.
    base = {"all": _base_stats(variants)}
    for kind in dict.fromkeys(v.kind for v in variants):
        of_kind = [v for v in variants if v.kind == kind]
        if len(of_kind) >= 2:
            base[kind] = _base_stats(of_kind)
    return TaskSeeds(task.id, task.version, task.spec_hash, task.outcome_names, variants, seeds, base)


def library_from_measurements(
    measurements: Sequence[Measurement],
    *,
    tokenizer: Any = None,
    threshold: float = CLUSTER_THRESHOLD,
    min_chat_coverage: float = MIN_CHAT_COVERAGE,
    provenance: dict[str, Any] | None = None,
) -> SeedLibrary:
    """A library from measurements of the base model (typically one with completion, one with chat prompts)."""
    per_task: dict[str, list[TaskResult]] = {}
    for m in measurements:
        for tid, r in m.tasks.items():
            per_task.setdefault(tid, []).append(r)
    first = measurements[0]
    prov: dict[str, Any] = {
        "model": first.model,
        "estimator": first.estimator,
        "terminators": first.terminators,
        "kinds": sorted({r.kind for rs in per_task.values() for r in rs}),
        "cluster": {"method": "average", "distance": "jsd_bits", "threshold": threshold},
        "min_chat_coverage": min_chat_coverage,
        "package_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if tokenizer is not None:
        prov.update(tokenizer_fingerprint(tokenizer))
    prov.update(provenance or {})
    return SeedLibrary({tid: task_seeds(rs, threshold, min_chat_coverage) for tid, rs in per_task.items()}, prov)


def build_seed_library(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[Any] | None = None,
    *,
    kinds: Sequence[str] = ("completion", "chat"),
    model_name: str = "",
    estimator: str = "exact",
    terminators: str = DEFAULT_TERMINATORS,
    threshold: float = CLUSTER_THRESHOLD,
    min_chat_coverage: float = MIN_CHAT_COVERAGE,
    provenance: dict[str, Any] | None = None,
) -> SeedLibrary:
    """Measure the base model on every prompt kind in ``kinds`` and build its library.

    Chat prompts are skipped (with no error) when the tokenizer has no chat template that crystalwatch
    can render; Gemma tokenizers without one are rendered in Gemma's turn format.
    """
    usable = [k for k in kinds if k != "chat" or chat_template_for(tokenizer) is not None]
    if not usable:
        raise ValueError(f"no usable prompt kind in {list(kinds)}: the tokenizer has no chat template")
    measurements = [
        measure(model, tokenizer, tasks, kind=k, estimator=estimator, terminators=terminators, model_name=model_name)  # type: ignore[arg-type]
        for k in usable
    ]
    return library_from_measurements(measurements, tokenizer=tokenizer, threshold=threshold,
                         min_chat_coverage=min_chat_coverage, provenance=provenance)  # fmt: skip


def load_or_build(
    path: str | Path | None,
    model: Any = None,
    tokenizer: Any = None,
    tasks: Sequence[Any] | None = None,
    *,
    save: bool = True,
    model_name: str = "",
    **options: Any,
) -> SeedLibrary:
    """The seed library at ``path`` if that file exists; otherwise one built from ``model`` (the base) and, with
    ``save``, written to ``path``. The one place where a library is loaded or built (callback, CLI, demo,
    recipes). ``options`` go to :func:`build_seed_library` (terminators, kinds, provenance, ...)."""
    if path is not None and Path(path).is_file():
        return SeedLibrary.load(path)
    if model is None or tokenizer is None:
        raise SeedLibraryError(f"{path}: no seed library there, and no model to build one from; "
                               "build it with `crystalwatch seeds build BASE --out PATH`")  # fmt: skip
    library = build_seed_library(model, tokenizer, tasks, model_name=model_name, **options)
    if path is not None and save:
        library.save(path)
        library.provenance["path"] = str(path)
    return library
