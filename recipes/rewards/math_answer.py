"""MATH: the last ``\\boxed{...}`` answer against the reference after a Hendrycks-MATH style normalisation."""

from __future__ import annotations

import re
from typing import Any

from crystalwatch.recipes.rewards.text import _column, _numbers_equal, completion_text


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
