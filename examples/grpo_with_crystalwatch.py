"""Watch RL with verifiable rewards reshape a model: TRL GRPOTrainer + CrystalWatchCallback.

    python examples/grpo_with_crystalwatch.py --model out/dpo --seeds smollm2-base.seeds.json.gz

GSM8K-style reward: 1 when the last number in the completion equals the reference answer.
Needs the hub (data) and `wandb login` (or WANDB_MODE=offline).
"""

import argparse
import re

from datasets import load_dataset
from trl import GRPOConfig, GRPOTrainer

from crystalwatch import CrystalWatchCallback

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
parser.add_argument("--seeds", default=None)
parser.add_argument("--output-dir", default="out/grpo")
args = parser.parse_args()


def last_number_matches(completions, answer, **kwargs):
    """Reward 1.0 when the completion's last number equals the reference (GSM8K: the text after '####')."""
    rewards = []
    for completion, ref in zip(completions, answer):
        text = completion[0]["content"] if isinstance(completion, list) else completion
        numbers = re.findall(r"-?\d[\d,]*\.?\d*", text)
        rewards.append(float(bool(numbers) and numbers[-1].replace(",", "") == ref.split("####")[-1].strip()))
    return rewards


data = load_dataset("openai/gsm8k", "main", split="train").map(
    lambda row: {"prompt": [{"role": "user", "content": row["question"]}]}
)
trainer = GRPOTrainer(
    model=args.model,
    reward_funcs=last_number_matches,
    train_dataset=data,
    args=GRPOConfig(output_dir=args.output_dir, max_steps=200, learning_rate=5e-7, beta=0.01, num_generations=8,
                    max_completion_length=256, report_to="wandb"),  # fmt: skip
    callbacks=[CrystalWatchCallback(seeds=args.seeds, label="rlvr")],
)
trainer.train()
