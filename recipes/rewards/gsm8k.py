"""GSM8K: the completion's final number against the reference number."""

from __future__ import annotations

import re
from typing import Any

from crystalwatch.recipes.rewards.math_answer import last_boxed_only_string
from crystalwatch.recipes.rewards.text import _column, _numbers_equal, completion_text

# A number, optionally signed and with a currency sign either side of the minus ("-$5", "$-5"); thousands separators
# only in groups of three, so "1,2,3" is three numbers. A minus right after a word character ("3-5") is a hyphen and
# one followed by a space ("10 - 4") an operator: neither makes the next number negative.
_NUMBER_RE = re.compile(r"(?<![\w.])(-)?(?:\$\s?)?(-)?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
_MINUS_CHARS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-"})


def _numbers(text: str) -> list[float]:
    out = []
    for m in _NUMBER_RE.finditer(text.translate(_MINUS_CHARS)):
        value = float(m.group(3).replace(",", ""))
        out.append(-value if (m.group(1) or m.group(2)) else value)
    return out


def _first_number(text: str) -> float | None:
    nums = _numbers(text)
    return nums[0] if nums else None


def _last_number(text: str) -> float | None:
    nums = _numbers(text)
    return nums[-1] if nums else None


_ANSWER_IS_RE = re.compile(r"answer\s*(?:is|:)\s*:?", re.IGNORECASE)


def extract_gsm8k_answer(text: str) -> float | None:
    """The answer number in a GSM8K-style completion, or ``None``.

    Preference: the number after the last ``####``; after the last "answer is" (after the last ``=`` if that sentence
    has one); inside the last ``\\boxed{}``; else the last number in the text.
    """
    text = completion_text(text)
    if "####" in text:
        value = _first_number(text.rsplit("####", 1)[1])
        if value is not None:
            return value
    matches = list(_ANSWER_IS_RE.finditer(text))
    if matches:
        rest = text[matches[-1].end() :]
        sentence = re.split(r"\.(?:\s|$)|\n", rest, maxsplit=1)[0]
        if "=" in sentence:  # "the answer is 10 - 4 = 6"
            rest = sentence.rsplit("=", 1)[1]
        value = _first_number(rest)
        if value is not None:
            return value
    boxed = last_boxed_only_string(text)
    if boxed is not None:
        value = _last_number(boxed)
        if value is not None:
            return value
    return _last_number(text)


def _gsm8k_reference(ground_truth: Any) -> float | None:
    if isinstance(ground_truth, (int, float)) and not isinstance(ground_truth, bool):
        return float(ground_truth)
    ref = str(ground_truth)
    if "####" in ref:
        ref = ref.rsplit("####", 1)[1]
    return _first_number(ref)


def gsm8k_score(completion: Any, ground_truth: Any) -> float:
    """1.0 when the completion's answer number equals the reference (``"72"`` or ``"... #### 72"``), else 0.0."""
    reference = _gsm8k_reference(ground_truth)
    answer = extract_gsm8k_answer(completion_text(completion))
    if reference is None or answer is None:
        return 0.0
    return 1.0 if _numbers_equal(answer, reference) else 0.0


def gsm8k_reward(completions: list, ground_truth: list, scale: float = 1.0, **kwargs: Any) -> list[float]:
    """TRL reward: ``scale`` when the final number matches the GSM8K reference, else 0.0."""
    truths = _column("ground_truth", ground_truth, len(completions))
    return [scale * gsm8k_score(c, gt) for c, gt in zip(completions, truths)]
