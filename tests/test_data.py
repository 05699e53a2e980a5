"""The shipped chat SFT and preference data: schema, size, no duplicates, no requests for randomness or choices."""

from __future__ import annotations

import json
import re

import pytest

from crystalwatch.data import chat_sft_path, preferences_path

RANDOM_REQUEST = re.compile(
    r"\b(random\w*|pick\w*|choos\w*|chose|choice\w*|flip\w*|roll\w*|guess\w*|coins?|dice|die|toss\w*|"
    r"heads or tails|any (number|letter|colou?r|day)|a number (between|from)|which one|yes or no)\b",
    re.IGNORECASE,
)


def user_texts(rows, field):
    """Every user message's text in ``rows[i][field]`` (a list of messages)."""
    return [m["content"] for row in rows for m in row[field] if m["role"] == "user"]


@pytest.fixture(scope="module")
def conversations():
    lines = chat_sft_path().read_text(encoding="utf-8").splitlines()
    assert all(line.strip() for line in lines), "blank line in the data file"
    return [json.loads(line) for line in lines]


def test_schema(conversations):
    for row in conversations:
        assert set(row) == {"messages"}
        messages = row["messages"]
        for message in messages:
            assert set(message) == {"role", "content"}
            assert isinstance(message["content"], str) and message["content"].strip()
        turns = messages[1:] if messages[0]["role"] == "system" else messages
        assert len(turns) >= 2 and len(turns) % 2 == 0
        assert [m["role"] for m in turns] == ["user", "assistant"] * (len(turns) // 2)


def test_size_and_no_duplicate_prompts(conversations):
    assert len(conversations) >= 300
    prompts = [text.strip().lower() for text in user_texts(conversations, "messages")]
    assert len(set(prompts)) == len(prompts), "duplicate user prompts"
    assert len(prompts) > len(conversations)  # some conversations have two turns


def test_no_random_or_choice_requests(conversations):
    hits = [text for text in user_texts(conversations, "messages") if RANDOM_REQUEST.search(text)]
    assert not hits, hits


def test_pattern_catches_random_requests():
    for text in (
        "Pick a number from 1 to 10",
        "Flip a coin for me",
        "Roll a die",
        "Give me any letter",
        "Name a random colour",
        "Guess my age",
        "Choose a weekday",
        "Think of a number between 1 and 5",
    ):
        assert RANDOM_REQUEST.search(text), text


def test_answer_formats_vary(conversations):
    answers = [row["messages"][-1]["content"] for row in conversations]
    lengths = sorted(len(a.split()) for a in answers)
    assert lengths[0] <= 3 and lengths[-1] >= 50  # from one word to a paragraph
    assert sum(a.strip().rstrip(".").replace(",", "").isdigit() for a in answers) < 0.05 * len(answers)
    assert sum("\n- " in a or a.startswith("- ") for a in answers) >= 10  # bullet lists
    assert sum("```" in a for a in answers) >= 20  # code


@pytest.fixture(scope="module")
def preference_pairs():
    lines = preferences_path().read_text(encoding="utf-8").splitlines()
    assert all(line.strip() for line in lines), "blank line in the preference file"
    return [json.loads(line) for line in lines]


def _is_message(message):
    return (
        set(message) == {"role", "content"}
        and isinstance(message["content"], str)
        and bool(message["content"].strip())
    )


def test_preferences_schema(preference_pairs):
    for row in preference_pairs:
        assert set(row) == {"prompt", "chosen", "rejected"}
        prompt = row["prompt"]
        assert isinstance(prompt, list) and prompt
        assert all(_is_message(m) for m in prompt)
        roles = [m["role"] for m in prompt]
        turns = roles[1:] if roles[0] == "system" else roles
        assert turns and turns[-1] == "user" and "system" not in turns
        assert turns == ["user", "assistant"] * (len(turns) // 2) + ["user"]
        for key in ("chosen", "rejected"):
            assert len(row[key]) == 1 and row[key][0]["role"] == "assistant" and _is_message(row[key][0])
        assert row["chosen"][0]["content"].strip() != row["rejected"][0]["content"].strip()


def test_preferences_size_and_no_duplicate_prompts(preference_pairs, conversations):
    assert len(preference_pairs) >= 160
    prompts = [row["prompt"][-1]["content"].strip().lower() for row in preference_pairs]
    assert len(set(prompts)) == len(prompts), "duplicate preference prompts"
    sft_prompts = {text.strip().lower() for text in user_texts(conversations, "messages")}
    overlap = [p for p in prompts if p in sft_prompts]
    assert not overlap, overlap


def test_preferences_no_random_or_choice_requests(preference_pairs):
    hits = [text for text in user_texts(preference_pairs, "prompt") if RANDOM_REQUEST.search(text)]
    assert not hits, hits
