"""Task specs: the 15 built-in tasks, and a clear error for each kind of bad file."""

from __future__ import annotations

import pytest
import yaml

from crystalwatch.tasks import TaskSpecError, builtin_task_ids, load_task, load_tasks

BUILTIN = [
    "coin_flip", "die_d20", "die_d6", "digit_0_9", "integer_1_10", "integer_1_100", "letter", "month",
    "playing_card", "prime_below_50", "rainbow_colour", "rock_paper_scissors", "us_state", "weekday", "yes_no",
]  # fmt: skip
SIZES = {
    "integer_1_10": 10, "integer_1_100": 100, "digit_0_9": 10, "coin_flip": 2, "die_d6": 6, "die_d20": 20,
    "rock_paper_scissors": 3, "letter": 26, "rainbow_colour": 7, "weekday": 7, "month": 12, "playing_card": 52,
    "us_state": 50, "prime_below_50": 15, "yes_no": 2,
}  # fmt: skip


def test_fifteen_builtin_tasks():
    assert builtin_task_ids() == BUILTIN
    for task in load_tasks():
        assert len(task.outcomes) == SIZES[task.id], task.id
        assert len(task.completion_prompts) >= 8, task.id
        assert len(task.chat_prompts) >= 6, task.id
        assert sum(p.prefill is not None for p in task.chat_prompts) >= 3, task.id
        assert any(p.prefill is None for p in task.chat_prompts), task.id
        assert any(p.system for p in task.chat_prompts), task.id
        assert len(task.spec_hash) == 16


def test_case_variants_and_forms():
    coin = load_task("coin_flip")
    heads = coin.outcomes[0]
    assert heads.name == "heads" and {"heads", "Heads", "head", "Head"} <= set(heads.forms)
    letter = load_task("letter")
    assert letter.case_sensitive and letter.outcomes[0].forms == ("A",)
    primes = load_task("prime_below_50").outcome_names
    assert primes[:5] == ["2", "3", "5", "7", "11"] and primes[-1] == "47"


GOOD = {
    "id": "mine",
    "version": 1,
    "description": "A user task.",
    "outcomes": ["left", {"name": "right", "forms": ["R"]}],
    "completion_prompts": [{"id": "qa", "text": "Q: Left or right?\nA:"}],
    "chat_prompts": [{"id": "plain", "user": "Left or right?", "prefill": "I go"}],
}


def _write(tmp_path, data, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_user_task_from_path(tmp_path):
    task = load_task(str(_write(tmp_path, GOOD)))
    assert task.id == "mine" and task.outcome_names == ["left", "right"]
    assert task.chat_prompts[0].prefill == "I go"
    assert task.source.endswith("mine.yaml")


def _bad(**changes):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    "data, field, hint",
    [
        (_bad(outcomes=["left", "left"]), "outcomes[1].name", "duplicate outcome 'left'"),
        (_bad(outcomes=["left", {"name": "right", "forms": ["Left"]}]), "outcomes[1].forms", "belongs to both"),
        (_bad(outcomes=["up", {"name": "down", "forms": ["UP"]}]), "outcomes[1].forms", "case_sensitive"),
        (_bad(completion_prompts=[]), "completion_prompts", "at least 1"),
        (_bad(chat_prompts=[]), "chat_prompts", "at least 1"),
        (_bad(outcomes=["only"]), "outcomes", "at least 2"),
        (_bad(colour="red"), "'", "unknown key(s) ['colour']"),
        (_bad(description=None), "description", "is missing"),
        (_bad(version="one"), "version", "positive integer"),
        (_bad(id="Bad Id"), "id", "must match"),
        (_bad(chat_prompts=[{"id": "x", "user": "hi", "persona": "pirate"}]), "chat_prompts[0]", "unknown key"),
        (_bad(chat_prompts=[{"id": "x"}]), "chat_prompts[0].user", "is missing"),
        (_bad(completion_prompts=[{"id": "x", "text": "A: "}]), "completion_prompts[0].text", "ends with a space"),
        (_bad(completion_prompts=[{"id": "x", "text": "a"}, {"id": "x", "text": "b"}]), "completion_prompts[1].id",
         "duplicate prompt id"),
        (_bad(outcomes=["a", {"name": "b", "forms": "bee"}]), "outcomes[1].forms", "list of strings"),
    ],
)  # fmt: skip
def test_bad_task_files_name_file_and_field(tmp_path, data, field, hint):
    path = _write(tmp_path, data)
    with pytest.raises(TaskSpecError) as err:
        load_task(str(path))
    message = str(err.value)
    assert str(path) in message
    assert field in message
    assert hint in message


def test_not_yaml_and_unknown_task(tmp_path):
    with pytest.raises(TaskSpecError, match=r"broken\.yaml: not valid YAML"):
        load_task(str(_write(tmp_path, "id: [unclosed", "broken.yaml")))
    with pytest.raises(TaskSpecError, match=r"unknown task 'integer_1_11'.*integer_1_10"):
        load_task("integer_1_11")
    with pytest.raises(TaskSpecError, match="task file not found"):
        load_task(str(tmp_path / "missing.yaml"))
    with pytest.raises(TaskSpecError, match=r"list\.yaml: field '': expected a mapping"):
        load_task(str(_write(tmp_path, "- a\n- b\n", "list.yaml")))
