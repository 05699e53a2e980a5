"""Measure a model on tasks: per-variant answer distributions, coverage and metrics.

``measure(model, tokenizer, tasks)`` is the one entry point: it renders the prompts, scores them
(exact trie scoring by default, or sampling), and returns a :class:`Measurement` of plain data that
serialises to the audit JSON documented in docs/measure-json.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.special import logsumexp

from crystalwatch import metrics
from crystalwatch.errors import check_choice, check_int
from crystalwatch.scoring import (
    DEFAULT_TERMINATORS,
    TERMINATOR_SETS,
    Request,
    build_requests,
    check_context,
    prompt_kind_for,
    sample_requests,
    score_requests,
    terminator_ids,
)
from crystalwatch.scoring.sampling import EXTRA_TOKENS as SAMPLED_EXTRA
from crystalwatch.tasks import Task, load_task, load_tasks

Estimator = Literal["exact", "sampled"]
ESTIMATORS = ("exact", "sampled")
KINDS = ("chat", "completion")
SCHEMA = "crystalwatch.measurement/1"


def check_settings(
    *, kind: str | None = None, estimator: str = "exact", terminators: str = DEFAULT_TERMINATORS, samples: int = 1,
    batch_tokens: int = 1, option: str = "",
) -> None:  # fmt: skip
    """Check measuring settings before any model is loaded; errors name the setting (``option="--"``: as a
    command-line option) and suggest the close value."""

    def name(field: str) -> str:
        return option + (field.replace("_", "-") if option else field)

    if kind is not None:
        check_choice(name("kind"), kind, KINDS)
    check_choice(name("estimator"), estimator, ESTIMATORS)
    check_choice(name("terminators"), terminators, TERMINATOR_SETS)
    check_int(name("samples"), samples, 1)
    check_int(name("batch_tokens"), batch_tokens, 1)


@dataclass
class VariantResult:
    """One prompt variant's answer distribution, with everything needed to re-check it."""

    request: Request
    probs: np.ndarray  # renormalised over the task's outcomes
    coverage: float  # mass on valid outcomes before renormalising (sampled: share of valid answers)
    counts: np.ndarray | None = None  # sampled only
    invalid: int = 0  # sampled only

    def audit(self, outcomes: list[str], terminators: str) -> dict[str, Any]:
        conts: dict[str, list[dict[str, Any]]] = {name: [] for name in outcomes}
        for c in self.request.candidates:
            entry: dict[str, Any] = {"text": c.text, "ids": list(c.ids), "terminator": terminators}
            if not c.canonical:
                entry["canonical"] = False
            conts[outcomes[c.outcome]].append(entry)
        record: dict[str, Any] = {
            "variant": self.request.variant,
            "kind": self.request.kind,
            "prompt": self.request.prompt,
            "prompt_ids": list(self.request.prompt_ids),
            "continuations": conts,
            "probs": {name: float(p) for name, p in zip(outcomes, self.probs)},
            "coverage": float(self.coverage),
        }
        if self.counts is not None:
            record["counts"] = {name: int(n) for name, n in zip(outcomes, self.counts)}
            record["invalid"] = int(self.invalid)
        return record


@dataclass
class TaskResult:
    """All variants of one task, and the task-level metrics."""

    task: Task
    kind: str
    variants: list[VariantResult]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def matrix(self) -> np.ndarray:
        """[variants, outcomes] matrix of renormalised distributions."""
        return np.stack([v.probs for v in self.variants])

    @property
    def coverage(self) -> np.ndarray:
        return np.array([v.coverage for v in self.variants])

    @property
    def consensus(self) -> np.ndarray:
        return metrics.consensus(self.matrix, self.coverage)

    def top(self, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` most likely outcomes of the consensus distribution."""
        c = self.consensus
        return [(self.task.outcomes[i].name, float(c[i])) for i in np.argsort(-c, kind="stable")[:n]]


@dataclass
class Measurement:
    """A model measured on several tasks with one estimator and one terminator set."""

    estimator: str
    terminators: str
    terminator_ids: list[int]
    tasks: dict[str, TaskResult]
    model: str = ""

    def to_json(self) -> dict[str, Any]:
        """The audit record (docs/measure-json.md): every number can be re-checked from it."""
        return {
            "schema": SCHEMA,
            "model": self.model,
            "estimator": self.estimator,
            "terminators": {"name": self.terminators, "ids": self.terminator_ids},
            "tasks": {
                tid: {
                    "task": tid,
                    "version": r.task.version,
                    "spec_hash": r.task.spec_hash,
                    "kind": r.kind,
                    "outcomes": r.task.outcome_names,
                    "metrics": r.metrics,
                    "consensus": dict(zip(r.task.outcome_names, map(float, r.consensus))),
                    "variants": [v.audit(r.task.outcome_names, self.terminators) for v in r.variants],
                }
                for tid, r in self.tasks.items()
            },
        }


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Put the model in eval mode (no dropout) and restore its train/eval mode afterwards, always."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _to_variant(request: Request, logp: np.ndarray, n_outcomes: int) -> VariantResult:
    """Sum candidate probabilities per outcome (in log space), renormalise, keep the coverage."""
    per_outcome = np.full(n_outcomes, -np.inf)
    for cand, lp in zip(request.candidates, logp):
        per_outcome[cand.outcome] = np.logaddexp(per_outcome[cand.outcome], lp)
    total = logsumexp(per_outcome)
    return VariantResult(request, np.exp(per_outcome - total), float(np.exp(total)))


def _sampled(
    model: Any, tokenizer: Any, requests: list[Request], n_outcomes: int, terminators: str, samples: int, seed: int
) -> list[VariantResult]:
    results = []
    for request, (counts, invalid) in zip(
        requests, sample_requests(model, tokenizer, requests, terminators, samples=samples, seed=seed)
    ):
        counts = np.pad(counts, (0, n_outcomes - len(counts)))
        valid = counts.sum()
        probs = counts / valid if valid else np.full(n_outcomes, 1.0 / n_outcomes)
        results.append(VariantResult(request, probs, float(valid / samples), counts, invalid))
    return results


@dataclass
class Plan:
    """What to measure, prepared once: tasks, prompt kind, terminator ids and tokenised requests.

    Building requests tokenises every prompt and candidate and decodes the vocabulary for the
    terminator set; a training callback builds its plan once and reuses it at every measurement.
    """

    tasks: list[Task]
    kind: str
    terminators: str
    terminator_ids: np.ndarray
    requests: dict[str, list[Request]]


def plan(
    tokenizer: Any, tasks: Sequence[Task | str] | None = None, *, kind: str | None = None,
    terminators: str = DEFAULT_TERMINATORS,
) -> Plan:  # fmt: skip
    """Tokenise every prompt and candidate of ``tasks`` (ids, YAML paths or :class:`Task`; ``None`` = all)."""
    check_settings(kind=kind, terminators=terminators)
    loaded = load_tasks(None) if tasks is None else [t if isinstance(t, Task) else load_task(t) for t in tasks]
    kind = kind or prompt_kind_for(tokenizer)
    term = terminator_ids(tokenizer, terminators)
    requests = {task.id: build_requests(task, tokenizer, kind, term) for task in loaded}  # type: ignore[arg-type]
    return Plan(loaded, kind, terminators, term, requests)


def run(
    model: Any,
    tokenizer: Any,
    prepared: Plan,
    *,
    estimator: Estimator = "exact",
    samples: int = 2000,
    seed: int = 0,
    batch_tokens: int = 4096,
    model_name: str = "",
    scorer: Callable[..., list[np.ndarray]] = score_requests,
) -> Measurement:
    """Measure ``model`` on a prepared :class:`Plan`; ``scorer`` replaces the exact scorer (e.g. sharded)."""
    check_settings(estimator=estimator, samples=samples, batch_tokens=batch_tokens)
    flat = [r for reqs in prepared.requests.values() for r in reqs]
    check_context(model, flat, extra=0 if estimator == "exact" else SAMPLED_EXTRA)
    results: dict[str, TaskResult] = {}
    with eval_mode(model):
        if estimator == "exact":
            scored = iter(scorer(model, flat, prepared.terminator_ids, batch_tokens=batch_tokens))
            for task in prepared.tasks:
                variants = [_to_variant(r, next(scored), len(task.outcomes)) for r in prepared.requests[task.id]]
                results[task.id] = TaskResult(task, prepared.kind, variants)
        else:
            for task in prepared.tasks:
                variants = _sampled(model, tokenizer, prepared.requests[task.id], len(task.outcomes),
                                    prepared.terminators, samples, seed)  # fmt: skip
                results[task.id] = TaskResult(task, prepared.kind, variants)
    for r in results.values():
        r.metrics = metrics.task_metrics(r.matrix, r.coverage)
    return Measurement(estimator, prepared.terminators, [int(t) for t in prepared.terminator_ids], results, model_name)


def measure(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[Task | str] | None = None,
    *,
    kind: str | None = None,
    estimator: Estimator = "exact",
    terminators: str = DEFAULT_TERMINATORS,
    samples: int = 2000,
    seed: int = 0,
    batch_tokens: int = 4096,
    model_name: str = "",
) -> Measurement:
    """Measure ``model`` on ``tasks`` (ids, YAML paths or :class:`Task`; ``None`` = all built-in).

    ``kind`` picks chat or completion prompts (default: chat when the tokenizer has a chat template).
    The model's train/eval mode is restored afterwards, also when an error passes through.
    """
    check_settings(kind=kind, estimator=estimator, terminators=terminators, samples=samples, batch_tokens=batch_tokens)
    prepared = plan(tokenizer, tasks, kind=kind, terminators=terminators)
    return run(model, tokenizer, prepared, estimator=estimator, samples=samples, seed=seed,
               batch_tokens=batch_tokens, model_name=model_name)  # fmt: skip
