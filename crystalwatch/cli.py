"""The ``crystalwatch`` command: list tasks, measure a model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Watch a language model crystallize.")
console = Console()


def _task_list(tasks: str | None) -> list[str] | None:
    return None if not tasks else [t.strip() for t in tasks.split(",") if t.strip()]


@app.command("tasks")
def tasks_command(
    tasks: Annotated[str | None, typer.Option(help="Comma-separated ids or YAML paths (default: built-in).")] = None,
) -> None:
    """List tasks: id, number of outcomes, number of completion and chat prompts."""
    from crystalwatch.tasks import TaskSpecError, load_tasks

    try:
        loaded = load_tasks(_task_list(tasks))
    except TaskSpecError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
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
) -> None:
    """Measure a model's answer distributions on tasks and print a table per task."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from crystalwatch.measure import measure
    from crystalwatch.models import ModelLoadError, load_model
    from crystalwatch.tasks import TaskSpecError, load_tasks

    try:
        loaded = load_tasks(_task_list(tasks))
        with console.status(f"loading {model}"):
            lm, tokenizer = load_model(model, dtype=dtype, device=device)
        with console.status(f"measuring {len(loaded)} task(s) with the {estimator} estimator"):
            result = measure(
                lm, tokenizer, loaded, kind=kind, estimator=estimator, terminators=terminators,  # type: ignore[arg-type]
                samples=samples, seed=seed, model_name=model,
            )  # fmt: skip
    except (TaskSpecError, ModelLoadError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    print_measurement(result)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.to_json(), indent=1, ensure_ascii=False))
        console.print(f"audit JSON written to {json_out}")


def print_measurement(result: object) -> None:
    """One rich table per task: per-variant coverage and top answers, then the task metrics."""
    from crystalwatch.measure import Measurement

    assert isinstance(result, Measurement)
    for tid, r in result.tasks.items():
        m = r.metrics
        title = (
            f"{tid} ({r.kind} prompts, {result.estimator}, terminators={result.terminators}): "
            f"entropy {m['entropy']:.2f}  diversity {m['diversity']:.2f}  coverage {m['coverage']:.3g}"
        )
        table = Table(title=title, title_justify="left")
        table.add_column("variant")
        table.add_column("coverage", justify="right")
        table.add_column("top answers")
        names = r.task.outcome_names
        for v in r.variants:
            top = sorted(zip(names, v.probs), key=lambda x: -x[1])[:3]
            table.add_row(v.request.variant, f"{v.coverage:.3g}", "  ".join(f"{n} {p:.2f}" for n, p in top))
        table.add_row("[bold]consensus[/bold]", "", "  ".join(f"{n} {p:.2f}" for n, p in r.top(3)))
        console.print(table)


if __name__ == "__main__":
    app()
