"""Watch SFT crystallize a model: TRL SFTTrainer + CrystalWatchCallback, logged to W&B.

    crystalwatch seeds build HuggingFaceTB/SmolLM2-135M --out smollm2-base.seeds.json.gz   # once, from the base
    python examples/sft_with_crystalwatch.py --model HuggingFaceTB/SmolLM2-135M --seeds smollm2-base.seeds.json.gz

Needs the hub (model and data) and, for live plots, `wandb login` (or WANDB_MODE=offline, then `wandb sync`).
The trajectory is also written to <output_dir>/crystalwatch/trajectory.jsonl: `crystalwatch report` renders it.
"""

import argparse

from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

from crystalwatch import CrystalWatchCallback

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M")
parser.add_argument("--seeds", default=None, help="seed library of the base model (default: build at train begin)")
parser.add_argument("--output-dir", default="out/sft")
args = parser.parse_args()

trainer = SFTTrainer(
    model=args.model,
    train_dataset=load_dataset("trl-lib/Capybara", split="train"),
    args=SFTConfig(output_dir=args.output_dir, max_steps=500, learning_rate=2e-5, report_to="wandb"),
    callbacks=[CrystalWatchCallback(seeds=args.seeds, label="sft")],  # adaptive: all it spends <= 1% of training
)
trainer.train()
