"""What the recipes share: the crystalwatch settings dataclass (a TrlParser section) and the callback it builds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecipeScriptArguments:
    """Where the data comes from: a hub data set, or local JSON-lines files (offline smoke runs)."""

    dataset_name: str | None = field(default=None, metadata={"help": "Hub data set id."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub data set configuration."})
    dataset_files: list[str] | None = field(default=None, metadata={"help": "Local JSON-lines files instead."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    max_samples: int | None = field(default=None, metadata={"help": "Subset: the first N examples."})


@dataclass
class CrystalWatchArguments:
    """The ``crystalwatch`` section of a recipe config (TrlParser reads it like TRL's own dataclasses)."""

    crystalwatch_seeds: str | None = field(
        default=None,
        metadata={"help": "Seed library of the BASE model (`crystalwatch seeds build`, once); None builds one "
                  "from the starting model at train begin."},
    )  # fmt: skip
    crystalwatch_tasks: list[str] | None = field(default=None, metadata={"help": "Task ids; None: the library's."})
    crystalwatch_every_n_steps: int | None = field(
        default=None, metadata={"help": "Measure every N steps; None: adaptive (budget)."}
    )
    crystalwatch_budget: float = field(default=0.02, metadata={"help": "Adaptive cadence: share of training time."})
    crystalwatch_label: str = field(default="", metadata={"help": "Stage label in the trajectory (sft, dpo, rlvr)."})
    crystalwatch_trajectory: str | None = field(
        default=None, metadata={"help": "Trajectory file; a chain passes one file to every stage."}
    )
    crystalwatch_run: str | None = field(default=None, metadata={"help": "Run name in the trajectory records."})
    crystalwatch_step_offset: int = field(default=0, metadata={"help": "Added to the steps (chained stages)."})
    crystalwatch_enabled: bool = field(default=True, metadata={"help": "Attach the callback at all."})


def callbacks(args: CrystalWatchArguments) -> list[Any]:
    """The callback list for a trainer (empty when disabled)."""
    if not args.crystalwatch_enabled:
        return []
    from crystalwatch import CrystalWatchCallback

    return [
        CrystalWatchCallback(
            args.crystalwatch_seeds, tasks=args.crystalwatch_tasks, every_n_steps=args.crystalwatch_every_n_steps,
            budget=args.crystalwatch_budget, label=args.crystalwatch_label, trajectory=args.crystalwatch_trajectory,
            run_name=args.crystalwatch_run, step_offset=args.crystalwatch_step_offset,
        )
    ]  # fmt: skip


def load_split(args: RecipeScriptArguments) -> Any:
    """A hub data set (``dataset_name``) or local JSON-lines files (``dataset_files``), cut to ``max_samples``."""
    from datasets import load_dataset

    if args.dataset_files:
        data = load_dataset("json", data_files=args.dataset_files, split="train")
    elif args.dataset_name:
        data = load_dataset(args.dataset_name, name=args.dataset_config, split=args.dataset_train_split)
    else:
        raise ValueError("set dataset_name (a hub data set) or dataset_files (local JSON lines) in the config")
    if args.max_samples is not None:
        data = data.shuffle(seed=0).select(range(min(args.max_samples, len(data))))
    return data


TINY = "crystalwatch-tiny"  # a model name the smoke configs use: a tiny Llama built locally, no download


def tiny_model_folder() -> str:
    """Build (once) and save the tiny Llama and its tokenizer; return the folder."""
    from crystalwatch.models import cache_dir
    from crystalwatch.tiny import build_model, build_tokenizer, save

    folder = cache_dir() / "tiny" / "llama-seed0"
    if not (folder / "config.json").is_file():
        tokenizer = build_tokenizer()
        save(build_model("llama", len(tokenizer), seed=0), tokenizer, folder)
    return str(folder)


def model_kwargs(training_args: Any, model_args: Any) -> None:
    """Resolve ``crystalwatch-tiny``; pass the model's revision and dtype to the trainer, which loads the model."""
    if model_args.model_name_or_path == TINY:
        model_args.model_name_or_path = tiny_model_folder()
    training_args.model_init_kwargs = {"revision": model_args.model_revision, "dtype": model_args.dtype,
                                       **(training_args.model_init_kwargs or {})}  # fmt: skip


def run_stage(trainer_cls: type, script_args: Any, training_args: Any, model_args: Any, cw_args: Any,
              data: Any = None, **trainer_kwargs: Any) -> str:  # fmt: skip
    """Build the TRL trainer from the parsed sections, train with crystalwatch attached, save; return the folder."""
    from trl import get_peft_config

    model_kwargs(training_args, model_args)
    trainer = trainer_cls(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=load_split(script_args) if data is None else data,
        peft_config=get_peft_config(model_args),
        callbacks=callbacks(cw_args),
        **trainer_kwargs,
    )
    return train_and_save(trainer, training_args, model_args)


def train_and_save(trainer: Any, training_args: Any, model_args: Any) -> str:
    """Train; merge a LoRA so the next stage starts from a plain model; save model and tokenizer."""
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    if model_args.use_peft:
        trainer.model = trainer.model.merge_and_unload()
    trainer.save_model(training_args.output_dir)
    trainer.processing_class.save_pretrained(training_args.output_dir)
    return training_args.output_dir


def make_parser(config_type: type, name: str, help: str, subparsers: Any = None, prog: str | None = None) -> Any:
    """TrlParser over (data, TRL config, model, crystalwatch) sections, or a subcommand of ``subparsers``."""
    from trl import ModelConfig, TrlParser

    types = (RecipeScriptArguments, config_type, ModelConfig, CrystalWatchArguments)
    if subparsers is not None:
        return subparsers.add_parser(name, help=help, dataclass_types=types)
    return TrlParser(types, prog=prog)
