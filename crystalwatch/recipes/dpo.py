"""Tulu 3-style length-normalised DPO (``loss_type: [sigmoid_norm]``, beta 5) with crystalwatch watching.

    python -m recipes.dpo --config recipes/configs/olmo2-1b/dpo.yaml     # real scale (GPU, internet)
    python -m recipes.dpo --config recipes/configs/smoke/dpo.yaml        # smoke (CPU, offline)

``model_name_or_path`` is the SFT stage's output; ``crystalwatch_seeds`` stays the BASE model's library, so
that settling is judged against the seeds the pretrained model had.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main(script_args, training_args, model_args, cw_args) -> str:
    """Train, save the model to ``output_dir`` and return that folder."""
    from trl import DPOTrainer

    from recipes.common import run_stage

    return run_stage(DPOTrainer, script_args, training_args, model_args, cw_args)


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    from trl import DPOConfig

    from recipes.common import make_parser as parser

    return parser(DPOConfig, "dpo", "DPO with crystalwatch", subparsers, prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
