"""RLVR with GRPO (Tulu 3.1 / OLMo 2: beta 0.01, lr 5e-7, 16 generations per prompt) and crystalwatch watching.

    crystalwatch recipe grpo --config olmo2-1b/grpo   # real scale (GPU, vLLM colocated, internet)
    crystalwatch recipe grpo --config smoke/grpo      # smoke (CPU, offline, plain generate)
    python -m crystalwatch.recipes.grpo --config PATH # the same without the CLI

Rewards: ``crystalwatch.recipes.rewards.verifiable_reward`` routes each prompt by its ``dataset`` column (gsm8k,
MATH, ifeval) to the GSM8K, MATH or IFEval verifier, as in allenai/RLVR-GSM-MATH-IF-Mixed-Constraints. (TRL's
grpo.py takes ``reward_funcs`` names from its ``GRPOScriptArguments``; here the reward is the recipe.)
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


def prompts(data):
    """Every split of the loaded data with a ``prompt`` column (``messages`` dropped)."""
    columns = {c for names in data.column_names.values() for c in names or ()}
    return data.map(to_prompt, remove_columns=["messages"] if "messages" in columns else None)


def main(script_args, training_args, model_args, dataset_args, cw_args, *, last: bool = True,
         more_callbacks=None) -> str:  # fmt: skip
    """Train with the verifiable rewards, save the model to ``output_dir`` and return that folder (``last``,
    ``more_callbacks``: as in ``recipes/sft.py``)."""
    from trl import GRPOTrainer

    from crystalwatch.recipes.common import callbacks, end_stage, load_data, save, splits, trainer_arguments, with_more
    from crystalwatch.recipes.rewards import verifiable_reward

    data = prompts(load_data(script_args, dataset_args, training_args.seed))  # conversational prompts
    watching = callbacks(cw_args)
    trainer = GRPOTrainer(
        **trainer_arguments(training_args, model_args),
        **splits(script_args, training_args, data),
        reward_funcs=[verifiable_reward],
        callbacks=with_more(watching, more_callbacks),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    folder = save(trainer, training_args, model_args)
    end_stage(trainer, last=last)
    return folder


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    from trl import GRPOConfig

    from crystalwatch.recipes.common import make_parser as parser

    return parser(GRPOConfig, "grpo", "GRPO (RLVR) with crystalwatch", subparsers, prog)


if __name__ == "__main__":
    from crystalwatch.recipes.common import parse

    main(*parse(make_parser()))
