"""Synthetic measurements for the phase tests: TaskResults from hand-made distribution matrices."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from crystalwatch import metrics
from crystalwatch.measure import Measurement, TaskResult, VariantResult
from crystalwatch.tasks import load_task


def peaked(k: int, top: int, mass: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """A distribution with ``mass`` on outcome ``top`` and the rest spread (optionally jittered)."""
    rest = np.ones(k) if rng is None else rng.uniform(0.5, 1.5, k)
    rest[top] = 0
    p = rest / rest.sum() * (1 - mass)
    p[top] = mass
    return p


def task_result(
    task_id: str, matrix: np.ndarray, coverage: float | np.ndarray = 0.2, kind: str = "chat"
) -> TaskResult:
    task = load_task(task_id)
    matrix = np.asarray(matrix, dtype=float)
    cov = np.broadcast_to(np.asarray(coverage, dtype=float), (len(matrix),))
    variants = [
        VariantResult(SimpleNamespace(variant=f"v{i}"), p / p.sum(), float(c))  # type: ignore[arg-type]
        for i, (p, c) in enumerate(zip(matrix, cov))
    ]
    r = TaskResult(task, kind, variants)
    r.metrics = metrics.task_metrics(r.matrix, r.coverage)
    return r


def measurement(*results: TaskResult, model: str = "synthetic") -> Measurement:
    return Measurement("exact", "boundary", [], {r.task.id: r for r in results}, model)


def base_matrix(seed: int = 0) -> np.ndarray:
    """A liquid integer_1_10 base: three prompt families (peaked on "1", on "10", and nearly flat)."""
    rng = np.random.default_rng(seed)
    rows = [peaked(10, 0, 0.6, rng) for _ in range(4)] + [peaked(10, 9, 0.55, rng) for _ in range(4)]
    rows += [rng.dirichlet(np.full(10, 30.0)) for _ in range(3)]
    return np.array(rows)
