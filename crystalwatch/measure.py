"""Measure a model on tasks: per-variant answer distributions, coverage and metrics.

``measure(model, tokenizer, tasks)`` is the one entry point: it renders the prompts, scores them
(exact trie scoring by default, or sampling), and returns a :class:`Measurement` of plain data that
serialises to the audit JSON documented in docs/measure-json.md.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crystalwatch import metrics
from crystalwatch.scoring import (
    DEFAULT_TERMINATORS,
    Request,
    build_requests,
    check_context,
    prompt_kind_for,
    terminator_ids,
)
from crystalwatch.scoring.backend import Options, Scored, check_settings, get_backend
from crystalwatch.tasks import Task, load_task, load_tasks

Estimator = str  # a backend name: "exact", "sampled", or one registered with scoring.backend.register
SCHEMA = "crystalwatch.measurement/1"


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
    estimator: str = "exact",
    samples: int = 2000,
    seed: int = 0,
    batch_tokens: int = 4096,
    model_name: str = "",
) -> Measurement:
    """Measure ``model`` on a prepared :class:`Plan` with the ``estimator`` backend (``scoring.backend``)."""
    check_settings(estimator=estimator, samples=samples, batch_tokens=batch_tokens)
    backend = get_backend(estimator)
    flat = [r for reqs in prepared.requests.values() for r in reqs]
    check_context(model, flat, extra=backend.extra_tokens)
    sizes = {task.id: len(task.outcomes) for task in prepared.tasks}
    with eval_mode(model):
        scored = iter(backend.score(model, tokenizer, flat, [sizes[r.task_id] for r in flat],
                                    terminators=prepared.terminators, terminator_ids=prepared.terminator_ids,
                                    options=Options(samples, seed, batch_tokens)))  # fmt: skip
        results = {}
        for task in prepared.tasks:
            variants = [VariantResult(r, *_fields(next(scored))) for r in prepared.requests[task.id]]
            results[task.id] = TaskResult(task, prepared.kind, variants)
    for r in results.values():
        r.metrics = metrics.task_metrics(r.matrix, r.coverage)
    return Measurement(estimator, prepared.terminators, [int(t) for t in prepared.terminator_ids], results, model_name)


_TOKENIZER_ATTRS = ("padding_side", "truncation_side", "chat_template", "pad_token", "model_max_length")


@contextlib.contextmanager
def restored(model: Any, tokenizer: Any) -> Iterator[None]:
    """Whatever happens inside, give back the model's train mode (``eval_mode``) and the tokenizer's settings."""
    saved = {a: getattr(tokenizer, a) for a in _TOKENIZER_ATTRS if hasattr(tokenizer, a)}
    try:
        with eval_mode(model):
            yield
    finally:
        for attr, value in saved.items():
            if getattr(tokenizer, attr, None) != value:
                setattr(tokenizer, attr, value)


def _fields(s: Scored) -> tuple:
    return s.probs, s.coverage, s.counts, s.invalid


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


class _CallableModule(types.ModuleType):
    """``crystalwatch.measure`` is both this module and the function: ``from crystalwatch import measure`` gives
    the module once it is imported (Python binds submodules onto the package), so calling it measures."""

    def __call__(self, *args: Any, **kwargs: Any) -> Measurement:
        return measure(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
