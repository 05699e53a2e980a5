"""Verifiable rewards for RLVR with TRL's ``GRPOTrainer``, in the style of Tulu 3 / open-instruct.

Three verifiers, as in ``allenai/RLVR-GSM-MATH-IF-Mixed-Constraints``:

* :func:`gsm8k_reward`: the completion's final number equals the reference number.
* :func:`math_reward`: the completion's last ``\\boxed{...}`` equals the reference after a Hendrycks-MATH style
  normalisation (``is_equiv`` from the MATH / lm-eval harness code, plus numerical equality).
* :func:`ifeval_reward`: every IFEval-style constraint (``check_<name>`` functions, see :data:`CHECKERS`) holds.

Each follows TRL's reward-function protocol: ``reward(completions, **kwargs) -> list[float]``, where ``completions``
holds strings (standard format) or message lists ``[{"role": "assistant", "content": ...}]`` (conversational format)
and every other dataset column arrives as a keyword list aligned with ``completions``. TRL also passes ``prompts``,
``completion_ids``, ``trainer_state``, ``log_extra`` and ``log_metric``; they are accepted and ignored.

:func:`verifiable_reward` routes each row by the data set's ``dataset`` column (``"gsm8k"``, ``"MATH"``,
``"ifeval"``, case-insensitive) and scores it against its ``ground_truth`` column::

    from datasets import load_dataset
    from trl import GRPOConfig, GRPOTrainer

    from crystalwatch.recipes.rewards import verifiable_reward

    train = load_dataset("allenai/RLVR-GSM-MATH-IF-Mixed-Constraints", split="train")
    train = train.rename_column("messages", "prompt")  # a conversational prompt
    trainer = GRPOTrainer(
        model="allenai/Llama-3.1-Tulu-3-8B-DPO",
        reward_funcs=[verifiable_reward],
        args=GRPOConfig(output_dir="rlvr"),
        train_dataset=train,
    )

Tulu 3 pays 10 for a passing verifier and 0 otherwise. Every reward here takes ``scale`` (default 1.0); use
``reward_weights=[10.0]`` in ``GRPOConfig``, or :func:`scaled` (a ``functools.partial`` with a ``__name__``).
Note that TRL 1.16 logs a partial under the *wrapped* function's name (``get_callable_name`` unwraps partials), so
``rewards/verifiable_reward/mean`` is what appears in the logs either way.

IFEval ground truths in the open-instruct shape (a JSON string such as ``'{"func_name": "validate_lowercase",
"N": null, ...}'``, or a list of such objects) are mapped to the checkers here by :data:`OPEN_INSTRUCT_FUNCS`:

==================================  ==========================  =========================================
open-instruct ``func_name``         checker here                difference from open-instruct
==================================  ==========================  =========================================
validate_word_constraint            word_count                  also accepts ``quantifier="exactly"``
verify_sentence_constraint          sentence_count
validate_no_commas                  no_commas
validate_lowercase                  lowercase
validate_uppercase                  uppercase
validate_frequency_capital_words    capital_word_frequency
validate_json_format                json_format                 a ```` ```json ```` fence is allowed
verify_keywords                     keywords                    whole words, not substrings
validate_forbidden_words            forbidden_words             whole words, not substrings
verify_keyword_frequency            keyword_frequency
verify_letter_frequency             letter_frequency
verify_paragraph_count              paragraph_count             ``***`` / ``* * *`` dividers, else blank lines
validate_paragraphs                 paragraphs_first_word       first word compared case-insensitively
validate_end                        end                         whitespace-stripped, case-insensitive
validate_quotation                  quotation                   whitespace-stripped
verify_bullet_points                bullet_points               only ``* `` / ``- `` lines; ``* * *`` is no bullet
validate_highlighted_sections       highlighted_sections        ``*x*`` or ``**x**``, non-empty, one line
validate_placeholders               placeholders
verify_postscript                   postscript
validate_title                      title
validate_choice                     choice                      whole-token match
validate_sections                   sections
validate_repeat_prompt              repeat_prompt               case-insensitive
validate_two_responses              two_responses
validate_response_language          (not supported)             needs ``langdetect``; raises ``ValueError``
==================================  ==========================  =========================================
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from crystalwatch.recipes.rewards.gsm8k import extract_gsm8k_answer, gsm8k_reward, gsm8k_score
from crystalwatch.recipes.rewards.ifeval import (
    OPEN_INSTRUCT_FUNCS,
    _constraints,
    _func_name_constraints,
    ifeval_reward,
    ifeval_score,
    run_checker,
)
from crystalwatch.recipes.rewards.ifeval_checks import (
    CHECKERS,
    check_bullet_points,
    check_capital_word_frequency,
    check_choice,
    check_end,
    check_forbidden_words,
    check_highlighted_sections,
    check_json_format,
    check_keyword_frequency,
    check_keywords,
    check_letter_frequency,
    check_lowercase,
    check_no_commas,
    check_paragraph_count,
    check_paragraphs_first_word,
    check_placeholders,
    check_postscript,
    check_quotation,
    check_repeat_prompt,
    check_sections,
    check_sentence_count,
    check_title,
    check_two_responses,
    check_uppercase,
    check_word_count,
)
from crystalwatch.recipes.rewards.math_answer import (
    is_math_equiv,
    last_boxed_only_string,
    math_reward,
    math_score,
    normalize_math_answer,
)
from crystalwatch.recipes.rewards.text import _column, completion_text

__all__ = [
    "CHECKERS",
    "OPEN_INSTRUCT_FUNCS",
    "REWARDS",
    "check_bullet_points",
    "check_capital_word_frequency",
    "check_choice",
    "check_end",
    "check_forbidden_words",
    "check_highlighted_sections",
    "check_json_format",
    "check_keyword_frequency",
    "check_keywords",
    "check_letter_frequency",
    "check_lowercase",
    "check_no_commas",
    "check_paragraph_count",
    "check_paragraphs_first_word",
    "check_placeholders",
    "check_postscript",
    "check_quotation",
    "check_repeat_prompt",
    "check_sections",
    "check_sentence_count",
    "check_title",
    "check_two_responses",
    "check_uppercase",
    "check_word_count",
    "completion_text",
    "extract_gsm8k_answer",
    "gsm8k_reward",
    "gsm8k_score",
    "ifeval_reward",
    "ifeval_score",
    "is_math_equiv",
    "last_boxed_only_string",
    "math_reward",
    "math_score",
    "normalize_math_answer",
    "run_checker",
    "scaled",
    "verifiable_reward",
]


# --------------------------------------------------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------------------------------------------------

REWARDS: dict[str, Callable[..., list[float]]] = {
    "gsm8k": gsm8k_reward,
    "math": math_reward,
    "ifeval": ifeval_reward,
}


def _route(dataset: Any) -> str:
    key = str(dataset).strip().lower()
    if key in REWARDS:
        return key
    if key.startswith("gsm"):
        return "gsm8k"
    if key.startswith("math"):
        return "math"
    if key.startswith("ifeval") or key.startswith("if_"):
        return "ifeval"
    raise ValueError(f"Unknown dataset {dataset!r} for verifiable_reward; expected one of {sorted(REWARDS)}")


def verifiable_reward(
    completions: list, dataset: list, ground_truth: list, scale: float = 1.0, **kwargs: Any
) -> list[float]:
    """TRL reward for mixed RLVR data: route each row by its ``dataset`` value and verify against ``ground_truth``.

    ``"gsm8k"`` -> :func:`gsm8k_score`, ``"MATH"`` -> :func:`math_score`, ``"ifeval"`` -> the open-instruct
    constraint JSON in ``ground_truth`` (falling back to ``constraint_type`` / ``constraint`` columns when the ground
    truth is not in that shape). Returns ``scale`` per verified row and 0.0 otherwise (Tulu 3 uses ``scale=10``).
    """
    n = len(completions)
    datasets = _column("dataset", dataset, n)
    truths = _column("ground_truth", ground_truth, n)
    ctypes = _column("constraint_type", kwargs.get("constraint_type"), n)
    cparams = _column("constraint", kwargs.get("constraint"), n)
    rewards = []
    for completion, ds, truth, ctype, cparam in zip(completions, datasets, truths, ctypes, cparams):
        route = _route(ds)
        if route == "gsm8k":
            score = gsm8k_score(completion, truth)
        elif route == "math":
            score = math_score(completion, truth)
        else:
            found = _func_name_constraints(truth) if truth is not None else None
            score = ifeval_score(completion, found if found is not None else _constraints(ctype, cparam))
        rewards.append(scale * score)
    return rewards


def scaled(func: Callable[..., list[float]], scale: float, name: str | None = None) -> functools.partial:
    """``functools.partial(func, scale=scale)`` with a ``__name__`` (default ``"<func>_x<scale>"``).

    TRL 1.16 names a partial after the function it wraps, so the ``__name__`` matters only to other callers.
    """
    partial = functools.partial(func, scale=scale)
    partial.__name__ = name or f"{func.__name__}_x{scale:g}"
    return partial
