"""Tulu 3-style SFT with crystalwatch watching (a thin TRL script, in the style of trl/scripts/sft.py).

    # real scale (GPU, internet): OLMo 2 1B on the Tulu 3 OLMo mixture
    crystalwatch seeds build allenai/OLMo-2-0425-1B --out olmo2-1b.seeds.json.gz --device cuda --dtype bfloat16
    crystalwatch recipe sft --config olmo2-1b/sft                       # = python -m crystalwatch.recipes.sft
    # smoke (CPU, offline, seconds)
    crystalwatch recipe sft --config smoke/sft

Any config field can be overridden on the command line (``--max_samples 1000``). With ``use_peft`` the
LoRA is merged before saving, so the next stage starts from a plain model.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main(script_args, training_args, model_args, dataset_args, cw_args, *, last: bool = True,
         more_callbacks=None) -> str:  # fmt: skip
    """Train, save the model to ``output_dir`` and return that folder (``last``, ``more_callbacks``: see
    ``common.run_stage``)."""
    from trl import SFTTrainer

    from crystalwatch.recipes.common import run_stage

    return run_stage(SFTTrainer, script_args, training_args, model_args, dataset_args, cw_args, last=last,
                     more_callbacks=more_callbacks)


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    from trl import SFTConfig

    from crystalwatch.recipes.common import make_parser as parser

    return parser(SFTConfig, "sft", "SFT with crystalwatch", subparsers, prog)


if __name__ == "__main__":
    from crystalwatch.recipes.common import parse

    main(*parse(make_parser()))
