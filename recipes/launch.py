"""Run a recipe from the installed package: shipped configs by name, accelerate configs by name, the launch.

Nothing here imports torch or TRL: ``crystalwatch recipe`` resolves its options first (a wrong name is one
line and exit code 2), then either runs the recipe in this process or re-launches it under
``accelerate launch``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from crystalwatch.errors import CrystalwatchError, did_you_mean

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
ACCELERATE_CONFIGS = HERE / "accelerate_configs"
MODULES = {"sft": "sft", "dpo": "dpo", "grpo": "grpo", "chain": "tulu3"}  # recipe -> crystalwatch.recipes.<module>
STAGES = tuple(r for r in MODULES if r != "chain")  # the recipes a chain's stages name


def config_names() -> list[str]:
    """The shipped configs, named ``<model>/<recipe>`` (``smoke/chain``, ``olmo2-1b/sft``, ...)."""
    return sorted(f"{p.parent.name}/{p.stem}" for p in CONFIGS.glob("*/*.yaml"))


def accelerate_config_names() -> list[str]:
    return sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml"))


def resolve_config(value: str, recipe: str | None = None) -> Path:
    """A config file: ``value`` itself when it is a file, else the shipped config of that name (``smoke/sft``;
    with the recipe known, the model folder alone: ``smoke``)."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    name, names = value.removesuffix(".yaml").removesuffix(".yml"), config_names()
    if recipe is not None and f"{name}/{recipe}" in names:  # a model's folder alone: `--config smoke` for a chain
        name = f"{name}/{recipe}"
    if name in names:
        kind = name.rsplit("/", 1)[1]
        if recipe is not None and kind != recipe:
            raise CrystalwatchError(f"--config {value} is a {kind} config; run `crystalwatch recipe {kind} "
                                    f"--config {value}`")  # fmt: skip
        return CONFIGS / f"{name}.yaml"
    if path.suffix in (".yaml", ".yml"):
        raise CrystalwatchError(f"--config {value}: no such file{did_you_mean(name, names)}")
    raise CrystalwatchError(f"--config {value}: neither a file nor a shipped config{did_you_mean(name, names)}; "
                            f"the shipped configs: {', '.join(names)}")  # fmt: skip


def resolve_accelerate_config(value: str) -> Path:
    """An accelerate config file: a shipped one by name (ddp, fsdp2, zero2, zero3) or a path."""
    names = accelerate_config_names()
    if value in names:
        return ACCELERATE_CONFIGS / f"{value}.yaml"
    path = Path(value).expanduser()
    if path.is_file():
        return path
    raise CrystalwatchError(f"--accelerate-config {value}: neither a file nor a shipped config"
                            f"{did_you_mean(value, names)}; use one of {', '.join(names)} or a path")  # fmt: skip


def launch_command(recipe: str, config: Path, accelerate_config: Path, num_processes: int | None = None,
                   extra: list[str] | None = None) -> list[str]:  # fmt: skip
    """``accelerate launch --config_file ... [--num_processes N] -m crystalwatch.recipes.<module> --config ...``
    (accelerate's launcher run as a module of this interpreter, so that it is the same environment)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config)]
    if num_processes is not None:
        command += ["--num_processes", str(num_processes)]
    return command + ["-m", f"crystalwatch.recipes.{MODULES[recipe]}", "--config", str(config), *(extra or [])]


def run_here(recipe: str, config: Path, extra: list[str] | None = None) -> Any:
    """Run the recipe in this process, as ``python -m crystalwatch.recipes.<module> --config ...`` does."""
    module = importlib.import_module(f"crystalwatch.recipes.{MODULES[recipe]}")
    argv = ["--config", str(config), *(extra or [])]
    if recipe == "chain":
        return module.main(argv)
    from crystalwatch.recipes.common import parse

    return module.main(*parse(module.make_parser(), argv))
