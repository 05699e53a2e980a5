"""Verifiable RLVR rewards (recipes/rewards/): GSM8K, MATH, IFEval checkers and the per-row dispatcher."""

from __future__ import annotations

import json

import pytest

from crystalwatch.recipes.rewards import (
    CHECKERS,
    OPEN_INSTRUCT_FUNCS,
    REWARDS,
    check_bullet_points,
    check_end,
    check_forbidden_words,
    check_highlighted_sections,
    check_json_format,
    check_keywords,
    check_lowercase,
    check_no_commas,
    check_paragraph_count,
    check_quotation,
    check_uppercase,
    check_word_count,
    completion_text,
    extract_gsm8k_answer,
    gsm8k_reward,
    ifeval_reward,
    is_math_equiv,
    last_boxed_only_string,
    math_reward,
    normalize_math_answer,
    scaled,
    verifiable_reward,
)


def conv(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


# GSM8K -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("The answer is 1,234.", "1234", 1.0),
        ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72", 1.0),
        ("She sold 72 clips in total.", "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", 1.0),
        ("It costs $18.00 in total.", "18", 1.0),
        ("The answer is: $18.00", "$18", 1.0),
        ("The temperature fell to -5 degrees.", "-5", 1.0),
        ("Result: 10 - 15 = -5", "-5", 1.0),
        ("The balance is $-3.50.", "-3.5", 1.0),
        ("First 3 apples, then 4 more, so 7 in all.", "7", 1.0),  # last-number fallback
        ("So the answer is 12, not 13.", "12", 1.0),  # "answer is" beats the last number
        ("The answer is 10 - 4 = 6 apples.", "6", 1.0),
        ("The answer is 12. Check: 12 = 12, and 3 more makes 15", "12", 1.0),
        ("#### 40\nI double-checked: 5 boxes.", "40", 1.0),  # "####" beats everything
        ("Thus \\boxed{25} apples (from 5 baskets).", "25", 1.0),  # boxed beats the last number
        ("It grew by 25%.", "25", 1.0),
        ("The answer is 1234.5", "1234.5", 1.0),
        ("I cannot tell.", "5", 0.0),  # no number
        ("The answer is 71.", "72", 0.0),
        ("Pages 3-5 were read.", "-5", 0.0),  # a hyphen, not a minus
    ],
)
def test_gsm8k_reward(completion, reference, expected):
    assert gsm8k_reward([completion], ground_truth=[reference]) == [expected]


def test_gsm8k_conversational_and_scale():
    rewards = gsm8k_reward([conv("#### 72"), conv("#### 7")], ground_truth=["72", "72"], scale=10.0)
    assert rewards == [10.0, 0.0]


def test_extract_gsm8k_answer_none():
    assert extract_gsm8k_answer("no digits here") is None


# MATH --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("So $x = \\boxed{\\frac{1}{2}}$.", "\\frac12", 1.0),
        ("\\boxed{\\frac{1}{2}}", "0.5", 1.0),
        ("\\boxed{\\dfrac{1}{2}}", "\\tfrac{1}{2}", 1.0),
        ("\\boxed{1/2}", "\\frac{1}{2}", 1.0),
        ("\\boxed{\\sqrt{2}}", "\\sqrt2", 1.0),
        ("The angle is \\boxed{10^\\circ}.", "10", 1.0),
        ("\\boxed{10^{\\circ}}", "10", 1.0),
        ("\\boxed{\\left( 3, 4 \\right)}", "(3,4)", 1.0),
        ("\\boxed{(0.5, 4.0)}", "\\left(\\frac{1}{2},4\\right)", 1.0),
        ("\\boxed{x = 5}", "5", 1.0),
        ("\\boxed{5.0}", "5", 1.0),
        ("\\boxed{12 \\text{ cm}}", "12", 1.0),
        ("\\boxed{\\text{Monday}}", "\\text{Monday}", 1.0),
        ("\\boxed{\\$42}", "42", 1.0),
        ("\\boxed{3\\!\\cdot\\!4}", "3\\cdot4", 1.0),
        ("\\fbox{7}", "7", 1.0),
        ("First \\boxed{3}, wait, actually \\boxed{4}.", "4", 1.0),  # the last box counts
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", 1.0),
        ("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "\\frac12", 1.0),
        ("Solution ... $\\boxed{6}$", "We get $2\\cdot 3=\\boxed{6}$.", 1.0),  # full-solution reference
        ("\\boxed{\\frac{1}{3}}", "\\frac12", 0.0),
        ("\\boxed{\\sqrt{3}}", "\\sqrt{2}", 0.0),
        ("\\boxed{(4,3)}", "(3,4)", 0.0),
        ("The answer is 5.", "5", 0.0),  # no box, no Minerva line
    ],
)
def test_math_reward(completion, reference, expected):
    assert math_reward([completion], ground_truth=[reference]) == [expected]


def test_last_boxed_nested_and_unbalanced():
    assert last_boxed_only_string("a \\boxed{\\frac{1}{\\sqrt{2}}} b") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed_only_string("\\boxed 5$") == "5"
    assert last_boxed_only_string("\\boxed{1") is None
    assert last_boxed_only_string("nothing") is None


def test_normalize_math_answer():
    assert normalize_math_answer("\\left( 3, 4 \\right)") == "(3,4)"
    assert normalize_math_answer("\\dfrac12") == "\\frac{1}{2}"
    assert is_math_equiv("0.50", "\\frac{1}{2}")
    assert not is_math_equiv(None, "1")


# IFEval ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "text", "params", "expected"),
    [
        (check_word_count, "one two three four", {"N": 3, "quantifier": "at least"}, True),
        (check_word_count, "one two", {"N": 3, "quantifier": "at least"}, False),
        (check_word_count, "one two three", {"N": 3, "quantifier": "at most"}, True),
        (check_word_count, "one two three four", {"N": 3, "quantifier": "at most"}, False),
        (check_word_count, "one two three", {"N": 3, "quantifier": "exactly"}, True),
        (check_word_count, "one two", {"N": 3, "quantifier": "exactly"}, False),
        (check_no_commas, "no commas here.", {}, True),
        (check_no_commas, "one, two", {}, False),
        (check_lowercase, "all lower case, 123!", {}, True),
        (check_lowercase, "Not lower", {}, False),
        (check_uppercase, "ALL CAPS 42!", {}, True),
        (check_uppercase, "ALMOST ALL CAPs", {}, False),
        (check_json_format, '{"a": [1, 2]}', {}, True),
        (check_json_format, '```json\n{"a": 1}\n```', {}, True),
        (check_json_format, 'Here it is: {"a": 1}', {}, False),
        (check_keywords, "The Cat sat on the mat.", {"keyword_list": ["cat", "mat"]}, True),
        (check_keywords, "The category sat on the mat.", {"keyword_list": ["cat", "mat"]}, False),  # whole words
        (check_forbidden_words, "A category of things.", {"forbidden_words": ["cat", "dog"]}, True),
        (check_forbidden_words, "My Dog barked.", {"forbidden_words": ["cat", "dog"]}, False),
        (check_paragraph_count, "First.\n\nSecond.\n\n\nThird.", {"N": 3}, True),
        (check_paragraph_count, "First.\n***\nSecond.", {"N": 2}, True),
        (check_paragraph_count, "First.\n\n* * *\n\nSecond.\nstill second.", {"N": 2}, True),
        (check_paragraph_count, "Only one paragraph.\nTwo lines.", {"N": 2}, False),
        (check_end, "Thanks for reading. Any other questions?  ", {"end_phrase": "Any other questions?"}, True),
        (check_end, "Any other questions? Bye.", {"end_phrase": "Any other questions?"}, False),
        (check_quotation, ' "Wrapped in quotes." ', {}, True),
        (check_quotation, '"Only starts with one.', {}, False),
        (check_bullet_points, "Intro\n* one\n* two\n- three", {"N": 3}, True),
        (check_bullet_points, "* one\n* * *\n**bold** line\n* two", {"N": 2}, True),  # no divider/bold
        (check_bullet_points, "* one\n* two", {"N": 3}, False),
        (check_highlighted_sections, "This is *important* and *also this* and **bold**.", {"N": 3}, True),
        (check_highlighted_sections, "Only *one* here, ** is empty.", {"N": 2}, False),
    ],
)
def test_ifeval_checkers(check, text, params, expected):
    assert check(text, **params) is expected


@pytest.mark.parametrize(
    ("name", "text", "params", "expected"),
    [
        ("sentence_count", "One. Two! Three?", {"N": 3, "quantifier": "exactly"}, True),
        ("capital_word_frequency", "USE CAPS twice", {"N": 2, "quantifier": "at least"}, True),
        ("keyword_frequency", "Apple, apple, pineapple.", {"word": "apple", "N": 2}, True),
        ("letter_frequency", "banana", {"letter": "a", "N": 3}, True),
        ("paragraphs_first_word", "Hello there.\n\nWorld here.", {"N": 2, "i": 2, "first_word": "world"}, True),
        ("placeholders", "Dear [name], at [address].", {"N": 2}, True),
        ("postscript", "Body.\nP.S. See you.", {"postscript_marker": "P.S."}, True),
        ("postscript", "Body. P.S.", {"postscript_marker": "P.S."}, False),
        ("title", "<<My Poem>>\nroses are red", {}, True),
        ("choice", "My answer is yes.", {"options": "('My answer is yes.', 'My answer is no.')"}, True),
        ("sections", "SECTION 1\nfoo\nSECTION 2\nbar", {"N": 2, "section_splitter": "Section"}, True),
        ("repeat_prompt", "Write a poem. Roses...", {"original_prompt": "write a poem."}, True),
        ("two_responses", "First answer.\n******\nSecond answer.", {}, True),
        ("two_responses", "Same.\n******\nSame.", {}, False),
    ],
)
def test_more_checkers_by_name(name, text, params, expected):
    assert CHECKERS[name](text, **params) is expected


def test_every_open_instruct_name_maps_to_a_checker():
    assert set(OPEN_INSTRUCT_FUNCS.values()) <= set(CHECKERS)


@pytest.mark.parametrize(
    ("constraint_type", "constraint", "expected"),
    [
        (["no_commas", "lowercase"], None, 1.0),
        (["no_commas", "word_count"], [{}, {"N": 5, "quantifier": "at most"}], 1.0),
        (["no_commas", "word_count"], [{}, {"N": 2, "quantifier": "at most"}], 0.0),
        (["check_lowercase", "keywords"], {"keyword_list": ["poem"]}, 1.0),  # one dict shared by both names
        ("end", '{"end_phrase": "the end."}', 1.0),  # JSON string params
        (["lowercase", "uppercase"], None, 0.0),
    ],
)
def test_ifeval_reward_several_constraints(constraint_type, constraint, expected):
    text = "a short poem, the end."
    if "no_commas" in constraint_type:
        text = "a short poem the end."
    assert ifeval_reward([conv(text)], constraint_type=[constraint_type], constraint=[constraint]) == [expected]


def test_ifeval_reward_open_instruct_ground_truth_wins_over_descriptive_columns():
    truth = json.dumps({"func_name": "validate_lowercase", "N": None, "keyword_list": None, "end_phrase": None})
    rewards = ifeval_reward(
        ["all lower", "Not Lower"],
        constraint_type=["All Lowercase", "All Lowercase"],  # as in allenai/RLVR-IFeval: descriptions, not names
        constraint=["Your entire response should be in lowercase.", "..."],
        ground_truth=[truth, truth],
    )
    assert rewards == [1.0, 0.0]


def test_ifeval_unknown_constraint_raises():
    with pytest.raises(ValueError, match=r"Unknown IFEval constraint 'rhymes'.*Known constraints:.*word_count"):
        ifeval_reward(["text"], constraint_type=["rhymes"], constraint=[None])


def test_ifeval_missing_parameter_raises():
    with pytest.raises(ValueError, match="word_count"):
        ifeval_reward(["text"], constraint_type=["word_count"], constraint=[{}])


# formats/routing ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("plain", "plain"),
        (conv("hello"), "hello"),
        ([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "ab"),
        ([{"role": "assistant", "content": "x"}, {"role": "tool", "content": "y"}], "x"),
        (None, ""),
    ],
)
def test_completion_text(completion, text):
    assert completion_text(completion) == text


def test_dispatcher_routes_a_mixed_batch():
    lower = json.dumps({"func_name": "validate_lowercase", "N": None, "quantifier": None})
    words3 = json.dumps({"func_name": "validate_word_constraint", "N": 3, "quantifier": "at most"})
    multi = json.dumps([{"func_name": "validate_no_commas"}, {"func_name": "validate_end", "end_phrase": "bye"}])
    completions = [
        conv("48 + 24 = 72\n#### 72"),
        conv("so 71"),
        conv("Thus $\\boxed{\\frac12}$."),
        conv("\\boxed{3}"),
        conv("all lowercase here"),
        conv("Way too many words in this one"),
        conv("no commas then bye"),
        conv("commas, then bye"),
    ]
    dataset = ["gsm8k", "GSM8K", "MATH", "math", "ifeval", "ifeval", "IFEval", "ifeval"]
    truth = ["72", "72", "0.5", "4", lower, words3, multi, multi]
    assert verifiable_reward(completions, dataset=dataset, ground_truth=truth) == [1, 0, 1, 0, 1, 0, 1, 0]
    assert verifiable_reward(completions, dataset=dataset, ground_truth=truth, scale=10.0)[:2] == [10.0, 0.0]


def test_dispatcher_ignores_trl_extras_and_unknown_dataset_raises():
    extras = {"prompts": ["q"], "completion_ids": [[1]], "trainer_state": None, "log_extra": print}
    assert verifiable_reward(["#### 1"], dataset=["gsm8k"], ground_truth=["1"], **extras) == [1.0]
    with pytest.raises(ValueError, match="Unknown dataset 'code'"):
        verifiable_reward(["x"], dataset=["code"], ground_truth=["1"])


def test_registry_and_scaled_partial():
    assert REWARDS == {"gsm8k": gsm8k_reward, "math": math_reward, "ifeval": ifeval_reward}
    tulu = scaled(verifiable_reward, 10.0)
    assert tulu.__name__ == "verifiable_reward_x10"
    assert tulu(["#### 3"], dataset=["gsm8k"], ground_truth=["3"]) == [10.0]


def test_column_length_mismatch_raises():
    with pytest.raises(ValueError, match="ground_truth"):
        gsm8k_reward(["1", "2"], ground_truth=["1"])
