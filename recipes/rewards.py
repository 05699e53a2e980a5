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

    from recipes.rewards import verifiable_reward

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

import ast
import functools
import inspect
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "CHECKERS",
    "OPEN_INSTRUCT_FUNCS",
    "REWARDS",
    "completion_text",
    "extract_gsm8k_answer",
    "gsm8k_reward",
    "ifeval_reward",
    "is_math_equiv",
    "last_boxed_only_string",
    "math_reward",
    "normalize_math_answer",
    "scaled",
    "verifiable_reward",
]


# --------------------------------------------------------------------------------------------------------------------
# Completion formats
# --------------------------------------------------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):  # multimodal parts: [{"type": "text", "text": ...}, ...]
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                parts.append(str(part.get("text", "")))
        return "".join(parts)
    return str(content)


def completion_text(completion: Any) -> str:
    """The text of one completion, standard (``str``) or conversational (list of ``{"role", "content"}`` messages).

    For a message list, the last assistant message is used (the last message if none is marked assistant).
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        if not messages:
            return "".join(str(m) for m in completion)
        assistant = [m for m in messages if m.get("role") == "assistant"]
        return _content_text((assistant or messages)[-1].get("content"))
    raise TypeError(f"Unsupported completion type {type(completion).__name__}: expected str or a list of messages")


def _column(name: str, values: Any, n: int) -> list:
    """A per-example column as a list of length ``n`` (a scalar is broadcast)."""
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Sequence):
        return [values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"Column {name!r} has {len(values)} values for {n} completions")
    return values


# --------------------------------------------------------------------------------------------------------------------
# Numbers (GSM8K)
# --------------------------------------------------------------------------------------------------------------------

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


def _numbers_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


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


# --------------------------------------------------------------------------------------------------------------------
# MATH (Hendrycks-style normalisation)
# --------------------------------------------------------------------------------------------------------------------


def last_boxed_only_string(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces handled), or ``None``."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    name_end = idx + (len("\\boxed") if text.startswith("\\boxed", idx) else len("\\fbox"))
    rest = text[name_end:]
    if rest.startswith(" ") and not rest.lstrip().startswith("{"):  # "\boxed 5" (as in the MATH reference code)
        return rest.strip().split("$")[0].strip() or None
    brace = name_end + len(rest) - len(rest.lstrip())
    if brace >= len(text) or text[brace] != "{":
        return None
    depth = 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : i]
    return None  # unbalanced


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{2}`` -> ``\\frac{1}{2}``, ``\\frac{1}2`` -> ``\\frac{1}{2}``."""
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if not part:
            continue
        if part[0] == "{":
            # numerator is a group; the denominator may still be bare
            depth, end = 0, None
            for i, ch in enumerate(part):
                depth += ch == "{"
                depth -= ch == "}"
                if depth == 0:
                    end = i
                    break
            if end is not None and end + 1 < len(part) and part[end + 1] not in "{\\":
                part = part[: end + 1] + "{" + part[end + 1] + "}" + part[end + 2 :]
            out += part
        elif len(part) >= 2 and part[1] == "{":
            out += "{" + part[0] + "}" + part[1:]
        elif len(part) >= 2:
            out += "{" + part[0] + "}{" + part[1] + "}" + part[2:]
        else:
            out += part
    return out


def _fix_sqrt(s: str) -> str:
    """``\\sqrt3`` -> ``\\sqrt{3}``."""
    return re.sub(r"\\sqrt(?![{\[a-zA-Z])(\w)", r"\\sqrt{\1}", s)


def _fix_a_slash_b(s: str) -> str:
    m = re.fullmatch(r"(-?\d+)/(\d+)", s)
    return f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}" if m else s


def _strip_trailing_zeros(s: str) -> str:
    """``3.0`` -> ``3``, ``2.50`` -> ``2.5`` (decimal numbers only)."""

    def fix(m: re.Match) -> str:
        whole, frac = m.group(1), m.group(2).rstrip("0")
        return f"{whole}.{frac}" if frac else whole

    return re.sub(r"(?<![\d.])(\d+)\.(\d+)(?![\d.])", fix, s)


_TEXT_CMD = r"\\(?:text|textbf|textrm|mbox|mathrm|operatorname)\s*"


def normalize_math_answer(answer: str) -> str:
    """A MATH answer string normalised in the spirit of Hendrycks' ``strip_string`` (lm-eval ``is_equiv``)."""
    s = str(answer).strip()
    s = s.replace("\n", "").replace("\\!", "")
    s = s.replace("\\\\", "\\")
    s = s.replace("\\displaystyle", "")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°", "", s)
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "").replace("%", "")
    s = re.sub(r"\\[,;:> ]", " ", s)  # LaTeX spacing
    s = s.strip()
    # \text{...}: the whole answer -> its contents; a trailing one (optionally squared) is a unit -> dropped
    whole = re.fullmatch(_TEXT_CMD + r"\{([^{}]*)\}", s)
    if whole:
        s = whole.group(1).strip()
    else:
        while True:
            stripped = re.sub(_TEXT_CMD + r"\{[^{}]*\}(?:\^\{?\d\}?)?\s*$", "", s).strip()
            if stripped == s or not stripped:
                break
            s = stripped
        s = re.sub(_TEXT_CMD + r"\{([^{}]*)\}", r"\1", s)
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    # "x = 5", "k=3": keep the right-hand side (as the MATH code does for a short left-hand side)
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0].strip()) <= 2:
        s = sides[1]
    s = _fix_sqrt(s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    s = _fix_a_slash_b(s)
    s = _strip_trailing_zeros(s)
    if s.endswith(".") and len(s) > 1:
        s = s[:-1]
    return s


_FRAC_RE = re.compile(r"(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}")
_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")


def _math_number(s: str) -> float | None:
    if _PLAIN_NUMBER_RE.fullmatch(s):
        return float(s.replace(",", ""))
    m = _FRAC_RE.fullmatch(s)
    if m:
        den = float(m.group(3))
        if den == 0:
            return None
        value = float(m.group(2)) / den
        return -value if m.group(1) else value
    return None


def _split_top_level(s: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


def _normalized_equiv(a: str, b: str) -> bool:
    if a == b:
        return True
    na, nb = _math_number(a), _math_number(b)
    if na is not None and nb is not None:
        return _numbers_equal(na, nb)
    # tuples / intervals: same brackets, element-wise
    if len(a) >= 2 and len(b) >= 2 and a[0] == b[0] and a[-1] == b[-1] and a[0] in "([" and a[-1] in ")]":
        ea, eb = _split_top_level(a[1:-1]), _split_top_level(b[1:-1])
        if len(ea) == len(eb) > 1:
            return all(_normalized_equiv(x, y) for x, y in zip(ea, eb))
    return False


def is_math_equiv(answer: str | None, reference: str | None) -> bool:
    """Whether two MATH answers are equivalent after normalisation (string or numerical equality)."""
    if answer is None or reference is None:
        return False
    return _normalized_equiv(normalize_math_answer(answer), normalize_math_answer(reference))


def _math_answer(text: str) -> str | None:
    boxed = last_boxed_only_string(text)
    if boxed is not None:
        return boxed
    # Minerva format: "Final Answer: The final answer is $X$. I hope it is correct."
    idx = text.lower().rfind("final answer is")
    if idx < 0:
        return None
    tail = text[idx + len("final answer is") :]
    tail = re.split(r"I hope it is correct", tail, maxsplit=1)[0].strip()
    return tail.rstrip(".").strip() or None


def math_score(completion: Any, ground_truth: Any) -> float:
    """1.0 when the completion's last ``\\boxed{}`` (or Minerva "final answer is X") matches the reference."""
    reference = str(ground_truth)
    boxed_ref = last_boxed_only_string(reference)  # a full MATH solution as the reference
    if boxed_ref is not None:
        reference = boxed_ref
    return 1.0 if is_math_equiv(_math_answer(completion_text(completion)), reference) else 0.0


def math_reward(completions: list, ground_truth: list, scale: float = 1.0, **kwargs: Any) -> list[float]:
    """TRL reward: ``scale`` when the last ``\\boxed{}`` answer is equivalent to the MATH reference, else 0.0."""
    truths = _column("ground_truth", ground_truth, len(completions))
    return [scale * math_score(c, gt) for c, gt in zip(completions, truths)]


# --------------------------------------------------------------------------------------------------------------------
# IFEval-style constraint checkers
# --------------------------------------------------------------------------------------------------------------------

_QUANTIFIERS: dict[str, Callable[[int, int], bool]] = {
    "at least": lambda actual, n: actual >= n,
    "at most": lambda actual, n: actual <= n,
    "exactly": lambda actual, n: actual == n,
    "less than": lambda actual, n: actual < n,
    "more than": lambda actual, n: actual > n,
    "around": lambda actual, n: abs(actual - n) <= max(round(n * 0.1), 1),
}
_QUANTIFIER_ALIASES = {
    "==": "exactly",
    "equal to": "exactly",
    ">=": "at least",
    "<=": "at most",
    "<": "less than",
    ">": "more than",
    "about": "around",
}


def _compare(actual: int, n: Any, quantifier: str) -> bool:
    q = str(quantifier).strip().lower()
    q = _QUANTIFIER_ALIASES.get(q, q)
    if q not in _QUANTIFIERS:
        raise ValueError(f"Unknown quantifier {quantifier!r}; expected one of {sorted(_QUANTIFIERS)}")
    return _QUANTIFIERS[q](actual, int(n))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _contains_word(text: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(word.strip()) + r"(?!\w)", text, re.IGNORECASE) is not None


def check_word_count(text: str, N: int, quantifier: str = "at least") -> bool:
    """Whitespace-separated word count ``quantifier`` N ("at least", "at most", "exactly", "around", ...)."""
    return _compare(len(text.split()), N, quantifier)


def check_sentence_count(text: str, N: int, quantifier: str = "at least") -> bool:
    """Sentence count (split after ``.``, ``?``, ``!``) ``quantifier`` N."""
    sentences = [s for s in re.split(r"(?<!\w\.\w.)(?<![A-Z][a-z]\.)(?<=[.?!])\s+", text.strip()) if s.strip()]
    return _compare(len(sentences), N, quantifier)


def check_no_commas(text: str) -> bool:
    """No ``,`` anywhere."""
    return "," not in text


def check_lowercase(text: str) -> bool:
    """No capital letters."""
    return text == text.lower()


def check_uppercase(text: str) -> bool:
    """No lower-case letters."""
    return text == text.upper()


def check_capital_word_frequency(text: str, N: int, quantifier: str = "at least") -> bool:
    """Number of all-capital words ``quantifier`` N."""
    return _compare(len(re.findall(r"\b[A-Z]+\b", text)), N, quantifier)


def check_json_format(text: str) -> bool:
    """The whole response parses as JSON (optionally inside a ```` ```json ```` fence)."""
    s = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*\n?(.*?)\n?\s*```", s, re.DOTALL | re.IGNORECASE)
    if fenced:
        s = fenced.group(1).strip()
    try:
        json.loads(s)
    except ValueError:
        return False
    return True


def check_keywords(text: str, keyword_list: Sequence[str]) -> bool:
    """Every keyword appears as a whole word (case-insensitive)."""
    return all(_contains_word(text, kw) for kw in _as_list(keyword_list))


def check_forbidden_words(text: str, forbidden_words: Sequence[str]) -> bool:
    """No forbidden word appears as a whole word (case-insensitive)."""
    return not any(_contains_word(text, w) for w in _as_list(forbidden_words))


def check_keyword_frequency(text: str, word: str, N: int, quantifier: str = "exactly") -> bool:
    """The whole word ``word`` appears ``quantifier`` N times (case-insensitive)."""
    count = len(re.findall(r"(?<!\w)" + re.escape(word.strip()) + r"(?!\w)", text, re.IGNORECASE))
    return _compare(count, N, quantifier)


def check_letter_frequency(text: str, letter: str, N: int, quantifier: str = "exactly") -> bool:
    """The letter appears ``quantifier`` N times (case-sensitive, as in open-instruct)."""
    if len(letter) != 1:
        raise ValueError(f"letter must be a single character, got {letter!r}")
    return _compare(text.count(letter), N, quantifier)


_DIVIDER_RE = re.compile(r"^[ \t]*(?:\*[ \t]*){3,}$|^[ \t]*(?:-[ \t]*){3,}$", re.MULTILINE)


def _paragraphs(text: str) -> list[str]:
    """Paragraphs split by markdown dividers (``***``, ``* * *``, ``---``) if any, else by blank lines."""
    parts = _DIVIDER_RE.split(text) if _DIVIDER_RE.search(text) else re.split(r"\n\s*\n", text)
    return [p.strip() for p in parts if p.strip()]


def check_paragraph_count(text: str, N: int) -> bool:
    """Exactly N non-empty paragraphs (separated by ``***`` dividers, else blank lines)."""
    return len(_paragraphs(text)) == int(N)


def check_paragraphs_first_word(text: str, N: int, i: int, first_word: str) -> bool:
    """Exactly N blank-line separated paragraphs and the i-th (1-based) starts with ``first_word``."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(paragraphs) != int(N) or not 1 <= int(i) <= len(paragraphs):
        return False
    words = re.findall(r"\w+", paragraphs[int(i) - 1])
    return bool(words) and words[0].lower() == first_word.strip().lower()


def check_end(text: str, end_phrase: str) -> bool:
    """The response ends with ``end_phrase`` (whitespace-stripped, case-insensitive); nothing may follow."""
    return text.strip().lower().endswith(end_phrase.strip().lower())


def check_quotation(text: str) -> bool:
    """The whole response is wrapped in double quotes: it starts and ends with ``"``."""
    s = text.strip()
    return len(s) >= 2 and s[0] == '"' and s[-1] == '"'


def check_bullet_points(text: str, N: int) -> bool:
    """Exactly N markdown bullet lines (``* item`` or ``- item``; dividers such as ``* * *`` do not count)."""
    bullets = [ln for ln in text.splitlines() if re.match(r"^\s*[*-]\s+\S", ln) and not _DIVIDER_RE.fullmatch(ln)]
    return len(bullets) == int(N)


def check_highlighted_sections(text: str, N: int) -> bool:
    """At least N non-empty ``*highlighted*`` (or ``**bold**``) sections, each within one line."""
    single = [h for h in re.findall(r"\*[^\n*]*\*", text) if h.strip("* ")]
    double = [h for h in re.findall(r"\*\*[^\n*]*\*\*", text) if h.strip("* ")]
    return len(single) + len(double) >= int(N)


def check_placeholders(text: str, N: int) -> bool:
    """At least N ``[placeholder]`` s in square brackets."""
    return len(re.findall(r"\[[^\[\]\n]+\]", text)) >= int(N)


def check_postscript(text: str, postscript_marker: str) -> bool:
    """A postscript starting with ``postscript_marker`` (e.g. ``P.S.``) with some text after the marker."""
    idx = text.rfind(postscript_marker)
    return idx >= 0 and bool(text[idx + len(postscript_marker) :].strip())


def check_title(text: str) -> bool:
    """A title in double angular brackets, e.g. ``<<poem of joy>>``."""
    return any(t.strip() for t in re.findall(r"<<([^\n]*?)>>", text))


def check_choice(text: str, options: Sequence[str]) -> bool:
    """One of ``options`` appears as a whole token."""
    if isinstance(options, str):
        # IFEval-style "('My answer is yes.', 'My answer is no.')" or a plain string option
        try:
            parsed = ast.literal_eval(options)
            options = list(parsed) if isinstance(parsed, (list, tuple)) else [options]
        except (ValueError, SyntaxError):
            options = [options]
    return any(re.search(r"(?<!\w)" + re.escape(str(o).strip()) + r"(?!\w)", text) for o in options)


def check_sections(text: str, N: int, section_splitter: str = "Section") -> bool:
    """At least N sections headed ``<section_splitter> <number>`` (e.g. ``SECTION 1``), case-insensitive."""
    headers = re.findall(r"(?<!\w)" + re.escape(section_splitter.strip()) + r"\s*\d+", text, re.IGNORECASE)
    return len(headers) >= int(N)


def check_repeat_prompt(text: str, original_prompt: str) -> bool:
    """The response starts by repeating ``original_prompt`` (whitespace-stripped, case-insensitive)."""
    return text.strip().lower().startswith(original_prompt.strip().lower())


def check_two_responses(text: str) -> bool:
    """Exactly two different, non-empty responses separated by ``******``."""
    parts = text.split("******")
    if len(parts) != 2:
        return False
    first, second = parts[0].strip(), parts[1].strip()
    return bool(first) and bool(second) and first != second


CHECKERS: dict[str, Callable[..., bool]] = {
    "word_count": check_word_count,
    "sentence_count": check_sentence_count,
    "no_commas": check_no_commas,
    "lowercase": check_lowercase,
    "uppercase": check_uppercase,
    "capital_word_frequency": check_capital_word_frequency,
    "json_format": check_json_format,
    "keywords": check_keywords,
    "forbidden_words": check_forbidden_words,
    "keyword_frequency": check_keyword_frequency,
    "letter_frequency": check_letter_frequency,
    "paragraph_count": check_paragraph_count,
    "paragraphs_first_word": check_paragraphs_first_word,
    "end": check_end,
    "quotation": check_quotation,
    "bullet_points": check_bullet_points,
    "highlighted_sections": check_highlighted_sections,
    "placeholders": check_placeholders,
    "postscript": check_postscript,
    "title": check_title,
    "choice": check_choice,
    "sections": check_sections,
    "repeat_prompt": check_repeat_prompt,
    "two_responses": check_two_responses,
}
"""Constraint name -> checker ``check_<name>(text, **params) -> bool``."""

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
