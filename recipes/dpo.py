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
    """Train, save the model to ``output_dir`` and return that folder (``last``, ``more_callbacks``: see
    ``common.run_stage``)."""
    from trl import DPOTrainer

    from crystalwatch.recipes.common import run_stage

    return run_stage(DPOTrainer, script_args, training_args, model_args, dataset_args, cw_args, last=last,
                     more_callbacks=more_callbacks)


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    from trl import DPOConfig

    from crystalwatch.recipes.common import make_parser as parser

    return parser(DPOConfig, "dpo", "DPO with crystalwatch", subparsers, prog)


if __name__ == "__main__":
    from crystalwatch.recipes.common import parse

    main(*parse(make_parser()))
