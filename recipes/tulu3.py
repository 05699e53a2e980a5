"""Run a whole Tulu 3-style chain — SFT -> DPO -> RLVR — with one seed library and one trajectory.

    crystalwatch recipe chain --config smoke/chain           # CPU, offline, about a minute
    crystalwatch recipe chain --config olmo2-1b/chain        # GPU, internet
    python -m crystalwatch.recipes.tulu3 --config PATH       # the same, without the CLI

The chain config names the base model, an output folder and the stages (recipe + its config, a path relative
to the chain file's folder). The base's seed library is built once at the start (or taken from ``seeds``).
Each stage starts from the previous stage's output, writes into the same trajectory with its steps continuing
the previous stage's, and the combined trajectory is rendered with ``crystalwatch report`` at the end.

The stages are one experiment in every tracker that groups runs, under the chain's name (``run``, default: the
output folder's name): W&B puts them in one run group, job type = the stage (``WANDB_RUN_GROUP``,
``WANDB_JOB_TYPE``); trackio in one project (``project``); MLflow in one experiment, tagged with the stage
(``MLFLOW_EXPERIMENT_NAME``, ``MLFLOW_TAGS``); TensorBoard shows one run per stage under
``<output_dir>/tensorboard/<stage>`` (``TENSORBOARD_LOGGING_DIR``). The environment is restored after each stage.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from crystalwatch.errors import CrystalwatchError
from crystalwatch.recipes.launch import STAGES
from crystalwatch.records import new_trajectory, read_trajectory, report_folder, run_files
from crystalwatch.sinks.base import environment, grouped

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def load_chain(path: str | Path) -> dict[str, Any]:
    """Read and check a chain config; errors name the file and the field. Stage configs come back as paths
    resolved against the chain file's folder."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CrystalwatchError(f"{path}: not valid YAML ({err})".replace("\n", " ")) from None
    if not isinstance(raw, dict) or not raw.get("base") or not raw.get("output_dir"):
        raise CrystalwatchError(f"{path}: a chain config needs 'base' (model) and 'output_dir'")
    stages = raw.get("stages")
    if not isinstance(stages, list) or not stages:
        raise CrystalwatchError(f"{path}: field 'stages' must be a non-empty list of {{recipe, config}}")
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or stage.get("recipe") not in STAGES or not stage.get("config"):
            raise CrystalwatchError(f"{path}: stages[{i}] needs recipe (one of {', '.join(STAGES)}) and config "
                                    "(a path)")  # fmt: skip
        config = path.parent / stage["config"]
        if not config.is_file():
            raise CrystalwatchError(f"{path}: stages[{i}].config {stage['config']}: no such file (a path relative "
                                    "to the chain file's folder)")  # fmt: skip
        stage["config"] = str(config)
        if not isinstance(stage.setdefault("overrides", {}), dict):
            raise CrystalwatchError(f"{path}: stages[{i}].overrides must be a mapping of config fields to values")
    return raw


def stage_args(recipe: str, config: str, overrides: dict[str, Any]) -> tuple:
    """Parse a stage's YAML with its TrlParser, ``overrides`` given as command-line options (so that they are
    checked and post-processed exactly as the YAML's own values are)."""
    from crystalwatch.recipes.common import parse

    argv = ["--config", config]
    for key, value in overrides.items():
        if value is not None:
            argv += [f"--{key}", *(map(str, value) if isinstance(value, (list, tuple)) else [str(value)])]
    return parse(importlib.import_module(f"crystalwatch.recipes.{recipe}").make_parser(), argv)


@contextlib.contextmanager
def tracked(chain: str, stage: str, out: Path) -> Iterator[None]:
    """One stage as part of the chain's experiment in W&B (``grouped``), MLflow and TensorBoard (their
    environment variables; trackio's ``project`` is a training argument, set by :func:`run_chain`). The whole
    environment is restored afterwards, including what the stage's YAML ``env:`` set."""
    env = {"MLFLOW_EXPERIMENT_NAME": chain, "MLFLOW_TAGS": json.dumps({"chain": chain, "stage": stage}),
           "TENSORBOARD_LOGGING_DIR": str(out / "tensorboard" / stage), "TRACKIO_PROJECT": chain}  # fmt: skip
    with grouped(chain, stage), environment(env):
        yield


def seed_library(base: str, out: Path, first: tuple, given: str | None) -> str:
    """The base's seed library: ``given``, or built once per output folder (:func:`run_files`; then reused by
    later chains there). Launched on several processes, the ranks build it together (the scoring is sharded
    across them, in the process group the first stage's arguments set up), the main process saves it, and all
    wait for the file."""
    if given:
        return given
    path = run_files(out)[0]
    training_args = first[1]
    _ = training_args.device  # sets the processes up as the first stage will
    if not path.is_file():
        from crystalwatch import load_model, load_or_build
        from crystalwatch.models import fingerprint
        from crystalwatch.recipes.common import TINY, tiny_model_folder

        model, tokenizer = load_model(tiny_model_folder() if base == TINY else base)
        load_or_build(path if training_args.process_index == 0 else None, model, tokenizer,
                      first[-1].crystalwatch_tasks, model_name=base,
                      provenance=fingerprint(base, model))  # fmt: skip
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return str(path)


def run_chain(chain: str | Path | dict[str, Any], on_stage: Callable[[str, Any], list] | None = None
              ) -> dict[str, Any]:  # fmt: skip
    """Run a chain (a config file, or one read by :func:`load_chain` and changed): build or take the base's
    library, run each stage from the previous stage's output into one trajectory, render the report.

    ``on_stage(stage, callback)`` gives more trainer callbacks for a stage, given its crystalwatch callback (the
    demo's progress display). Returns the trajectory, the report, the stages' outputs, the library, and per stage
    its name, steps, seconds and W&B run folder."""
    chain = load_chain(chain) if not isinstance(chain, dict) else chain
    out = Path(chain["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    name = str(chain.get("run", out.name))
    trajectory = new_trajectory(out)  # a new chain is a new run
    stages = chain["stages"]
    with environment():  # the first stage's settings, for the seed library; a YAML `env:` stays in
        first = stage_args(stages[0]["recipe"], stages[0]["config"], stages[0].get("overrides", {}))
    started = time.perf_counter()
    seeds = seed_library(chain["base"], out, first, chain.get("seeds"))
    library_seconds = time.perf_counter() - started
    model, offset, outputs, done = chain["base"], 0, [], []
    for i, stage in enumerate(stages):
        start = time.perf_counter()
        recipe = importlib.import_module(f"crystalwatch.recipes.{stage['recipe']}")
        overrides = {**stage.get("overrides", {}), "model_name_or_path": model,
                     "output_dir": str(out / stage["recipe"]), "project": name, "crystalwatch_seeds": seeds,
                     "crystalwatch_trajectory": str(trajectory), "crystalwatch_run_name": name,
                     "crystalwatch_step_offset": offset}  # fmt: skip
        more = (lambda watch, stage=stage["recipe"]: on_stage(stage, watch)) if on_stage else None
        with tracked(name, stage["recipe"], out):
            args = stage_args(stage["recipe"], stage["config"], overrides)
            model = recipe.main(*args, last=i == len(stages) - 1, more_callbacks=more)  # the last ends the group
            run = _finish_wandb()
        outputs.append(model)
        step = read_trajectory(trajectory)[-1].step  # the next stage's steps continue from here
        done.append({"name": stage["recipe"], "steps": step - offset, "seconds": time.perf_counter() - start,
                     "wandb_dir": run})  # fmt: skip
        offset = step
    report = None
    if int(os.environ.get("RANK", "0")) == 0:  # launched on several processes: the main one renders the report
        from crystalwatch.report import render_report

        title = chain.get("title") or f"{name}: " + " -> ".join(["base"] + [s["recipe"] for s in stages])
        report = str(render_report(trajectory, report_folder(trajectory), title=title))
    return {"trajectory": str(trajectory), "report": report, "outputs": outputs, "seeds": seeds,
            "library_seconds": library_seconds, "stages": done, "wandb_runs": [s["wandb_dir"] for s in done]}


def _finish_wandb() -> str | None:
    """Finish the stage's W&B run (``trainer.end()`` finishes accelerate's trackers only); None without W&B."""
    if "wandb" not in sys.modules:
        return None
    from crystalwatch.sinks.wandb import finish_stage

    return finish_stage()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m crystalwatch.recipes.tulu3", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--config", required=True, help="chain YAML (recipes/configs/*/chain.yaml)")
    result = run_chain(parser.parse_args(argv).config)
    if result["report"]:
        print(f"trajectory: {result['trajectory']}\nreport: {result['report']}")
    return result


if __name__ == "__main__":
    main()
