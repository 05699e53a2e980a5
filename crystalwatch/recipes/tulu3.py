"""Run a whole Tulu 3-style chain — SFT -> DPO -> RLVR — with one seed library and one trajectory.

    python -m recipes.tulu3 --config recipes/configs/smoke/chain.yaml         # CPU, offline, about a minute
    python -m recipes.tulu3 --config recipes/configs/olmo2-1b/chain.yaml      # GPU, internet

The chain config names the base model, an output folder and the stages (recipe + its config). The base's
seed library is built once at the start (or taken from ``seeds``). Each stage starts from the previous
stage's output, writes into the same trajectory with its steps continuing the previous stage's, and the
combined trajectory is rendered with ``crystalwatch report`` at the end.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from crystalwatch.records import read_trajectory
from crystalwatch.sinks.base import grouped

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
RECIPES = ("sft", "dpo", "grpo")


def load_chain(path: str | Path) -> dict[str, Any]:
    """Read and check a chain config; errors name the file and the field."""
    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, dict) or not raw.get("base") or not raw.get("output_dir"):
        raise ValueError(f"{path}: a chain config needs 'base' (model) and 'output_dir'")
    stages = raw.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ValueError(f"{path}: field 'stages' must be a non-empty list of {{recipe, config}}")
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or stage.get("recipe") not in RECIPES or not stage.get("config"):
            raise ValueError(f"{path}: stages[{i}] needs recipe (one of {', '.join(RECIPES)}) and config (a path)")
    return raw


def stage_args(recipe: str, config: str, overrides: dict[str, Any]) -> tuple:
    """Parse a stage's YAML with its TrlParser, then apply the chain's overrides."""
    parser = importlib.import_module(f"recipes.{recipe}").make_parser()
    args = parser.parse_args_and_config(args=["--config", config])
    for section in args:
        for key, value in overrides.items():
            if hasattr(section, key):
                setattr(section, key, value)
    return args


def seed_library(base: str, out: Path, tasks: list[str] | None, given: str | None) -> str:
    if given:
        return given
    from crystalwatch import load_model, load_or_build
    from recipes.common import TINY, tiny_model_folder

    path = out / "base.seeds.json.gz"
    if not path.is_file():  # built once per output folder, then reused by later chains there
        model, tokenizer = load_model(tiny_model_folder() if base == TINY else base)
        load_or_build(path, model, tokenizer, tasks, model_name=base)
    return str(path)


def run_chain(path: str | Path) -> dict[str, Any]:
    chain = load_chain(path)
    out = Path(chain["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    trajectory = out / "trajectory.jsonl"
    if trajectory.exists():  # a new chain is a new run; the last one's trajectory is kept beside it
        trajectory.replace(out / "trajectory.previous.jsonl")
    first = stage_args(chain["stages"][0]["recipe"], chain["stages"][0]["config"], {})
    seeds = seed_library(chain["base"], out, first[3].crystalwatch_tasks, chain.get("seeds"))
    model, offset, outputs, runs = chain["base"], 0, [], []
    for stage in chain["stages"]:
        recipe = importlib.import_module(f"recipes.{stage['recipe']}")
        overrides = {"model_name_or_path": model, "output_dir": str(out / stage["recipe"]),
                     "crystalwatch_seeds": seeds, "crystalwatch_trajectory": str(trajectory),
                     "crystalwatch_run": chain.get("run", out.name), "crystalwatch_step_offset": offset}  # fmt: skip
        args = stage_args(stage["recipe"], stage["config"], overrides)
        with grouped(chain.get("run", out.name), stage["recipe"]):  # the stages: one experiment in W&B
            model = recipe.main(*args)
        outputs.append(model)
        runs.append(_finish_wandb())
        offset = read_trajectory(trajectory)[-1]["step"]  # the next stage's steps continue from here
    from crystalwatch.report import render_report

    return {"trajectory": str(trajectory), "report": str(render_report(trajectory, out / "report")),
            "outputs": outputs, "seeds": seeds, "wandb_runs": runs}  # fmt: skip


def _finish_wandb() -> str | None:
    """Finish the stage's W&B run (the Trainer leaves it open) and return its folder; None without W&B."""
    if "wandb" not in sys.modules:
        return None
    from crystalwatch.sinks.wandb import finish_run

    return finish_run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="chain YAML (recipes/configs/*/chain.yaml)")
    result = run_chain(parser.parse_args().config)
    print(f"trajectory: {result['trajectory']}\nreport: {result['report']}")


if __name__ == "__main__":
    main()
