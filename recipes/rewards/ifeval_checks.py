"""IFEval-style constraint checkers ``check_<name>(text, **params) -> bool`` and their registry :data:`CHECKERS`."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

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
