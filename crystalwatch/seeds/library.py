"""The seed library: per task, the distinct answer distributions (seeds) a base model can be prompted into.

A :class:`SeedLibrary` holds, per task, every base-model prompt variant's distribution, the seeds
(clusters of variants, see ``crystalwatch.seeds.build``) and the base's own metrics, plus provenance.
``compare`` gives a measured task's nearest seed and the seed metrics; ``check`` tells whether the
library fits the tasks and tokenizer being measured. Definitions: docs/phase-model.md; file format:
docs/seed-library.md.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crystalwatch import metrics
from crystalwatch.answers import Reference, answer_metrics
from crystalwatch.phases import PhaseConfig
from crystalwatch.seeds import codec
from crystalwatch.seeds.types import (
    CrossModelWarning,
    Seed,
    SeedLibraryError,
    SeedLibraryWarning,
    TaskSeeds,
)
from crystalwatch.tasks import Task

if TYPE_CHECKING:  # measure imports the scorer, so torch: reading a library needs neither
    from crystalwatch.measure import TaskResult


def _compare(t: TaskSeeds, consensus: np.ndarray, config: PhaseConfig, seed: int) -> dict:
    """Seed metrics of a consensus distribution against one task's seeds (see docs/phase-model.md)."""
    centroids = t.centroids
    dist = metrics.jsd_rows(consensus, centroids)
    order = np.argsort(dist, kind="stable")
    nearest = int(order[0])
    temperature, tempered = metrics.fit_temperature(consensus, centroids[nearest])
    evidence = metrics.seed_evidence(consensus, centroids)
    best = int(np.argmax(evidence))
    return {
        "seed": t.seeds[nearest].id,
        "seed_distance": float(dist[nearest]),
        "seed_margin": float(dist[order[1]] - dist[nearest]) if len(order) > 1 else None,
        "seed_support_mass": metrics.support_mass(consensus, centroids[nearest], config.support_level),
        "temperature": temperature,
        "temperature_bound": metrics.temperature_bound(temperature),
        "tempered_distance": tempered,
        "evidence_seed": t.seeds[best].id,
        "seed_evidence": float(evidence[best]),
        "seed_pvalue": seed_pvalue(consensus, centroids, config.permutations, seed),
        "seed_chance": seed_chance(centroids, config.evidence_share),
    }


def seed_chance(centroids: np.ndarray, evidence_share: float) -> float:
    """The share of outcomes on which a one-answer crystal would read as a seed: the chance that a crystal on an
    answer drawn at random reads ``nucleated`` (evidence log2(K max_s s_o) above ``evidence_share`` of log2 K,
    i.e. some seed gives the answer more than K^(evidence_share - 1))."""
    k = centroids.shape[1]
    return float((centroids.max(axis=0) > k ** (evidence_share - 1)).mean())


def seed_pvalue(consensus: np.ndarray, centroids: np.ndarray, n: int, seed: int = 0) -> float:
    """Is the consensus's mass on answers the seeds favour, more than chance? The share of label permutations
    of the consensus (its mass moved to other outcomes) whose best seed evidence is at least as large.

    Every permutation is enumerated when K! <= n (exact); otherwise ``n`` random ones (seeded) with the usual
    (1 + hits) / (1 + n). A consensus on one answer carries at most log2 K bits, so its p-value is at least the
    share of outcomes some seed favours (>= 1/K): see docs/phase-model.md.
    """
    k = centroids.shape[1]
    observed = metrics.seed_evidence(consensus, centroids).max()
    if math.factorial(k) <= n:
        perms = np.array(list(itertools.permutations(range(k))))
    else:
        rng = np.random.default_rng(seed)
        perms = np.array([rng.permutation(k) for _ in range(n)])
    c = np.asarray(consensus, dtype=float)
    best = metrics.seed_evidence(c[perms], centroids).max(axis=-1)
    hits = int((best >= observed - 1e-12).sum())
    return float(hits / len(perms)) if math.factorial(k) <= n else float((1 + hits) / (1 + n))


@dataclass
class SeedLibrary:
    """Seeds per task plus provenance; see the module docstring."""

    tasks: dict[str, TaskSeeds]
    provenance: dict[str, Any] = field(default_factory=dict)
    digest: str = ""  # short content hash of the file, set by save/load

    # --- comparing a measurement ------------------------------------------------------------------
    def compare(
        self,
        result: TaskResult,
        *,
        reference: Reference | None = None,
        config: PhaseConfig | None = None,
        seed: int = 0,
    ) -> tuple[Seed, dict[str, Any]]:
        """The nearest seed of a measured task, and its metrics plus every seed and answer metric.

        Change (``collapse``, ``base_distance``, the answers' gains and reach) is measured from ``reference``: the
        run's start when it is not the base, else (the default) the library's base on the same prompt kind. The
        phase model's settings (``config``: entropy floor, support level, permutations, evidence share) are the
        defaults' unless given."""
        config = config or PhaseConfig()
        t = self.tasks[result.task.id]
        ref = reference or t.reference(result.kind)
        out = _compare(t, result.consensus, config, seed)
        seed_id = out.pop("seed")
        nearest = self.seed(result.task.id, seed_id)
        out["base_consensus_entropy"] = ref.consensus_entropy
        now = result.metrics.get("consensus_entropy", float(metrics.normalized_entropy(result.consensus)))
        out["collapse"] = metrics.collapse(now, out["base_consensus_entropy"], config.entropy_floor)
        out["base_distance"] = metrics.jsd(result.consensus, ref.consensus)
        answers = answer_metrics(result.consensus, result.matrix, result.coverage, ref, t.centroids)
        answers["top_seed"] = t.seeds[answers["top_seed"]].id
        answers["rising"] = t.outcomes[answers["rising"]]
        return nearest, {**result.metrics, **out, **answers}

    def seed(self, task: str, seed_id: str) -> Seed:
        """One seed of a task by its id."""
        return next(s for s in self.tasks[task].seeds if s.id == seed_id)

    def check(self, tasks: Sequence[Task], tokenizer: Any = None, *, strict: bool = False) -> None:
        """Fail when the library cannot judge ``tasks``; warn when it can but something differs.

        Errors: a task missing from the library, or a different outcome set. Warnings (errors with
        ``strict``): a revised task spec (other prompts: collapse then compares different prompt sets),
        and a different tokenizer or chat template (cross-model: distributions over outcomes stay
        comparable, but the seeds come from another model).
        """
        where = self.provenance.get("path", "seed library")
        for task in tasks:
            t = self.tasks.get(task.id)
            if t is None:
                raise SeedLibraryError(
                    f"{where}: no seeds for task '{task.id}' (it has {', '.join(sorted(self.tasks))}); rebuild "
                    f"with `crystalwatch seeds build MODEL --tasks ...,{task.id}` or measure without that task"
                )
            if t.outcomes != task.outcome_names:
                added = sorted(set(task.outcome_names) - set(t.outcomes))
                removed = sorted(set(t.outcomes) - set(task.outcome_names))
                raise SeedLibraryError(
                    f"{where}: task '{task.id}' has other outcomes than when the library was built "
                    f"(added {added}, removed {removed}, or reordered); rebuild the library for this task"
                )
            if t.spec_hash != task.spec_hash:
                self._warn(
                    strict,
                    SeedLibraryWarning(
                        f"{where}: task '{task.id}' changed since the library was built (version {t.version} -> "
                        f"{task.version}, spec {t.spec_hash} -> {task.spec_hash}); outcomes match, but collapse now "
                        "compares with the base measured on other prompts. Rebuild the library to silence this."
                    ),
                )
        if tokenizer is not None and not renders_alike(tokenizer, self.provenance):
            self._warn(
                strict,
                CrossModelWarning(
                    f"{where}: built from {self.provenance.get('model', '?')} with another tokenizer or chat "
                    "template (prompts render to other tokens); seeds are distributions over outcomes, so the "
                    "comparison is cross-model"
                ),
            )

    @staticmethod
    def _warn(strict: bool, warning: SeedLibraryWarning) -> None:
        if strict:
            raise SeedLibraryError(str(warning))
        warnings.warn(warning, stacklevel=3)

    # --- the file ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return codec.to_json(self.tasks, self.provenance)

    def save(self, path: str | Path) -> Path:
        """Write the library (gzip when the name ends in ``.gz``), all or nothing; sets ``digest``."""
        self.digest = codec.save(self.tasks, self.provenance, path)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> SeedLibrary:
        """Read and validate a library file; any problem is a :class:`SeedLibraryError` naming the field."""
        tasks, provenance, digest = codec.load(path)
        return cls(tasks, {**provenance, "path": str(path)}, digest)

    @classmethod
    def from_json(cls, raw: Any, source: str = "<memory>") -> SeedLibrary:
        """Validate a library's JSON object (every field) and build the library."""
        tasks, provenance = codec.parse(raw, source)
        return cls(tasks, provenance)


# Conversations every chat template is rendered on to compare what a model sees, not how its template is written.
_PROBES = (
    [{"role": "user", "content": "Pick a number."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Pick a number."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Go"}],
)
# Templates that print today's date (Llama 3.x: ``strftime_now`` unless ``date_string`` is given) get a fixed one, so
# that what they render does not change from day to day.
_PROBE_DATE = "01 Jan 2026"
# Source hashes of the Gemma turn formats earlier crystalwatch versions rendered with: each renders every
# conversation as GEMMA_CHAT_TEMPLATE does (it only added the assistant-mask markers; tests/test_seeds.py renders
# both), so a library that recorded one of them has no render hash but was rendered as today.
_EARLIER_GEMMA_TEMPLATES = frozenset({"bb3995a84e6c068f"})


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _render_hash(tokenizer: Any, template: str | None) -> str | None:
    """The hash of what ``template`` renders on the probe conversations; None when it has no template or refuses a
    probe (a template may raise on a system turn): such templates are then compared by their source."""
    if not template:
        return None
    try:
        rendered = [tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                  add_generation_prompt=True, date_string=_PROBE_DATE)
                    for messages in _PROBES]  # fmt: skip
    except Exception:  # noqa: BLE001 - any refusal: two refusing templates must not look alike
        return None
    return _sha("\x00".join(rendered))


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, str | None]:
    """Short hashes of the tokenizer's vocabulary/merges, of the chat template's source and of what it renders
    (a few probe conversations: the part that matters when comparing two models' prompts)."""
    from crystalwatch.scoring.prompts import chat_template_for

    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    template = chat_template_for(tokenizer)
    return {
        "tokenizer_hash": _sha(text),
        "chat_template_hash": _sha(template) if template else None,
        "chat_render_hash": _render_hash(tokenizer, template),
    }


def renders_alike(tokenizer: Any, provenance: dict[str, Any]) -> bool:
    """Whether ``tokenizer`` turns prompts into the tokens the library was built from: the same vocabulary and a
    chat template that renders the same text (compared by source only for a library that recorded no render
    hash and was not rendered with one of crystalwatch's own Gemma templates)."""
    from crystalwatch.scoring.prompts import GEMMA_CHAT_TEMPLATE

    mine = tokenizer_fingerprint(tokenizer)
    if mine["tokenizer_hash"] != provenance.get("tokenizer_hash"):
        return False
    theirs = provenance.get("chat_render_hash")
    gemma = _EARLIER_GEMMA_TEMPLATES | {_sha(GEMMA_CHAT_TEMPLATE)}
    if theirs is None and provenance.get("chat_template_hash") in gemma:
        theirs = _render_hash(tokenizer, GEMMA_CHAT_TEMPLATE)
    if theirs is None:
        return mine["chat_template_hash"] == provenance.get("chat_template_hash")
    return mine["chat_render_hash"] == theirs
