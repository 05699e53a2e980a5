"""CrystalWatchCallback inside real (tiny) TRL trainings on CPU: SFT, DPO with LoRA, GRPO; faults; resume."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from datasets import Dataset

from crystalwatch import SeedLibrary, load_task
from crystalwatch.callback import CrystalWatchCallback, trajectory_of
from crystalwatch.records import read_trajectory

TASKS = ["integer_1_10", "coin_flip"]
CPU = dict(use_cpu=True, bf16=False, report_to="none", save_strategy="no", activation_checkpointing=False,
           disable_tqdm=True)  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tokenizer):
    from tiny import build_model, save

    return str(save(build_model("llama", len(tokenizer), seed=0), tokenizer, tmp_path_factory.mktemp("m") / "tiny"))


def load(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def sft_data(answer: str = "7", n: int = 64) -> Dataset:
    """Chat data that always answers the 1-10 prompts with ``answer`` (and flips "heads")."""
    rows = []
    for task, reply in (("integer_1_10", answer), ("coin_flip", "heads")):
        for p in load_task(task).chat_prompts:
            messages = ([{"role": "system", "content": p.system}] if p.system else []) + [
                {"role": "user", "content": p.user},
                {"role": "assistant", "content": f"{p.prefill or ''} {reply}".strip()},
            ]
            rows.append({"messages": messages})
    return Dataset.from_list((rows * (n // len(rows) + 1))[:n])


def sft_config(tmp_path, **kw):
    from trl import SFTConfig

    base = dict(
        **CPU,
        output_dir=str(tmp_path / "out"),
        max_steps=6,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        max_length=96,
        seed=0,
    )
    return SFTConfig(**{**base, **kw})


def test_sft_measures_at_begin_every_n_and_end_and_restores_everything(folder, tmp_path):
    from trl import SFTTrainer

    model, tok = load(folder)
    before = {a: getattr(tok, a) for a in ("padding_side", "chat_template", "pad_token")}
    cb = CrystalWatchCallback(tasks=TASKS, every_n_steps=4)
    seen = []

    class Spy(CrystalWatchCallback.__mro__[1]):  # a plain TrainerCallback after ours: is the model back in train mode?
        def on_step_end(self, args, state, control, model=None, **kw):
            seen.append((state.global_step, model.training))

    trainer = SFTTrainer(
        model=model,
        args=sft_config(tmp_path, max_steps=6),
        train_dataset=sft_data(),
        processing_class=tok,
        callbacks=[cb, Spy()],
    )
    trainer.train()
    records = trajectory_of(tmp_path / "out")
    assert [r["step"] for r in records[:: len(TASKS)]] == [0, 4, 6]
    assert [r["index"] for r in records[:: len(TASKS)]] == [0, 1, 2]
    assert all(training for _, training in seen) and model.training
    assert {a: getattr(tok, a) for a in before} == before
    lib = SeedLibrary.load(tmp_path / "out" / "crystalwatch" / "seeds.json.gz")  # built from the starting model
    assert set(lib.tasks) == set(TASKS) and records[0]["library"] == lib.digest
    # The starting model against a library built from itself: collapse 0, so 1-10 is liquid; the coin's answers get
    # 7e-8 of the mass (a random tiny model), under the coverage floor: no signal.
    first = {r["task"]: r["state"] for r in records[: len(TASKS)]}
    assert first == {"integer_1_10": "liquid", "coin_flip": "no_signal"}
    assert records[0]["metrics"]["collapse"] == 0.0 and records[1]["metrics"]["coverage"] < 1e-6
    assert cb.errors == 0


def test_dpo_with_lora_and_gradient_checkpointing(folder, tmp_path):
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    model, tok = load(folder)
    rows = [
        {
            "prompt": [{"role": "user", "content": p.user}],
            "chosen": [{"role": "assistant", "content": "7"}],
            "rejected": [{"role": "assistant", "content": "3"}],
        }
        for p in load_task("integer_1_10").chat_prompts
    ]
    args = DPOConfig(
        **{**CPU, "activation_checkpointing": True},
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        loss_type=["sigmoid_norm"],
        beta=5.0,
        max_length=96,
        logging_steps=1,
    )
    cb = CrystalWatchCallback(tasks=TASKS, every_n_steps=2, label="dpo")
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows * 2),
        processing_class=tok,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        callbacks=[cb],
    )
    trainer.train()
    records = trajectory_of(tmp_path / "out")
    assert [r["step"] for r in records[:: len(TASKS)]] == [0, 2, 4] and {r["label"] for r in records} == {"dpo"}
    assert trainer.model.is_gradient_checkpointing and trainer.model.training  # still on: the callback left it alone
    assert cb.errors == 0
    # LoRA moved the distributions away from the starting model's (consensus at step 4 != step 0).
    first, last = records[0], records[-2]
    assert first["task"] == last["task"] and not np.allclose(first["consensus"], last["consensus"], atol=1e-6)
    # DPO's own signals ride beside the readings: none before training, the logged steps' means after.
    assert first["trainer"] == {} and {"loss", "rewards/margins", "rewards/accuracies"} <= set(last["trainer"])
    logged = [h["rewards/margins"] for h in trainer.state.log_history if "rewards/margins" in h and h["step"] < 4]
    assert last["trainer"]["rewards/margins"] == pytest.approx(sum(logged[1:]) / len(logged[1:]))  # steps 2, 3


def test_grpo(folder, tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    model, tok = load(folder)
    prompts = [{"prompt": [{"role": "user", "content": p.user}]} for p in load_task("coin_flip").chat_prompts]

    def reward(completions, **kwargs):
        return [float("heads" in (c[0]["content"] if isinstance(c, list) else c)) for c in completions]

    args = GRPOConfig(
        **CPU,
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=2,
        num_generations=2,
        generation_batch_size=4,
        max_completion_length=6,
        learning_rate=1e-3,
        logging_steps=1,
    )
    cb = CrystalWatchCallback(tasks=["coin_flip"], every_n_steps=1)
    GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=Dataset.from_list(prompts * 2),
        processing_class=tok,
        callbacks=[cb],
    ).train()
    records = trajectory_of(tmp_path / "out")
    assert [r["step"] for r in records] == [0, 1, 2] and cb.errors == 0
    assert {"reward", "frac_reward_zero_std", "entropy"} <= set(records[2]["trainer"])  # GRPO's signals, step 1


def _wandb_run(tmp_path):
    import os

    import wandb
    from wandb_run import latest_run_dir, read_offline_run

    wandb.finish()  # the Trainer leaves the run open
    return read_offline_run(latest_run_dir(os.path.join(os.environ["WANDB_DIR"], "wandb")))


def test_forced_nucleation_is_seen_live_in_wandb(folder, tmp_path):
    """SFT that always answers the base's favourite 1-10 outcome: the task must go liquid -> nucleated."""
    from trl import SFTTrainer

    from crystalwatch import build_seed_library

    model, tok = load(folder)
    library = build_seed_library(model, tok, ["integer_1_10"], kinds=("chat",), model_name=folder)
    library.save(tmp_path / "seeds.json")
    seed = library.tasks["integer_1_10"].seeds[0]
    answer = library.tasks["integer_1_10"].outcomes[int(np.argmax(seed.centroid))]
    cb = CrystalWatchCallback(SeedLibrary.load(tmp_path / "seeds.json"), tasks=["integer_1_10"], every_n_steps=5)
    args = sft_config(tmp_path, max_steps=40, learning_rate=3e-3, report_to="wandb", run_name="nucleation")
    SFTTrainer(
        model=model, args=args, train_dataset=sft_data(answer, n=160), processing_class=tok, callbacks=[cb]
    ).train()
    records = trajectory_of(tmp_path / "out")
    states = [r["state"] for r in records]
    events = [e for r in records for e in r["events"]]
    assert states[0] == "liquid" and states[-1] in ("nucleated", "settling", "settled"), states
    into = next(e for e in events if e["to"] == "nucleated")
    assert 5 <= into["step"] <= 40 and into["from"] in ("liquid", "nucleating")
    last = records[-1]
    assert last["outcomes"][int(np.argmax(last["consensus"]))] == answer and last["metrics"]["collapse"] > 0.6

    run = _wandb_run(tmp_path)
    rows = [h for h in run["history"] if "crystal/integer_1_10/collapse" in h]
    assert [h["train/global_step"] for h in rows] == [r["step"] for r in records]  # every measurement, in order
    assert rows[-1]["crystal/integer_1_10/collapse"] == pytest.approx(last["metrics"]["collapse"])
    assert rows[-1]["crystal/summary/" + last["state"]] == 1 and rows[-1]["crystal/summary/errors"] == 0
    assert any("train/loss" in h for h in run["history"])  # TRL's own curves share the run and the step axis
    assert [a for a in run["alerts"] if "nucleated" in a["title"]], run["alerts"]
    table = run["tables"]["crystal/phase_table"]
    assert [row[0] for row in table["data"]] == [r["step"] for r in records]
    assert run["config"]["crystalwatch"]["every_n_steps"] == 5
    assert any(a["type"] == "seed-library" for a in run["artifacts"])


class Crash(Exception):
    pass


def test_resume_continues_the_same_trajectory(folder, tmp_path):
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class CrashAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 7:
                raise Crash

    args = sft_config(tmp_path, max_steps=10, save_strategy="steps", save_steps=4)
    model, tok = load(folder)
    with pytest.raises(Crash):
        SFTTrainer(
            model=model,
            args=args,
            train_dataset=sft_data(),
            processing_class=tok,
            callbacks=[CrystalWatchCallback(tasks=TASKS, every_n_steps=2), CrashAt()],
        ).train()
    assert [r["step"] for r in trajectory_of(tmp_path / "out")][:: len(TASKS)] == [0, 2, 4, 6]  # 6 is after the save
    model, tok = load(folder)
    cb = CrystalWatchCallback(tasks=TASKS, every_n_steps=2)
    SFTTrainer(model=model, args=args, train_dataset=sft_data(), processing_class=tok, callbacks=[cb]).train(
        resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4")
    )
    records = trajectory_of(tmp_path / "out")
    assert [(r["index"], r["step"]) for r in records[:: len(TASKS)]] == [
        (0, 0),
        (1, 2),
        (2, 4),
        (3, 6),
        (4, 8),
        (5, 10),
    ]
    assert records[6]["metrics"]["velocity"] is not None  # the tracker kept step 4's consensus across the restart
    assert len({(r["index"], r["task"]) for r in records}) == len(records)  # no duplicates


def test_errors_are_reported_counted_and_training_finishes(folder, tmp_path, monkeypatch, caplog):
    from trl import SFTTrainer

    import crystalwatch.scoring.exact as dist

    real, calls = dist.score_all, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) in (4, 5):  # calls 1-2 build the library (completion, chat prompts), 3 measures step 0
            raise RuntimeError("scorer exploded")
        return real(*a, **kw)

    monkeypatch.setattr(dist, "score_all", flaky)
    model, tok = load(folder)
    cb = CrystalWatchCallback(tasks=TASKS, every_n_steps=2)
    with caplog.at_level(logging.WARNING, logger="crystalwatch"):
        trainer = SFTTrainer(
            model=model,
            args=sft_config(tmp_path, max_steps=8),
            train_dataset=sft_data(),
            processing_class=tok,
            callbacks=[cb],
        )
        trainer.train()
    assert trainer.state.global_step == 8 and model.training
    assert cb.errors == 2
    tracebacks = [r for r in caplog.records if "Traceback" in r.getMessage()]
    assert len(tracebacks) == 1 and "scorer exploded" in tracebacks[0].getMessage()  # reported once in full
    assert [r["step"] for r in trajectory_of(tmp_path / "out")][:: len(TASKS)] == [0, 6, 8]  # resumed at the next step

    calls.clear()
    model, tok = load(folder)
    strict = CrystalWatchCallback(tasks=TASKS, every_n_steps=2, strict=True)
    with pytest.raises(RuntimeError, match="scorer exploded"):
        SFTTrainer(
            model=model,
            args=sft_config(tmp_path / "s", max_steps=8),
            train_dataset=sft_data(),
            processing_class=tok,
            callbacks=[strict],
        ).train()


def test_nan_logits_give_no_signal_not_a_crash(folder, tmp_path):
    from trl import SFTTrainer

    model, tok = load(folder)

    def poison(module, inputs, output):
        return output if module.training else torch.full_like(output, float("nan"))

    model.lm_head.register_forward_hook(poison)
    cb = CrystalWatchCallback(tasks=TASKS, every_n_steps=2)
    SFTTrainer(
        model=model,
        args=sft_config(tmp_path, max_steps=4),
        train_dataset=sft_data(),
        processing_class=tok,
        callbacks=[cb],
    ).train()
    lines = (tmp_path / "out" / "crystalwatch" / "trajectory.jsonl").read_text().splitlines()
    assert lines and all("NaN" not in line for line in lines)  # strict JSON
    records = [json.loads(line) for line in lines]
    assert {r["state"] for r in records} == {"no_signal"} and model.training


def test_wandb_failure_loses_nothing_else(folder, tmp_path, monkeypatch):
    from trl import SFTTrainer

    from crystalwatch.sinks.wandb import WandbSink

    def broken(self, *a, **kw):
        raise ConnectionError("W&B is down")

    monkeypatch.setattr(WandbSink, "write", broken)
    model, tok = load(folder)
    cb = CrystalWatchCallback(tasks=TASKS, every_n_steps=2)
    SFTTrainer(
        model=model,
        args=sft_config(tmp_path, max_steps=4, report_to="wandb", run_name="down"),
        train_dataset=sft_data(),
        processing_class=tok,
        callbacks=[cb],
    ).train()
    assert [r["step"] for r in trajectory_of(tmp_path / "out")][:: len(TASKS)] == [0, 2, 4]
    assert cb.errors == 3
    run = _wandb_run(tmp_path)
    assert any("train/loss" in h for h in run["history"])  # the training's own logging is untouched


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_adaptive_cadence_holds_its_budget_on_a_fake_clock(folder, tmp_path, monkeypatch):
    """Every training step takes 1 s and every measurement 0.25 s of a fake clock, budget 1/8, 13 steps.

    In a Trainer the length is known (max_steps), so the cadence front-loads: at each step it projects the run
    (13 s of training; it plans with 90% of its budget: 1.4625 s), counts the measurements still affordable after
    what was spent and the final one, and spreads them log-uniformly over the steps left: steps 1, 3, 7 (worked
    out in docs/callback.md). In a loop of one's own without ``total_steps`` it pays as it goes: a measurement is due
    when what was spent, this one and the final one fit in the budget of the training so far: at 6 s, then every
    2 s.
    Both end within the budget, the start and the end included."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    import crystalwatch.monitor as module
    from crystalwatch import Monitor

    monitor = CrystalWatchCallback(tasks=TASKS, budget=0.02).monitor
    cadence = monitor.cadence
    cadence.seconds, cadence.measure_seconds, cadence.train_seconds = 1.0, 1.0, 149.0
    assert not monitor._due(10)  # 1 s spent + 2 x 1 s after 149 s of training would be 2.01%
    cadence.train_seconds = 150.0
    assert monitor._due(11)

    clock = FakeClock()

    class OneSecondSteps(TrainerCallback):
        def on_step_end(self, *args, **kwargs):
            clock.now += 1.0

    real_run = module.run

    def run(*args, **kwargs):
        clock.now += 0.25
        return real_run(*args, **kwargs)

    monkeypatch.setattr(module, "run", run)
    model, tok = load(folder)
    cb = CrystalWatchCallback(tasks=TASKS, budget=0.125, clock=clock)
    SFTTrainer(model=model, args=sft_config(tmp_path, max_steps=13), train_dataset=sft_data(), processing_class=tok,
               callbacks=[OneSecondSteps(), cb]).train()  # fmt: skip
    steps = [r["step"] for r in trajectory_of(tmp_path / "out")][:: len(TASKS)]
    assert steps == [0, 1, 3, 7, 13]  # 13: the final measurement
    assert cb.train_seconds == 13.0 and cb.seconds == pytest.approx(0.25 * 5)
    assert cb.seconds <= 0.125 * cb.train_seconds  # the whole cost, the start and the end included

    loop = Monitor(tasks=TASKS, budget=0.125, clock=clock, console=False)
    loop.start(model, tok, output_dir=tmp_path / "loop")  # no total_steps: pay as you go
    for step in range(1, 14):
        clock.now += 1.0
        loop.step(model, step)
    loop.close(model, 13)
    steps = [r.step for r in read_trajectory(tmp_path / "loop" / "crystalwatch" / "trajectory.jsonl")][:: len(TASKS)]
    assert steps == [0, 6, 8, 10, 12, 13]
    assert loop.train_seconds == 13.0 and loop.seconds == pytest.approx(0.25 * 6)


def test_own_time_is_kept_out_of_training_time(folder, tmp_path):
    """A Monitor in a loop of one's own, on a fake clock: its calls (start, save_state, a measurement) count as its
    own time once each and never as training time; a second run on the same monitor counts from its own start."""
    from crystalwatch import Monitor

    clock = FakeClock()
    model, tok = load(folder)
    monitor = Monitor(tasks=TASKS, every_n_steps=0, clock=clock, console=False)
    monitor.start(model, tok, output_dir=tmp_path / "a", measure=False)
    clock.now += 5.0  # training
    monitor.step(model, 1)
    real_state_dict = monitor.state_dict

    def slow_state_dict():
        clock.now += 2.0
        return real_state_dict()

    monitor.state_dict = slow_state_dict
    monitor.save_state(tmp_path)  # 2 s of the monitor's own
    clock.now += 3.0  # training
    monitor.step(model, 2)
    assert monitor.train_seconds == 8.0 and monitor.seconds == 2.0
    clock.now += 100.0  # between runs: neither
    monitor.start(model, tok, output_dir=tmp_path / "b", measure=False)
    clock.now += 1.0
    monitor.step(model, 1)
    assert monitor.train_seconds == 9.0 and monitor.seconds == 2.0


def test_bf16_model_with_gradient_accumulation(folder, tmp_path):
    """A bf16 model, bf16 autocast and 2 micro-batches per optimizer step: measured per optimizer step."""
    from trl import SFTTrainer

    model, tok = load(folder)
    model = model.to(torch.bfloat16)
    cb = CrystalWatchCallback(tasks=TASKS, every_n_steps=2)
    args = sft_config(tmp_path, max_steps=4, bf16=True, gradient_accumulation_steps=2, per_device_train_batch_size=2)
    SFTTrainer(model=model, args=args, train_dataset=sft_data(), processing_class=tok, callbacks=[cb]).train()
    records = trajectory_of(tmp_path / "out")
    assert [r["step"] for r in records][:: len(TASKS)] == [0, 2, 4] and cb.errors == 0
    assert all(abs(sum(r["consensus"]) - 1) < 1e-4 for r in records)  # distributions (the fp32 softmax: test_exact.py)


def test_a_checkpoint_of_a_new_segment_keeps_the_records_before_it(folder, tmp_path):
    """A run started at step 5 without a saved state writes a new segment after the records already in the file;
    the state a checkpoint of it saves counts every record in the file, so resuming from it keeps them all (it used
    to count only the segment's own, and resuming cut the earlier records away)."""
    from crystalwatch import Monitor
    from crystalwatch.records import read_trajectory, run_files

    model, tok = load(folder)
    out = tmp_path / "out"
    first = Monitor(tasks=TASKS, every_n_steps=0, console=False)
    first.start(model, tok, output_dir=out)
    first.close()
    segment = Monitor(tasks=TASKS, every_n_steps=1, console=False)
    segment.start(model, tok, step=5, output_dir=out, measure=False)
    segment.step(model, 6)
    state = segment.state_dict()
    segment.close()
    assert state["records_written"] == 2 * len(TASKS)
    resumed = Monitor(tasks=TASKS, every_n_steps=1, console=False)
    resumed.start(model, tok, step=6, output_dir=out, state=state)
    resumed.close()
    assert [r.step for r in read_trajectory(run_files(out)[1])][:: len(TASKS)] == [0, 6]


def _forced(folder, tmp_path):
    """The tiny model, a library of its 1-10 answers, and SFT data that always gives its favourite answer: the
    task goes liquid -> nucleated within 40 steps (test_forced_nucleation_is_seen_live_in_wandb)."""
    from crystalwatch import build_seed_library

    model, tok = load(folder)
    library = build_seed_library(model, tok, ["integer_1_10"], kinds=("chat",), model_name=folder)
    library.save(tmp_path / "seeds.json")
    seed = library.tasks["integer_1_10"].seeds[0]
    return model, tok, sft_data(library.tasks["integer_1_10"].outcomes[int(np.argmax(seed.centroid))], n=160)


def test_a_transition_saves_a_checkpoint_that_resumes_and_calls_the_user_function(folder, tmp_path):
    """save_on=("nucleated",): the Trainer saves checkpoint-<step of the transition> (with the monitor's state)
    though its own save strategy is "no"; on_transition is called once per transition, with the record; a run
    resumed from that checkpoint continues the trajectory from it."""
    from trl import SFTTrainer

    model, tok, data = _forced(folder, tmp_path)
    calls = []
    cb = CrystalWatchCallback(tmp_path / "seeds.json", tasks=["integer_1_10"], every_n_steps=5,
                              save_on=("nucleated",), on_transition=calls.append)  # fmt: skip
    args = sft_config(tmp_path, max_steps=40, learning_rate=3e-3)
    SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[cb]).train()
    records = trajectory_of(tmp_path / "out")
    events = [e for r in records for e in r.events]
    into = next(e for e in events if e.to_state == "nucleated")
    assert [(c.task, c.from_state, c.to_state, c.step) for c in calls] == [
        (e.task, e.from_state, e.to_state, e.step) for e in events
    ]  # once per transition (and early warning), in order
    assert all(c.record.step == c.step and c.event in c.record.events for c in calls)
    saved = sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*"))
    assert saved == [f"checkpoint-{into.step}"], (saved, into)
    state = json.loads((tmp_path / "out" / saved[0] / "crystalwatch_state.json").read_text())
    assert state["last_step"] == into.step and state["tracker"]["tasks"]["integer_1_10"]["state"] == "nucleated"

    model, tok = load(folder)
    resumed = CrystalWatchCallback(tmp_path / "seeds.json", tasks=["integer_1_10"], every_n_steps=5)
    args = sft_config(tmp_path, max_steps=into.step + 5, learning_rate=3e-3)
    SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[resumed]).train(
        resume_from_checkpoint=str(tmp_path / "out" / saved[0]))
    again = trajectory_of(tmp_path / "out")
    cut = [r for r in records if r.step <= into.step]
    assert [r.to_json() for r in again[: len(cut)]] == [r.to_json() for r in cut]  # kept up to the checkpoint
    assert [r.step for r in again[len(cut):]] == [into.step + 5] and resumed.errors == 0


def test_stop_on_ends_training_at_the_transition_with_the_reason_logged_and_alerted(folder, tmp_path, caplog):
    """stop_on=("nucleated",): training ends at the step of the transition; the reason is one log line and the
    first W&B alert of that measurement (an ERROR)."""
    from trl import SFTTrainer

    model, tok, data = _forced(folder, tmp_path)
    cb = CrystalWatchCallback(tmp_path / "seeds.json", tasks=["integer_1_10"], every_n_steps=5, stop_on=["nucleated"])
    args = sft_config(tmp_path, max_steps=40, learning_rate=3e-3, report_to="wandb", run_name="stop")
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[cb])
    with caplog.at_level(logging.WARNING, logger="crystalwatch"):
        trainer.train()
    records = trajectory_of(tmp_path / "out")
    into = next(e for r in records for e in r.events if e.to_state == "nucleated")
    assert trainer.state.global_step == into.step == records[-1].step < 40
    reason = f"step {into.step}: integer_1_10 {into.from_state} -> nucleated (stop: stop_on)"
    assert f"crystalwatch: stopping training: {reason}" in caplog.messages
    stop = _wandb_run(tmp_path)["alerts"][0]
    assert (stop["title"], stop["text"], stop["level"]) == ("crystalwatch: training stopped", reason, "ERROR")


def test_a_loop_of_ones_own_logs_its_signals_beside_the_readings(folder, tmp_path):
    """``Monitor.log`` in a loop of one's own: each measurement keeps the means of the known signals logged since
    the one before (unknown keys and non-numbers dropped); nothing logged, nothing kept."""
    from crystalwatch import Monitor

    model, tok = load(folder)
    monitor = Monitor(tasks=TASKS, every_n_steps=2, console=False)
    monitor.start(model, tok, output_dir=tmp_path)
    for step in range(1, 5):
        monitor.log({"loss": float(step), "reward": 0.5 * step, "my_metric": 3.0, "entropy": "n/a"})
        monitor.step(model, step)
    monitor.close(model, 5)
    by_step = {r.step: r.trainer for r in read_trajectory(tmp_path / "crystalwatch" / "trajectory.jsonl")}
    assert by_step == {0: {}, 2: {"loss": 1.5, "reward": 0.75}, 4: {"loss": 3.5, "reward": 1.75}, 5: {}}


def test_a_trainer_without_a_tokenizer_gets_one_line_and_trains(folder, tmp_path, caplog):
    """A user error known in advance (a plain Trainer given no processing_class) is one line that says the fix,
    not a traceback; training goes on without the monitor."""
    from transformers import Trainer, TrainingArguments

    model, _ = load(folder)
    rows = Dataset.from_list([{"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3, 4]}] * 4)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2,
                             report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True)  # fmt: skip
    cb = CrystalWatchCallback(tasks=TASKS, every_n_steps=1)
    with caplog.at_level(logging.WARNING, logger="crystalwatch"):
        trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[cb])
        trainer.train()
    assert trainer.state.global_step == 2 and cb.errors == 1
    mine = [r.getMessage() for r in caplog.records if r.name == "crystalwatch"]
    assert len(mine) == 1 and "processing_class=tokenizer" in mine[0] and "Traceback" not in mine[0], mine
