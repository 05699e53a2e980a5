"""IFEval rewards: constraint parsing (including open-instruct ``func_name`` ground truths), checker lookup, scores."""

from __future__ import annotations

import ast
import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

from crystalwatch.recipes.rewards.ifeval_checks import CHECKERS
from crystalwatch.recipes.rewards.text import _column, completion_text

OPEN_INSTRUCT_FUNCS: dict[str, str] = {
    "validate_word_constraint": "word_count",
    "verify_sentence_constraint": "sentence_count",
    "validate_no_commas": "no_commas",
    "validate_lowercase": "lowercase",
    "validate_uppercase": "uppercase",
    "validate_frequency_capital_words": "capital_word_frequency",
    "validate_json_format": "json_format",
    "verify_keywords": "keywords",
    "validate_forbidden_words": "forbidden_words",
    "verify_keyword_frequency": "keyword_frequency",
    "verify_letter_frequency": "letter_frequency",
    "verify_paragraph_count": "paragraph_count",
    "validate_paragraphs": "paragraphs_first_word",
    "validate_end": "end",
    "validate_quotation": "quotation",
    "verify_bullet_points": "bullet_points",
    "validate_highlighted_sections": "highlighted_sections",
    "validate_placeholders": "placeholders",
    "verify_postscript": "postscript",
    "validate_title": "title",
    "validate_choice": "choice",
    "validate_sections": "sections",
    "validate_repeat_prompt": "repeat_prompt",
    "validate_two_responses": "two_responses",
}
"""open-instruct ``if_functions.IF_FUNCTIONS_MAP`` name -> checker name here (``validate_response_language``: none)."""


def _resolve_checker(name: str) -> Callable[..., bool]:
    key = str(name).strip()
    key = OPEN_INSTRUCT_FUNCS.get(key, key)
    key = key[len("check_") :] if key.startswith("check_") else key
    if key not in CHECKERS:
        known = ", ".join(sorted(CHECKERS))
        aliases = ", ".join(sorted(OPEN_INSTRUCT_FUNCS))
        raise ValueError(
            f"Unknown IFEval constraint {name!r}. Known constraints: {known} "
            f"(also accepted with a 'check_' prefix, or as open-instruct names: {aliases})."
        )
    return CHECKERS[key]


@functools.cache
def _signature(func: Callable[..., bool]) -> inspect.Signature:
    return inspect.signature(func)


def run_checker(name: str, text: str, params: dict | None = None) -> bool:
    """Run one named checker; ``None`` values and parameters the checker does not take are dropped."""
    func = _resolve_checker(name)
    sig = _signature(func)
    accepted = set(list(sig.parameters)[1:])
    kwargs = {k: v for k, v in (params or {}).items() if k in accepted and v is not None}
    try:
        sig.bind(text, **kwargs)
    except TypeError as exc:
        raise ValueError(f"IFEval constraint {name!r} got parameters {sorted(kwargs)}: {exc}") from None
    return bool(func(text, **kwargs))


def _parse_params(value: Any) -> Any:
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return None
        try:
            return json.loads(s)
        except ValueError:
            try:
                return ast.literal_eval(s)
            except (ValueError, SyntaxError):
                raise ValueError(f"Cannot parse IFEval constraint parameters {value!r} as JSON") from None
    return value


def _func_name_constraints(ground_truth: Any) -> list[tuple[str, dict]] | None:
    """Constraints from an open-instruct ground truth (``{"func_name": ..., **params}`` or a list of them)."""
    try:
        parsed = _parse_params(ground_truth)
    except ValueError:
        return None
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items or not all(isinstance(it, dict) and it.get("func_name") for it in items):
        return None
    return [(it["func_name"], {k: v for k, v in it.items() if k != "func_name"}) for it in items]


def _constraints(constraint_type: Any, constraint: Any) -> list[tuple[str, dict]]:
    """Normalise one row's ``(constraint_type, constraint)`` into ``[(name, params), ...]``."""
    params = _parse_params(constraint)
    if constraint_type is None:
        found = _func_name_constraints(params)
        if found is None:
            raise ValueError("IFEval row has no constraint_type and no open-instruct 'func_name' constraint")
        return found
    names = [constraint_type] if isinstance(constraint_type, str) else list(constraint_type)
    if params is None or isinstance(params, dict):
        per_name = [params or {}] * len(names)
    else:
        per_name = [_parse_params(p) or {} for p in params]
        if len(per_name) != len(names):
            raise ValueError(f"{len(names)} constraint names but {len(per_name)} parameter sets")
    return list(zip(names, per_name))


def ifeval_score(completion: Any, constraints: list[tuple[str, dict]]) -> float:
    """1.0 when every ``(name, params)`` constraint holds for the completion, else 0.0."""
    text = completion_text(completion)
    return 1.0 if all(run_checker(name, text, params) for name, params in constraints) else 0.0


def ifeval_reward(
    completions: list,
    constraint_type: list | None = None,
    constraint: list | None = None,
    scale: float = 1.0,
    **kwargs: Any,
) -> list[float]:
    """TRL reward: ``scale`` when all of a row's IFEval constraints pass, else 0.0.

    Per row, ``constraint_type`` is a checker name (see :data:`CHECKERS`, ``check_<name>`` or an open-instruct
    ``func_name``) or a list of names, and ``constraint`` a dict (or JSON string) of parameters, or a list of them
    aligned with the names. A row whose ``ground_truth`` holds an open-instruct constraint
    (``'{"func_name": ...}'``) uses that instead: in the RLVR-IFeval data sets the ``constraint_type`` /
    ``constraint`` columns are human-readable descriptions, not checker parameters.
    """
    n = len(completions)
    types = _column("constraint_type", constraint_type, n)
    params = _column("constraint", constraint, n)
    truths = _column("ground_truth", kwargs.get("ground_truth"), n)
    rewards = []
    for completion, ctype, cparams, truth in zip(completions, types, params, truths):
        found = _func_name_constraints(truth) if truth is not None else None
        rows = found if found is not None else _constraints(ctype, cparams)
        rewards.append(scale * ifeval_score(completion, rows))
    return rewards
