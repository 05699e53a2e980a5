"""Watch DPO settle a model: TRL DPOTrainer with LoRA (length-normalised DPO, as in Tulu 3) + CrystalWatchCallback.

    python examples/dpo_lora_with_crystalwatch.py --model out/sft --seeds smollm2-base.seeds.json.gz

Use the *base* model's seed library (not the SFT model's): settling is judged against the seeds the
pretrained model had. Needs the hub (data) and `wandb login` (or WANDB_MODE=offline).
"""

import argparse

from datasets import load_dataset
from peft import LoraConfig
from trl import DPOConfig, DPOTrainer

from crystalwatch import CrystalWatchCallback

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
parser.add_argument("--seeds", default=None)
parser.add_argument("--output-dir", default="out/dpo")
args = parser.parse_args()

trainer = DPOTrainer(
    model=args.model,
    train_dataset=load_dataset("trl-lib/ultrafeedback_binarized", split="train"),
    args=DPOConfig(output_dir=args.output_dir, max_steps=300, learning_rate=5e-6, beta=5.0,
                   loss_type=["sigmoid_norm"], report_to="wandb"),  # fmt: skip
    peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
    callbacks=[CrystalWatchCallback(seeds=args.seeds, every_n_steps=25, label="dpo")],
)
trainer.train()
