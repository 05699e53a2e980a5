"""Seed libraries: clustering, building from a model, the file round trip, validation and mismatch errors."""

from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import base_matrix, task_result

from crystalwatch import load_task, metrics
from crystalwatch.seeds import (
    CrossModelWarning,
    SeedLibrary,
    SeedLibraryError,
    SeedLibraryWarning,
    build_seed_library,
    cluster,
    seed_pvalue,
    task_seeds,
)
from crystalwatch.tasks import parse_task

TASKS = ["integer_1_10", "coin_flip"]


@pytest.fixture(scope="module")
def built(llama, tokenizer):
    return build_seed_library(llama, tokenizer, TASKS, model_name="tiny-llama")


@pytest.fixture
def saved(built, tmp_path):
    return built.save(tmp_path / "lib.json")


def test_cluster_is_deterministic_and_separates_families():
    p = base_matrix()
    labels = cluster(p)
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert cluster(p[::-1]).tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert cluster(p, threshold=1.0).tolist() == [0] * 11  # one seed when everything is "close"
    assert cluster(p[:1]).tolist() == [0]


def test_seeds_are_weighted_centroids_of_their_members():
    r = task_result("integer_1_10", base_matrix(), coverage=np.linspace(0.01, 0.3, 11), kind="completion")
    ts = task_seeds([r])
    assert [s.id for s in ts.seeds] == ["s0", "s1", "s2"]
    assert sum(s.weight for s in ts.seeds) == pytest.approx(1.0)
    s1 = ts.seeds[1]
    idx = [int(m.split("/v")[1]) for m in s1.members]
    assert np.allclose(s1.centroid, metrics.consensus(r.matrix[idx], r.coverage[idx]))
    assert ts.base["all"]["diversity"] == pytest.approx(metrics.diversity(r.matrix))


def test_low_coverage_chat_variants_are_stored_but_not_clustered():
    chat = task_result("integer_1_10", base_matrix()[:6], coverage=[0.2, 0.2, 1e-5, 1e-5, 0.2, 0.2], kind="chat")
    done = task_result("integer_1_10", base_matrix()[6:], coverage=1e-6, kind="completion")
    ts = task_seeds([done, chat])
    assert len(ts.variants) == 11
    assert [v.clustered for v in ts.variants if v.kind == "chat"] == [True, True, False, False, True, True]
    members = {m for s in ts.seeds for m in s.members}
    assert "chat/v2" not in members and "completion/v0" in members  # completion prompts always count


def test_build_seed_library_measures_both_prompt_kinds(built, tokenizer):
    assert set(built.tasks) == set(TASKS)
    ts = built.tasks["integer_1_10"]
    task = load_task("integer_1_10")
    assert len(ts.variants) == len(task.completion_prompts) + len(task.chat_prompts)
    assert {"all", "completion", "chat"} <= set(ts.base)
    p = built.provenance
    assert p["model"] == "tiny-llama" and p["estimator"] == "exact" and p["kinds"] == ["chat", "completion"]
    assert p["tokenizer_hash"] and p["chat_template_hash"] and p["package_version"] and p["created"].endswith("Z")


@pytest.mark.parametrize("name", ["lib.json", "lib.json.gz"])
def test_round_trip(built, tmp_path, name):
    path = built.save(tmp_path / name)
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    loaded = SeedLibrary.load(path)
    assert loaded.digest == built.digest and len(loaded.digest) == 16
    assert loaded.to_json() == built.to_json()
    for tid in TASKS:
        a, b = built.tasks[tid], loaded.tasks[tid]
        assert [s.id for s in a.seeds] == [s.id for s in b.seeds]
        assert np.allclose(a.centroids, b.centroids, atol=1e-12)
    # The file is plain, readable JSON: outcomes are named.
    raw = json.loads((tmp_path / "lib.json").read_text()) if name == "lib.json" else None
    if raw:
        assert raw["schema"] == "crystalwatch.seeds/1" and "10" in raw["tasks"]["integer_1_10"]["seeds"][0]["centroid"]


def _edit(path, fn):
    raw = json.loads(path.read_text())
    fn(raw)
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda r: r.update(schema="crystalwatch.seeds/0"), "rebuild it with this version"),
        (lambda r: r.update(schema="something"), "is this a seed library"),
        (lambda r: r.pop("tasks"), "field 'tasks'"),
        (lambda r: r["tasks"]["coin_flip"].pop("seeds"), r"field 'tasks.coin_flip.seeds' is missing"),
        (lambda r: r["tasks"]["coin_flip"]["seeds"][0]["centroid"].update(heads=0.9, tails=0.9),
         r"tasks.coin_flip.seeds\[0\].centroid' is not a probability distribution"),
        (lambda r: r["tasks"]["coin_flip"]["seeds"][0]["centroid"].pop("tails"), "has outcomes"),
        (lambda r: r["tasks"]["coin_flip"]["seeds"][0].update(members=["chat/nope"]), "unknown variants"),
        (lambda r: r["tasks"]["coin_flip"]["variants"][0].update(coverage="high"), r"variants\[0\].coverage"),
        (lambda r: r["tasks"]["coin_flip"].update(seeds=[]), "non-empty list"),
        (lambda r: r["tasks"]["coin_flip"]["base"].pop("all"), "'all' entry"),
    ],
)  # fmt: skip
def test_hand_edited_files_give_clear_errors(saved, edit, match):
    _edit(saved, edit)
    with pytest.raises(SeedLibraryError, match=match) as err:
        SeedLibrary.load(saved)
    assert str(saved) in str(err.value)


def test_missing_truncated_and_corrupt_files(saved, tmp_path):
    with pytest.raises(SeedLibraryError, match="cannot read"):
        SeedLibrary.load(tmp_path / "absent.json")
    text = saved.read_text()
    saved.write_text(text[: len(text) // 2])
    with pytest.raises(SeedLibraryError, match="truncated or was edited by hand"):
        SeedLibrary.load(saved)
    gz = tmp_path / "lib.json.gz"
    gz.write_bytes(gzip.compress(text.encode())[:200])
    with pytest.raises(SeedLibraryError, match="cannot read"):
        SeedLibrary.load(gz)


@settings(max_examples=40, deadline=None)
@given(cut=st.floats(0.0, 0.999), junk=st.sampled_from(["", "}", "]", "null", '"x"', "0"]))
def test_any_truncation_is_a_seed_library_error(built, tmp_path_factory, cut, junk):
    path = tmp_path_factory.mktemp("cut") / "lib.json"
    text = json.dumps(built.to_json())
    path.write_text(text[: int(len(text) * cut)] + junk)
    with pytest.raises(SeedLibraryError):
        SeedLibrary.load(path)


def test_check_missing_task_and_changed_outcomes(built):
    with pytest.raises(SeedLibraryError, match="no seeds for task 'weekday'.*--tasks ...,weekday"):
        built.check([load_task("weekday")])
    coin = load_task("coin_flip")
    raw = {"id": "coin_flip", "version": 2, "description": "x", "outcomes": [{"name": "heads"}, {"name": "edge"}],
           "completion_prompts": [{"id": "a", "text": "Coin:"}, {"id": "b", "text": "Flip:"}],
           "chat_prompts": [{"id": "c", "user": "Flip a coin."}, {"id": "d", "user": "Toss a coin."}]}  # fmt: skip
    with pytest.raises(SeedLibraryError, match=r"added \['edge'\], removed \['tails'\]"):
        built.check([parse_task(raw, "my.yaml")])
    built.check([coin])  # same spec: silent


def test_check_warns_on_revised_spec_and_other_tokenizer(built, tokenizer):
    coin = load_task("coin_flip")
    revised = parse_task(
        {"id": "coin_flip", "version": 7, "description": "changed",
         "outcomes": [{"name": o.name, "forms": list(o.forms)} for o in coin.outcomes],
         "completion_prompts": [{"id": "a", "text": "Coin:"}, {"id": "b", "text": "Flip:"}],
         "chat_prompts": [{"id": "c", "user": "Flip a coin."}, {"id": "d", "user": "Toss a coin."}]},
        "revised.yaml",
    )  # fmt: skip
    with pytest.warns(SeedLibraryWarning, match="changed since the library was built"):
        built.check([revised])
    with pytest.raises(SeedLibraryError, match="changed since"):
        built.check([revised], strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built.check([coin], tokenizer)  # same tokenizer and template: no warning
    from transformers import AutoTokenizer  # noqa: F401

    other = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, chat_template="{{ messages }}")
    with pytest.warns(CrossModelWarning, match="cross-model"):
        built.check([coin], other)


# The Gemma turn format crystalwatch rendered with before it marked assistant turns for assistant_only_loss.
EARLIER_GEMMA_TEMPLATE = (
    "{{ bos_token }}{% set sys = '' %}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set sys = message['content'] + '\n\n' %}{% else %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{% if loop.index0 == 1 and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% endif %}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def test_cross_model_check_compares_what_prompts_render_to(built, tokenizer):
    """A template written differently that renders the same text is the same model's input; one that renders
    other text is not (the library records both hashes; earlier libraries only the source's)."""
    from crystalwatch.scoring.prompts import GEMMA_CHAT_TEMPLATE
    from crystalwatch.seeds.library import (
        _EARLIER_GEMMA_TEMPLATES,
        _render_hash,
        _sha,
        renders_alike,
        tokenizer_fingerprint,
    )

    def with_template(template):
        return tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, chat_template=template)

    chatml = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    base = with_template(chatml)
    prov = {"tokenizer_hash": built.provenance["tokenizer_hash"]}
    recorded = {**prov, **tokenizer_fingerprint(base)}
    assert recorded["chat_render_hash"]
    respaced = chatml.replace("{% for m in messages %}", "{%- for m in messages -%}")  # same text, other source
    assert renders_alike(with_template(respaced), recorded)
    assert renders_alike(with_template(chatml + "\n"), recorded)  # Jinja drops a final newline
    assert not renders_alike(with_template(chatml + "<|end|>"), recorded)
    assert not renders_alike(with_template(GEMMA_CHAT_TEMPLATE), recorded)
    # Libraries from before render hashes, rendered with crystalwatch's earlier Gemma format: the same text.
    assert _sha(EARLIER_GEMMA_TEMPLATE) in _EARLIER_GEMMA_TEMPLATES
    assert _render_hash(tokenizer, EARLIER_GEMMA_TEMPLATE) == _render_hash(tokenizer, GEMMA_CHAT_TEMPLATE)
    old = {**prov, "chat_template_hash": _sha(EARLIER_GEMMA_TEMPLATE)}
    assert renders_alike(with_template(GEMMA_CHAT_TEMPLATE), old)
    assert not renders_alike(with_template(chatml), old)
    assert not renders_alike(with_template(chatml), {**prov, "chat_template_hash": "0123456789abcdef"})
    # Templates that refuse a probe (raise_exception on a system turn) have no render hash and are compared by their
    # source: two different refusing templates never look alike.
    refusing = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
    one, two = with_template(refusing + "A"), with_template(refusing + "B")
    assert _render_hash(one, refusing + "A") is None
    assert not renders_alike(two, {**prov, **tokenizer_fingerprint(one)})
    assert renders_alike(one, {**prov, **tokenizer_fingerprint(one)})
    dated = "{{ date_string if date_string is defined else strftime_now('%H:%M:%S.%f') }}{{ messages[-1]['content'] }}"
    assert _render_hash(with_template(dated), dated) == _render_hash(with_template(dated), dated)  # not the clock


def test_compare_finds_the_seed_a_distribution_came_from():
    ts = task_seeds([task_result("integer_1_10", base_matrix(), kind="chat")])
    lib = SeedLibrary({"integer_1_10": ts})
    for seed in ts.seeds:
        r = task_result("integer_1_10", np.array([seed.centroid] * 4))
        nearest, m = lib.compare(r)
        assert nearest.id == seed.id and m["seed_distance"] < 1e-9 and m["seed_margin"] > 0.01
        base = metrics.normalized_entropy(ts.base_consensus("chat"))
        assert m["collapse"] == pytest.approx(1 - metrics.normalized_entropy(seed.centroid) / base)
        assert m["temperature"] == pytest.approx(1.0, abs=1e-3)
    sharp = metrics.temper(ts.seeds[1].centroid, 0.4)
    _, m = lib.compare(task_result("integer_1_10", np.array([sharp] * 4)))
    assert m["temperature"] == pytest.approx(0.4, rel=1e-3) and m["tempered_distance"] < 1e-6
    assert m["seed_support_mass"] > 0.99


def test_seed_pvalue_exact_for_small_k_and_seeded_for_large_k():
    coin = np.array([[0.8, 0.2]])
    assert seed_pvalue(np.array([0.8, 0.2]), coin, n=200) == 0.5  # 2 labellings, one as good: no power
    k10 = np.array([[0.5, 0.2, 0.1, 0.08, 0.05, 0.03, 0.02, 0.01, 0.005, 0.005]])
    p = seed_pvalue(k10[0], k10, n=200, seed=0)
    assert p == pytest.approx(1 / 201)  # the seed's whole shape: no random labelling does as well
    assert seed_pvalue(k10[0], k10, n=200, seed=0) == p  # seeded
    assert seed_pvalue(np.full(10, 0.1), np.full((1, 10), 0.1), n=200) == 1.0  # flat matches any labelling
    one = np.array([1.0] + [0.0] * 9)  # one answer: p is the share of answers as favoured, at least 1/K
    assert seed_pvalue(one, k10, n=5000, seed=0) == pytest.approx(0.1, abs=0.015)


@pytest.mark.parametrize("kind", ["completion", "chat"])
def test_the_base_against_its_own_library_has_not_collapsed(built, llama, tokenizer, kind):
    from crystalwatch import measure

    result = measure(llama, tokenizer, TASKS, kind=kind)
    for tid, r in result.tasks.items():
        _, m = built.compare(r)
        assert m["collapse"] == 0.0, tid
        assert m["diversity"] == pytest.approx(built.tasks[tid].base[kind]["diversity"])
