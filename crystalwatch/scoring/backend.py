"""Scorer backends: how a distribution over a task's outcomes is estimated for each prompt.

A backend turns requests (a tokenised prompt with its candidate answers, ``prompts.Request``) into one
:class:`Scored` per request. Two ship: ``exact`` (the trie scorer; sharded over ranks in a process group)
and ``sampled`` (seeded generations parsed to outcomes). A new backend (vLLM, say) is one module that
defines a class with this protocol and registers it with :func:`register`, or one line in
:data:`BUILTIN` to load it lazily. ``estimator=`` everywhere is a backend name, checked here.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from crystalwatch.errors import check_choice, check_int
from crystalwatch.scoring.prompts import DEFAULT_TERMINATORS, TERMINATOR_SETS, Request

KINDS = ("chat", "completion")  # prompt kinds


@dataclass
class Scored:
    """One prompt's estimate: renormalised probabilities over the task's outcomes and the coverage."""

    probs: np.ndarray  # sums to 1 over the task's outcomes
    coverage: float  # mass on valid outcomes before renormalising (sampled: share of valid answers)
    counts: np.ndarray | None = None  # sampled only
    invalid: int = 0  # sampled only


@dataclass
class Options:
    """Settings every backend may read."""

    samples: int = 2000  # generations per prompt (sampled)
    seed: int = 0  # sampling seed (sampled)
    batch_tokens: int = 4096  # tokens per forward (exact)


class Backend(Protocol):
    """Estimates answer distributions; it is the only code that calls the model."""

    name: str
    extra_tokens: int  # positions a request needs beyond prompt + longest answer (the context check)

    def score(self, model: Any, tokenizer: Any, requests: Sequence[Request], n_outcomes: Sequence[int], *,
              terminators: str, terminator_ids: np.ndarray, options: Options) -> list[Scored]: ...  # fmt: skip


# name -> "module:attribute" of a backend object, imported on first use.
BUILTIN = {"exact": "crystalwatch.scoring.exact:BACKEND", "sampled": "crystalwatch.scoring.sampled:BACKEND"}
_registered: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Make ``backend`` available as ``estimator=backend.name``."""
    _registered[backend.name] = backend
    return backend


def backend_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*BUILTIN, *_registered]))


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (unknown names: a clear error with a suggestion)."""
    check_choice("estimator", name, backend_names())
    if name not in _registered:
        module, attribute = BUILTIN[name].split(":")
        register(getattr(importlib.import_module(module), attribute))
    return _registered[name]


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
    check_choice(name("estimator"), estimator, backend_names())
    check_choice(name("terminators"), terminators, TERMINATOR_SETS)
    check_int(name("samples"), samples, 1)
    check_int(name("batch_tokens"), batch_tokens, 1)
