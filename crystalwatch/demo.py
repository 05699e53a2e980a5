"""``crystalwatch demo``: watch a real model crystallize on a laptop CPU, offline, in about 15 minutes.

The demo is a shipped recipe chain, ``recipes/configs/demo/chain.yaml``, run by the same
:func:`~crystalwatch.recipes.tulu3.run_chain` as ``crystalwatch recipe chain``: google/gemma-3-270m (base, from
the PyPI packages that ship it) gets its seed library built, then a LoRA SFT on the 349 everyday chat
conversations shipped in ``crystalwatch/data`` with the callback attached, then a short length-normalised DPO
stage on the shipped preference pairs; both stages write one trajectory, rendered as a report. What is the
demo's own lives here: its options (as overrides of the chain's stages), the W&B mode, the progress display
and the summary. ``tiny=True`` runs the same chain on a locally built tiny model in well under a minute (CI
runs it).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crystalwatch.errors import check_choice, check_int
from crystalwatch.files import ensure_folder, write_atomic
from crystalwatch.tasks import load_tasks

DEMO_TASKS = ("integer_1_10", "coin_flip", "rainbow_colour", "weekday", "rock_paper_scissors")


@dataclass
class DemoConfig:
    """Settings of the demo (``crystalwatch demo --help`` shows them as options); the rest of the training
    settings are the chain's (``recipes/configs/demo/``)."""

    out: Path = Path("crystalwatch-demo")
    tiny: bool = False  # a locally built tiny model instead of gemma-3-270m
    tasks: tuple[str, ...] = DEMO_TASKS
    sft_steps: int = 100
    dpo_steps: int = 14
    every_n_steps: int = 20  # measuring cadence in both stages
    sft_lr: float = 2e-4
    dpo_lr: float = 5e-5
    wandb: str = "auto"  # auto (online when logged in, else offline) | online | offline | off
    dose: bool = True  # a quarter of the SFT examples a 1-10 question answered "10"; False: everyday chat only

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.tasks = tuple(self.tasks)
        check_choice("wandb", self.wandb, ("auto", "online", "offline", "off"))
        check_int("sft_steps", self.sft_steps, 1)
        check_int("dpo_steps", self.dpo_steps, 0)
        check_int("every_n_steps", self.every_n_steps, 1)
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
    import netrc

    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def demo_chain(cfg: DemoConfig, mode: str | None) -> dict[str, Any]:
    """The shipped demo chain with the demo's options applied to its stages."""
    from crystalwatch.recipes.common import TINY
    from crystalwatch.recipes.launch import CONFIGS
    from crystalwatch.recipes.tulu3 import load_chain

    chain = load_chain(CONFIGS / "demo" / "chain.yaml")
    chain.update(output_dir=str(cfg.out), run=f"crystalwatch-demo-{cfg.out.resolve().name}")
    if cfg.tiny:
        chain["base"] = TINY
    steps, lrs = {"sft": cfg.sft_steps, "dpo": cfg.dpo_steps}, {"sft": cfg.sft_lr, "dpo": cfg.dpo_lr}
    chain["stages"] = [s for s in chain["stages"] if steps[s["recipe"]]]  # --dpo-steps 0: SFT only
    if not cfg.dose:  # the honest null: the everyday chat conversations alone
        chain["stages"][0]["config"] = str(CONFIGS / "demo" / "sft_null.yaml")
    for stage in chain["stages"]:
        stage["overrides"].update(max_steps=steps[stage["recipe"]], learning_rate=lrs[stage["recipe"]],
                                  crystalwatch_every_n_steps=cfg.every_n_steps, crystalwatch_tasks=list(cfg.tasks),
                                  **({} if mode else {"report_to": "none"}))  # fmt: skip
    return chain


def run_demo(cfg: DemoConfig, progress: Any = None) -> dict[str, Any]:
    """Run the whole demo; returns the summary (also written to ``out/summary.json``)."""
    from crystalwatch.recipes.tulu3 import run_chain

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    started = time.perf_counter()
    ensure_folder(cfg.out)
    mode = wandb_mode(cfg.wandb)
    if mode is not None:
        os.environ["WANDB_MODE"] = mode
        os.environ.setdefault("WANDB_DIR", str(cfg.out.resolve()))
    result = run_chain(demo_chain(cfg, mode), on_stage=progress.stage if progress is not None else None)
    summary = summarise(result, cfg, time.perf_counter() - started, mode)
    write_atomic(cfg.out / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def summarise(result: dict[str, Any], cfg: DemoConfig, seconds: float, mode: str | None) -> dict[str, Any]:
    """Per task, from the chain's trajectory: the final state, its seed, the distance and the transitions."""
    from crystalwatch.records import read_trajectory

    records = read_trajectory(result["trajectory"])
    tasks = {}
    for task in cfg.tasks:
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
        "config": config_dict(cfg), "seconds": seconds, "library_seconds": result["library_seconds"],
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
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        self.bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                         console=console, transient=False)  # fmt: skip

    def __enter__(self) -> Progress:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bars.__exit__(*exc)

    def stage(self, name: str, watch: Any) -> list[Any]:
        from transformers import TrainerCallback

        from crystalwatch.sinks.console import styled

        bars = self.bars

        class StageBar(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                self.bar = bars.add_task(name, total=state.max_steps)

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                states = "  ".join(f"{t}: {styled(watch.tracker.state(t) or '?')}" for t in watch.config.tasks or [])
                bars.update(self.bar, completed=state.global_step, description=f"{name}  {states}")

        return [StageBar()]
