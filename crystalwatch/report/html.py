"""The report's index.html: summary table (last measurement per task and run), timeline and per-task figures."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from crystalwatch.records import Record
from crystalwatch.report.data import Runs, _colour, _num, _transitions

# The summary's metrics: how sharp and how far it moved (the phase table in W&B and the trajectory have all of them).
SUMMARY_METRICS = ("collapse", "entropy", "diversity", "coverage", "seed_distance", "seed_evidence")
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.wide { overflow-x: auto; } td.moves { font-size: 0.85em; min-width: 16em; }
img { max-width: 100%; } section { margin-top: 2.5em; border-top: 1px solid #ddd; }
.meta { color: #555; } .state { font-weight: 600; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    v = _num(value)
    return "–" if math.isnan(v) else f"{v:.3g}"


def _state_cell(state: str) -> str:
    rgb = _colour(state).lstrip("#")
    dark = sum(int(rgb[i : i + 2], 16) * w for i, w in zip((0, 2, 4), (0.299, 0.587, 0.114))) < 128
    style = f"background:{_colour(state)};color:{'#fff' if dark else '#000'}"
    return f'<td class="state" style="{style}">{_esc(state)}</td>'


def _top_outcome(record: Record) -> str:
    probs = [_num(v) for v in record.consensus]
    if not probs or all(math.isnan(p) for p in probs):
        return "–"
    best = int(np.nanargmax(probs))
    return f"{record.outcomes[best]} ({probs[best]:.2f})"


def _checkpoints(records: list[Record]) -> str:
    """'base @0, sft @100, ...' for the labelled measurements of the runs whose labels change (a checkpoint ladder, a
    chain of stages); '' when every run has one label throughout (its stage or its arm: said by the run's name)."""
    labels: dict[str, set[str]] = {}
    for r in records:
        labels.setdefault(r.run, set()).add(r.label or "")
    ladders = {run for run, names in labels.items() if len(names) > 1}
    seen = dict.fromkeys((r.run, r.index, r.step, r.label) for r in records if r.label and r.run in ladders)
    return ", ".join(f"{label} @{step}" for _, _, step, label in sorted(seen, key=lambda k: k[:2]))


def _summary_rows(tasks: dict[str, Runs], slugs: dict[str, str], several: bool) -> list[str]:
    rows = []
    for task, runs in tasks.items():
        for run, recs in runs.items():
            last = recs[-1]
            metrics = last.metrics or {}
            cells = [f'<td><a href="#task-{_esc(slugs[task])}">{_esc(task)}</a></td>']
            cells += [f"<td>{_esc(run)}</td>"] if several else []
            cells += [_state_cell(last.state), f"<td>{_esc(last.get('seed') or '–')}</td>"]
            cells.append(f"<td>{_esc(_top_outcome(last))}</td>")
            cells += [f'<td class="num">{_fmt(metrics.get(m))}</td>' for m in SUMMARY_METRICS]
            cells.append(f"<td class='moves'>{_esc(', '.join(_transitions(recs)) or '–')}</td>")
            rows.append(f"<tr>{''.join(cells)}</tr>")
    return rows


def _img(name: str, alt: str) -> str:
    return f"<img src='{_esc(name)}' alt='{_esc(alt)}'>"


def page(records: list[Record], tasks: dict[str, Runs], images: dict[str, Any], run_names: list[str],
          title: str | None) -> str:  # fmt: skip
    several = len(run_names) > 1
    slugs = images["slugs"]
    title = title or f"crystalwatch report: {', '.join(run_names)}"
    measurements = len({(r.run, r.index) for r in records})
    models = list(dict.fromkeys(str(r.model) for r in records if r.model))
    times = sorted(r.time for r in records if r.time)
    checkpoints = _checkpoints(records)
    span = f" from {_esc(times[0])} to {_esc(times[-1])}" if times else ""
    head = ["task", *(["run"] if several else []), "final state", "seed", "top outcome", *SUMMARY_METRICS,
            "transitions"]  # fmt: skip
    head = [h.replace("_", " ") for h in head]  # seed distance: a header that can wrap
    parts = [
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p class='meta'>Run{'s' if several else ''}: <b>{_esc(', '.join(run_names))}</b> · "
        f"{measurements} measurement{'s' if measurements != 1 else ''} of {len(tasks)} task(s){span} · "
        f"model{'s' if len(models) != 1 else ''}: {_esc(', '.join(models) or 'unknown')}</p>",
        f"<p class='meta'>Checkpoints: {_esc(checkpoints)}</p>" if checkpoints else "",
        "<h2>Summary (last measurement)</h2><div class='wide'><table>",
        "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>",
        *_summary_rows(tasks, slugs, several),
        "</table></div>",
        "<h2>Phase timeline</h2>",
        *(_img(name, f"phase timeline of {run}") for run, name in images["timelines"].items()),
    ]
    for task, files in images["tasks"].items():
        parts += [f"<section id='task-{_esc(slugs[task])}'><h2>{_esc(task)}</h2>",
                  _img(files["answers"], f"answers of {task} over steps"), _img(files["plot"], task)]
        parts += [_img(name, f"last distribution of {task} ({run})") for run, name in files["bars"].items()]
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
