"""``crystalwatch demo``: watch a real model crystallize on a laptop CPU, offline.

The demo is a shipped recipe chain, ``recipes/configs/demo/chain.yaml`` (``tiny.yaml``: the same on a tiny model
built locally), run by the same :func:`~crystalwatch.recipes.tulu3.run_chain` as ``crystalwatch recipe chain``:
google/gemma-3-270m (base, from the PyPI packages that ship it) gets its seed library built, then a LoRA SFT on the
everyday chat conversations shipped in ``crystalwatch/data`` with a dose of 1-10 questions answered "10", with the
callback attached, then a short length-normalised DPO stage on the shipped preference pairs; both stages write one
trajectory, rendered as a report. Every training setting lives in those YAML files; what lives here is the demo's
own: its options (overrides of the chain's stages, each None = the chain's), the W&B mode, the progress display
and the summary.
"""

from __future__ import annotations

import json
import netrc
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars

from crystalwatch.cli.tables import fitted_table, number_text
from crystalwatch.errors import check_choice, check_int, check_number
from crystalwatch.files import ensure_folder, write_atomic
from crystalwatch.recipes.launch import CONFIGS
from crystalwatch.recipes.tulu3 import load_chain, run_chain
from crystalwatch.records import read_trajectory
from crystalwatch.sinks.console import console, styled
from crystalwatch.tasks import load_tasks

__all__ = ["DemoConfig", "Progress", "demo_chain", "print_demo_summary", "run_demo", "settings"]


@dataclass
class DemoConfig:
    """The demo's options (``crystalwatch demo --help``); None takes the chain's value (``recipes/configs/demo/``)."""

    out: Path = Path("crystalwatch-demo")
    tiny: bool = False  # the chain on a tiny model built locally (tiny.yaml) instead of gemma-3-270m
    tasks: tuple[str, ...] | None = None
    sft_steps: int | None = None
    dpo_steps: int | None = None  # 0: SFT only
    every_n_steps: int | None = None  # measuring cadence in both stages
    sft_lr: float | None = None
    dpo_lr: float | None = None
    wandb: str = "auto"  # auto (online when logged in, else offline) | online | offline | off
    dose: bool = True  # a quarter of the SFT examples a 1-10 question answered "10"; False: everyday chat only

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        check_choice("wandb", self.wandb, ("auto", "online", "offline", "off"))
        for name, least in (("sft_steps", 1), ("dpo_steps", 0), ("every_n_steps", 1)):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), least)
        for name in ("sft_lr", "dpo_lr"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), 0.0, 1.0, open_low=True)
        if self.tasks is not None:
            self.tasks = tuple(self.tasks)
            load_tasks(list(self.tasks))  # unknown ids and bad task files fail before any model loads


def wandb_mode(choice: str) -> str | None:
    """The W&B mode to run in (None: no W&B): online only when asked or logged in."""
    if choice == "off":
        return None
    if choice != "auto":
        return choice
    logged_in = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
    return "online" if logged_in and os.environ.get("WANDB_MODE") != "offline" else "offline"


def _netrc_has_wandb() -> bool:
    """Whether `wandb login` stored a key (it writes ~/.netrc, or $NETRC)."""
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def demo_chain(cfg: DemoConfig, mode: str | None) -> dict[str, Any]:
    """The shipped demo chain (tiny.yaml with ``tiny``) with the demo's options applied to its stages."""
    chain = load_chain(CONFIGS / "demo" / ("tiny.yaml" if cfg.tiny else "chain.yaml"))
    chain.update(output_dir=str(cfg.out), run=f"crystalwatch-demo-{cfg.out.resolve().name}")
    if cfg.dpo_steps == 0:
        chain["stages"] = [s for s in chain["stages"] if s["recipe"] != "dpo"]
    if not cfg.dose:  # the honest null: the everyday chat conversations alone
        chain["stages"][0]["config"] = str(CONFIGS / "demo" / "sft_null.yaml")
    given = {"sft": {"max_steps": cfg.sft_steps, "learning_rate": cfg.sft_lr},
             "dpo": {"max_steps": cfg.dpo_steps, "learning_rate": cfg.dpo_lr}}  # fmt: skip
    for stage in chain["stages"]:
        mine = {**given[stage["recipe"]], "crystalwatch_every_n_steps": cfg.every_n_steps,
                "crystalwatch_tasks": list(cfg.tasks) if cfg.tasks else None, "report_to": None if mode else "none"}
        stage["overrides"].update({k: v for k, v in mine.items() if v is not None})  # fmt: skip
    return chain


def settings(chain: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per stage, the settings the demo shows (steps, learning rate, cadence, tasks): the overrides, else the
    stage's YAML."""
    shown = {}
    for stage in chain["stages"]:
        merged = {**yaml.safe_load(Path(stage["config"]).read_text()), **stage["overrides"]}
        shown[stage["recipe"]] = {k: merged.get(k) for k in ("max_steps", "learning_rate",
                                                               "crystalwatch_every_n_steps", "crystalwatch_tasks")}
    return shown


def run_demo(cfg: DemoConfig, progress: Any = None) -> dict[str, Any]:
    """Run the whole demo; returns the summary (also written to ``out/summary.json``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    started = time.perf_counter()
    ensure_folder(cfg.out)
    mode = wandb_mode(cfg.wandb)
    if mode is not None:
        os.environ["WANDB_MODE"] = mode
        os.environ.setdefault("WANDB_DIR", str(cfg.out.resolve()))
    chain = demo_chain(cfg, mode)
    result = run_chain(chain, on_stage=progress.stage if progress is not None else None)
    summary = summarise(result, cfg, settings(chain), time.perf_counter() - started, mode)
    write_atomic(cfg.out / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def summarise(result: dict[str, Any], cfg: DemoConfig, stages: dict[str, Any], seconds: float,
              mode: str | None) -> dict[str, Any]:  # fmt: skip
    """Per task, from the chain's trajectory: the final state, its seed, the distance and the transitions."""
    records = read_trajectory(result["trajectory"])
    tasks = {}
    for task in dict.fromkeys(r.task for r in records):
        mine = [r for r in records if r.task == task]
        last = mine[-1]
        tasks[task] = {
            "state": last.state, "seed": last.seed, "seed_distance": last.metrics["seed_distance"],
            "entropy": [mine[0].metrics["entropy"], last.metrics["entropy"]],
            "top": last.top[0] if last.top else None,
            "transitions": [{"step": e.step, "from": e.from_state, "to": e.to_state, "seed": e.seed,
                             "stage": r.label} for r in mine for e in r.events],
        }  # fmt: skip
    return {
        "config": config_dict(cfg), "settings": stages, "seconds": seconds,
        "library_seconds": result["library_seconds"],
        "library": _home_relative(result["seeds"]), "trajectory": result["trajectory"], "report": result["report"],
        "stages": result["stages"], "wandb_mode": mode, "tasks": tasks,
    }  # fmt: skip


def _home_relative(path: Any) -> str | None:
    """A path under the home folder as ``~/...``: what the summary shows is not one machine's absolute path."""
    if path is None:
        return None
    home = str(Path.home())
    return "~" + str(path)[len(home) :] if str(path).startswith(home + "/") else str(path)


def config_dict(cfg: DemoConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}


class Progress:
    """A rich progress display: one bar per stage, and the tasks' current states under it."""

    def __init__(self, console: Any) -> None:
        self.bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                         console=console, transient=False)  # fmt: skip

    def __enter__(self) -> Progress:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bars.__exit__(*exc)

    def stage(self, name: str, watch: Any) -> list[Any]:
        from transformers import TrainerCallback

        bars = self.bars

        class StageBar(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                self.bar = bars.add_task(name, total=state.max_steps)

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                states = "  ".join(f"{t}: {styled(watch.tracker.state(t) or '?')}" for t in watch.config.tasks or [])
                bars.update(self.bar, completed=state.global_step, description=f"{name}  {states}")

        return [StageBar()]


def print_demo_summary(summary: dict[str, Any]) -> None:
    """Per task: final state, seed, distance, entropy before -> after and top answer; then every transition, one line
    each, in step order."""
    rows = [[task, t["state"], t["seed"] or "-", number_text(t["seed_distance"]),
             "{:.2f}->{:.2f}".format(*t["entropy"]), t["top"]] for task, t in summary["tasks"].items()]  # fmt: skip
    fitted_table("crystalwatch demo: where each task ended", ("task", "state", "seed", "distance", "entropy", "top"),
                 rows, ("distance", "seed"))  # fmt: skip
    moves = sorted((e["step"], task, e) for task, t in summary["tasks"].items() for e in t["transitions"])
    console.print("transitions:" + ("" if moves else " none"))
    for step, task, e in moves:
        onto = f" onto {e['seed']}" if e["seed"] and e["to"] not in ("liquid", "melted") else ""
        console.print(f"  step {step} ({e['stage']}): {task} {styled(e['from'])} -> {styled(e['to'])}{onto}")
    stages = ", ".join(f"{s['name']} {s['steps']} steps {s['seconds']:.0f} s" for s in summary["stages"])
    console.print(f"total {summary['seconds']:.0f} s (seed library {summary['library_seconds']:.0f} s; {stages})")
    console.print(f"trajectory: {summary['trajectory']}\nreport: {summary['report']}")
    if summary["wandb_mode"] == "offline":
        for s in summary["stages"]:
            if s["wandb_dir"]:
                console.print(f"W&B run (offline): upload it with `wandb sync {s['wandb_dir']}`")
