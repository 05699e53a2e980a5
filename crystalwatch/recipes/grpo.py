"""RLVR with GRPO (Tulu 3.1 / OLMo 2: beta 0.01, lr 5e-7, 16 generations per prompt) and crystalwatch watching.

    python -m recipes.grpo --config recipes/configs/olmo2-1b/grpo.yaml    # real scale (GPU, internet)
    python -m recipes.grpo --config recipes/configs/smoke/grpo.yaml       # smoke (CPU, offline)

Rewards: ``recipes.rewards.verifiable_reward`` routes each prompt by its ``dataset`` column (gsm8k, MATH,
ifeval) to the GSM8K, MATH or IFEval verifier, as in allenai/RLVR-GSM-MATH-IF-Mixed-Constraints.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def to_prompt(row: dict) -> dict:
    """RLVR-GSM-MATH-IF rows carry the question as ``messages``; GRPO wants a conversational ``prompt``."""
    if "prompt" in row and row["prompt"]:
        return {}
    return {"prompt": [m for m in row["messages"] if m["role"] != "assistant"]}


def main(script_args, training_args, model_args, cw_args) -> str:
    """Train with the verifiable rewards, save the model to ``output_dir`` and return that folder."""
    from trl import GRPOTrainer

    from recipes.common import load_split, run_stage
    from recipes.rewards import verifiable_reward

    data = load_split(script_args)
    data = data.map(to_prompt, remove_columns=[c for c in ("messages",) if c in data.column_names])
    return run_stage(GRPOTrainer, script_args, training_args, model_args, cw_args, data=data,
                     reward_funcs=[verifiable_reward])  # fmt: skip


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    from trl import GRPOConfig

    from recipes.common import make_parser as parser

    return parser(GRPOConfig, "grpo", "GRPO (RLVR) with crystalwatch", subparsers, prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
