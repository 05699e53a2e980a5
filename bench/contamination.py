"""Which conversations ask for something random: the very answers the tasks measure.

SFT data that asks "pick a number between 1 and 10" and answers "7" teaches the answer directly; a
nucleation seen after training on it would be taught, not crystallised. :func:`flags` looks at the user turns
for the built-in tasks' own prompt wording and for a few patterns per kind of random request (numbers,
coins, dice, cards, colours, letters, days and months, US states, primes, rock-paper-scissors, yes/no);
:func:`decontaminate` drops every conversation with a flag, and :func:`report` counts them with examples.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from crystalwatch.tasks import load_tasks

_NEAR = r"[^.?!\n]{0,40}"
PATTERNS = {
    "number": rf"\b(random|randomly|pick|choose|think of|guess|generate){_NEAR}\b(number|integer|digit)s?\b",
    "range": r"\b(between|from) (0|1) (and|to) (6|9|10|20|50|100)\b",
    "coin": r"\b(flip|flipping|toss|tossing) (a |the )?coin\b|\bheads or tails\b",
    "die": r"\broll(ing)? (a |the |two |some )?(die|dice|d6|d20)\b",
    "card": rf"\b(draw|pick|choose){_NEAR}\b(playing )?card\b",
    "colour": rf"\b(random|randomly|pick|choose){_NEAR}\bcolou?r\b",
    "letter": rf"\b(random|randomly|pick|choose){_NEAR}\bletter\b",
    "day": rf"\b(random|randomly|pick|choose){_NEAR}\b(day of the week|weekday|month)\b",
    "state": rf"\b(random|randomly|pick|choose){_NEAR}\b(u\.?s\.?|american) state\b",
    "prime": rf"\b(random|randomly|pick|choose){_NEAR}\bprime\b",
    "rock_paper_scissors": r"\brock,? paper,? (or |and )?scissors\b",
    "yes_no": rf"\b(random|randomly|coin){_NEAR}\byes or no\b",
}
_COMPILED = {name: re.compile(p, re.IGNORECASE) for name, p in PATTERNS.items()}


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _task_prompts() -> list[str]:
    """The built-in chat prompts' user texts, as word sequences (a conversation quoting one is flagged)."""
    return sorted({_words(p.user) for task in load_tasks() for p in task.chat_prompts if len(_words(p.user)) > 12})


_PROMPTS: list[str] | None = None


def matches(messages: list[dict[str, str]]) -> dict[str, str]:
    """The kinds of random request the conversation's user turns make, each with the text around its first
    match (empty: none)."""
    global _PROMPTS
    if _PROMPTS is None:
        _PROMPTS = _task_prompts()
    found: dict[str, str] = {}
    for m in messages:
        if m.get("role") != "user":
            continue
        text = " ".join(m.get("content", "").split())
        for name, pattern in _COMPILED.items():
            hit = pattern.search(text)
            if hit and name not in found:
                found[name] = text[max(0, hit.start() - 60) : hit.end() + 60]
        words = _words(text)
        if "task_prompt" not in found and any(p in words for p in _PROMPTS):
            found["task_prompt"] = text[:160]
    return found


def flags(messages: list[dict[str, str]]) -> list[str]:
    """The kinds of random request the conversation's user turns make (empty: none)."""
    return sorted(matches(messages))


def decontaminate(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, removed): conversations without and with a flag."""
    kept, removed = [], []
    for row in rows:
        (removed if flags(row["messages"]) else kept).append(row)
    return kept, removed


def report(rows: Iterable[dict[str, Any]], examples: int = 3) -> dict[str, Any]:
    """How many conversations ask for something random, by kind, with a few examples of each: the matched text
    (``examples``) and the conversations' ids (``example_ids``; what to publish when the data's terms are unknown)."""
    checked, counts, shown, ids = 0, Counter(), {}, {}
    for row in rows:
        checked += 1
        found = matches(row["messages"])
        counts.update(list(found))
        counts["any"] += bool(found)
        for kind, text in found.items():
            if len(shown.setdefault(kind, [])) < examples:
                shown[kind].append(text)
                ids.setdefault(kind, []).append(row.get("id"))
    return {"checked": checked, "flagged": counts.pop("any", 0), "by_kind": dict(counts.most_common()),
            "examples": shown, "example_ids": ids}  # fmt: skip
