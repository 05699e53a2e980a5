"""The CLI's tables: measurements, seed libraries, one-shot verdicts and the demo summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rich import box
from rich.cells import cell_len
from rich.table import Table

from crystalwatch.metrics import temperature_text
from crystalwatch.sinks.console import console
from crystalwatch.sinks.console import styled as state


def _top(names: Sequence[str], p: np.ndarray, n: int = 3) -> str:
    order = np.argsort(-np.asarray(p), kind="stable")[:n]
    return "  ".join(f"{names[i]} {p[i]:.2f}" for i in order)


def number_text(x: Any, fmt: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, fmt)


def print_measurement(result: Any) -> None:
    """One table per task: per-variant coverage and top answers, then the task metrics."""
    for tid, r in result.tasks.items():
        m = r.metrics
        title = (
            f"{tid} ({r.kind} prompts, {result.estimator}, terminators={result.terminators}): "
            f"entropy {m['entropy']:.2f}  diversity {m['diversity']:.2f}  coverage {m['coverage']:.3g}"
        )
        table = Table(title=title, title_justify="left")
        for col, justify in (("variant", "left"), ("coverage", "right"), ("top answers", "left")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        names = r.task.outcome_names
        for v in r.variants:
            table.add_row(v.request.variant, f"{v.coverage:.3g}", _top(names, v.probs))
        table.add_row("[bold]consensus[/bold]", "", _top(names, r.consensus))
        console.print(table)


def print_library(library: Any, tasks: Sequence[str] | None = None) -> None:
    """The provenance, then per task its seeds: weight, members, top outcomes of the centroid."""
    p = library.provenance
    console.print(
        f"[bold]seed library[/bold] {p.get('path', '')}  model {p.get('model', '?')}  ({p.get('estimator')}, "
        f"terminators {p.get('terminators')}, prompts {', '.join(p.get('kinds', []))}, "
        f"cluster threshold {p.get('cluster', {}).get('threshold')} bits; built {p.get('created')} "
        f"with crystalwatch {p.get('package_version')})"
    )
    table = Table(title_justify="left")
    table.add_column("task")
    table.add_column("seed")
    table.add_column("weight", justify="right")
    table.add_column("top outcomes", no_wrap=True)
    table.add_column("members (prompt kind/variant)")
    for tid, t in library.tasks.items():
        if tasks and tid not in tasks:
            continue
        for i, s in enumerate(t.seeds):
            head = f"{tid}\n[dim]{len(t.seeds)} seeds, base diversity {t.base['all']['diversity']:.2f}[/dim]"
            table.add_row(head if i == 0 else "", s.id, f"{s.weight:.2f}", _top(t.outcomes, s.centroid),
                          f"{len(s.members)}: " + ", ".join(s.members))  # fmt: skip
        table.add_section()
    console.print(table)


VERDICT_NOTE = (
    "One checkpoint has no history: it can tell liquid, nucleating, nucleated (collapsed near a seed), foreign, "
    "polycrystalline and no_signal, not settling vs settled (they need velocity) nor a remelt. "
    "Use `crystalwatch trajectory` for those."
)


def fitted_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], droppable: Sequence[str],
            left: Sequence[str] = ("task", "state", "seed", "top")) -> None:
    """Print a table whose every cell is whole: on a terminal too narrow for every column, the ``droppable`` ones are
    left out in that order (and named below the table) rather than any cell cut to an ellipsis."""
    widths = {c: max([cell_len(c)] + [cell_len(str(r[i])) for r in rows]) for i, c in enumerate(columns)}
    shown = list(columns)
    for col in droppable:
        if sum(widths[c] + 3 for c in shown) - 3 <= console.width:  # each column: 2 of padding, 1 rule
            break
        shown.remove(col)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in shown:
        table.add_column(col, justify="left" if col in left else "right", no_wrap=True)
    for row in rows:
        cells = dict(zip(columns, row))
        table.add_row(*(state(cells[c]) if c == "state" else str(cells[c]) for c in shown))
    console.print(table)
    if len(shown) < len(columns):
        left_out = ", ".join(c for c in columns if c not in shown)
        console.print(f"[dim](to fit {console.width} columns, left out: {left_out})[/dim]")


VERDICT_COLUMNS = (
    "task", "state", "seed", "distance", "margin", "support", "T", "tempered", "p", "collapse", "coverage",
)  # fmt: skip


def print_verdicts(verdicts: dict[str, dict[str, Any]], title: str) -> None:
    """One row per task: state, nearest seed and the seed metrics (all of them in ``--json``)."""
    rows = []
    for tid, v in verdicts.items():
        m = v["metrics"]
        numbers = [number_text(m.get(k), f) for k, f in (("seed_distance", ".3f"), ("seed_margin", ".3f"),
                   ("seed_support_mass", ".2f"))] + [temperature_text(m)] + [number_text(m.get(k), f) for k, f in
                   (("tempered_distance", ".3f"), ("seed_pvalue", ".2g"), ("collapse", ".2f"), ("coverage", ".3g"))]
        rows.append([tid, v["state"], v["seed"] or "-", *numbers])  # fmt: skip
    fitted_table(title, VERDICT_COLUMNS, rows, ("support", "p", "margin", "tempered", "T"))
