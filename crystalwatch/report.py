"""Render a trajectory (docs/trajectory.md) into PNG plots and a self-contained ``index.html``.

The report shows a phase timeline of all tasks (one per run), then per task a plot of the metrics over steps
(background shaded by phase state, transitions marked) and a bar chart of the last consensus against its nearest
seed. Usage: ``render_report("run.jsonl", "report/")`` returns ``report/index.html``.

Figures are built with :class:`matplotlib.figure.Figure` on the Agg canvas: no pyplot state, no display.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import IO, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter, ScalarFormatter
from matplotlib.transforms import blended_transform_factory
from PIL import Image

from crystalwatch.files import ensure_folder, write_atomic
from crystalwatch.metrics import temperature_text
from crystalwatch.sinks.jsonl import read_trajectory

__all__ = ["STATE_COLOURS", "bars_png", "render_report"]

STATE_COLOURS = {
    "liquid": "#9ecae1",
    "nucleating": "#fee391",
    "nucleated": "#fdae6b",
    "settling": "#f16913",
    "settled": "#a63603",
    "foreign": "#9e9ac8",
    "polycrystalline": "#74c476",
    "no_signal": "#bdbdbd",
}
OTHER_COLOUR = "#636363"  # a state this module does not know
MISSING_COLOUR = "#ffffff"  # no measurement at that step (timeline)
PANELS = (  # (title, primary metric, secondary metric or None, log y)
    ("entropy", "entropy", None, False),
    ("diversity / collapse (dashed)", "diversity", "collapse", False),
    ("seed distance / tempered distance (dashed)", "seed_distance", "tempered_distance", False),
    ("temperature", "temperature", None, True),
)
TABLE_METRICS = ("seed_distance", "temperature", "entropy", "diversity", "coverage", "collapse")
TOP_OUTCOMES = 12
DPI = 100

Runs = dict[str, list[dict[str, Any]]]  # run -> its records for one task, sorted by index


def render_report(trajectory: str | Path | list[dict], out_dir: str | Path, *, title: str | None = None) -> Path:
    """Render PNGs + index.html for a trajectory (path or list of records); return the index.html path."""
    records = list(trajectory) if isinstance(trajectory, list) else read_trajectory(trajectory)
    if not records:
        raise ValueError("the trajectory has no records: nothing to report (was the run measured at least once?)")
    out = ensure_folder(out_dir)
    tasks = _group(records)
    run_names = list(dict.fromkeys(r["run"] for r in records))
    images = _render_images(tasks, run_names, out)
    index = out / "index.html"
    write_atomic(index, _html(records, tasks, images, run_names, title))
    return index


def _render_images(tasks: dict[str, Runs], run_names: list[str], out: Path) -> dict[str, Any]:
    """Write every PNG; return their file names: {"timelines": {run: name}, "tasks": {task: {...}}, "slugs": ...}."""
    slugs, run_slugs = _slugs(tasks), _slugs(run_names)
    several = len(run_names) > 1
    images: dict[str, Any] = {"slugs": slugs, "timelines": {}, "tasks": {}}
    for run in run_names:  # one timeline per run: runs rarely share their steps
        name = f"timeline-{run_slugs[run]}.png" if several else "timeline.png"
        _plot_timeline({task: runs[run] for task, runs in tasks.items() if run in runs}, out / name, run)
        images["timelines"][run] = name
    for task, runs in tasks.items():
        plot = f"task-{slugs[task]}.png"
        _plot_task(task, runs, out / plot)
        bars = {}
        for run, recs in runs.items():
            bars[run] = f"bars-{slugs[task]}--{run_slugs[run]}.png" if several else f"bars-{slugs[task]}.png"
            _plot_bars(task, run if several else None, recs[-1], out / bars[run])
        images["tasks"][task] = {"plot": plot, "bars": bars}
    return images


# -- data ---------------------------------------------------------------------------------------------------------


def _group(records: list[dict[str, Any]]) -> dict[str, Runs]:
    """task -> run -> records sorted by index; tasks and runs in order of first appearance."""
    order = {run: i for i, run in enumerate(dict.fromkeys(r["run"] for r in records))}
    tasks: dict[str, Runs] = defaultdict(lambda: defaultdict(list))
    for r in sorted(records, key=lambda r: (order[r["run"]], r["index"])):
        tasks[r["task"]][r["run"]].append(r)
    return {task: dict(runs) for task, runs in tasks.items()}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "x"


def _slugs(names) -> dict[str, str]:
    """A distinct file-name-safe slug per name."""
    slugs: dict[str, str] = {}
    for name in names:
        base = slug = _slug(name)
        n = 2
        while slug in slugs.values():
            slug, n = f"{base}-{n}", n + 1
        slugs[name] = slug
    return slugs


def _num(value: Any) -> float:
    """A metric as a float; null (or anything not a finite number) becomes NaN, which plots as a gap."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _series(recs: list[dict[str, Any]], metric: str) -> np.ndarray:
    return np.array([_num((r.get("metrics") or {}).get(metric)) for r in recs], dtype=float)


def _colour(state: str) -> str:
    return STATE_COLOURS.get(state, OTHER_COLOUR)


def _text(s: Any) -> str:
    """Data text safe for matplotlib: a '$' must not start mathtext."""
    return str(s).replace("$", r"\$")


def _step_labels(recs: list[dict[str, Any]]) -> dict[float, str]:
    """step -> its tick label: the records' labels where given (with the step when labels repeat), else the step."""
    labels: dict[float, list[str]] = {}
    for r in recs:
        names = labels.setdefault(r["step"], [])
        if r.get("label") and r["label"] not in names:
            names.append(r["label"])
    texts = {step: "/".join(names) for step, names in sorted(labels.items())}
    if len(set(texts.values())) < len(texts):  # stage labels repeat (a training run): show the step too
        return {step: f"{step:g} {text}".strip() for step, text in texts.items()}
    return {step: text or f"{step:g}" for step, text in texts.items()}


def _transitions(recs: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in recs:
        for e in r.get("events") or []:
            seed = f" ({e['seed']})" if e.get("seed") else ""
            remelt = " remelt" if e.get("remelt") else ""
            out.append(f"{e.get('from')}→{e.get('to')} @{e.get('step', r['step'])}{seed}{remelt}")
    return out


# -- figures ------------------------------------------------------------------------------------------------------


def _save(fig: Figure, path: Path | IO[bytes]) -> None:
    """Write a small PNG: Agg render, then an adaptive palette (flat plots lose nothing visible, ~3x smaller)."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png", dpi=DPI)
    fig.clear()
    png = io.BytesIO()
    with Image.open(buffer) as img:
        img.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(png, format="PNG", optimize=True)
    if isinstance(path, Path):
        write_atomic(path, png.getvalue())
    else:
        path.write(png.getvalue())


def _state_legend(fig: Figure, states, **kwargs) -> None:
    handles = [Patch(facecolor=_colour(s), edgecolor="#555555", label=_text(s)) for s in states]
    fig.legend(handles=handles, title="state", fontsize=8, title_fontsize=8, frameon=False, **kwargs)


def _set_step_ticks(ax, labels: dict[float, str], has_labels: bool) -> None:
    if not has_labels or len(labels) > 25:
        ax.xaxis.get_major_locator().set_params(integer=True)
        return
    ax.set_xticks(list(labels), [_text(v) for v in labels.values()])
    if len(labels) > 8 or max(len(v) for v in labels.values()) > 5:
        ax.tick_params(axis="x", labelrotation=35)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")


def _shade(ax, recs: list[dict[str, Any]]) -> None:
    """Background spans coloured by state, each centred on its measurement."""
    steps = [float(r["step"]) for r in recs]
    gaps = np.diff(steps) if len(steps) > 1 else np.array([1.0])
    edges = [steps[0] - gaps[0] / 2, *(s + g / 2 for s, g in zip(steps, gaps)), steps[-1] + gaps[-1] / 2]
    start = 0
    for i in range(1, len(recs) + 1):  # one span per stretch of equal states
        if i == len(recs) or recs[i]["state"] != recs[start]["state"]:
            ax.axvspan(edges[start], edges[i], color=_colour(recs[start]["state"]), alpha=0.35, lw=0, zorder=0)
            start = i


def _mark_events(ax, recs: list[dict[str, Any]], *, text: bool, colour: str, prefix: str) -> None:
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for r in recs:
        for e in r.get("events") or []:
            ax.axvline(r["step"], color=colour, lw=1, ls="--", zorder=1)
            if text:
                ax.text(r["step"], 0.97, prefix + _text(e.get("to")), transform=trans, rotation=90, va="top",
                        ha="center", fontsize=7, color="#222222", zorder=4,
                        bbox={"facecolor": "white", "alpha": 0.75, "lw": 0, "pad": 1})  # fmt: skip


def _plot_panel(ax, runs: Runs, panel: tuple[str, str, str | None, bool], *, top: bool, first: bool) -> None:
    """One metric panel: a line per run (secondary metric dashed), states and events behind."""
    name, primary, secondary, log = panel
    single = len(runs) == 1
    plotted = False
    for i, (run, recs) in enumerate(runs.items()):
        steps = [r["step"] for r in recs]
        colours = ("C0", "C1") if single else (f"C{i % 10}",) * 2
        for metric, colour, style in ((primary, colours[0], "-"), (secondary, colours[1], "--")):
            values = _series(recs, metric) if metric else np.array([np.nan])
            if np.isnan(values).all():
                continue
            label = metric if single else (_text(run) if metric == primary else None)
            ms = 3.5 if len(steps) <= 60 else 1.5
            ax.plot(steps, values, style, marker="o", ms=ms, color=colour, label=label, zorder=2)
            plotted = True
            if log and (values > 0).any():
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(ScalarFormatter())
                positive = values[values > 0]
                narrow = positive.max() / positive.min() < 10  # within a decade: label the minor ticks too
                ax.yaxis.set_minor_formatter(ScalarFormatter() if narrow else NullFormatter())
        if single:
            _shade(ax, recs)
        else:
            ax.scatter(steps, _series(recs, primary), c=[_colour(r["state"]) for r in recs], s=18, zorder=3,
                       edgecolors="#333333", linewidths=0.5)  # fmt: skip
        _mark_events(ax, recs, text=top, colour="#333333" if single else colours[0],
                     prefix="" if single else f"{_text(run)}: ")  # fmt: skip
    if not plotted:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#555555",
                bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})  # fmt: skip
    elif secondary if single else first:  # one run: name the two metrics; several: name the runs once
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    ax.set_title(name, fontsize=10)
    ax.grid(alpha=0.3, zorder=1)


def _plot_task(task: str, runs: Runs, path: Path) -> None:
    fig = Figure(figsize=(10, 6.4), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    everything = [r for recs in runs.values() for r in recs]
    labels = _step_labels(everything)
    has_labels = any(r.get("label") for r in everything)
    for i, (ax, panel) in enumerate(zip(axes, PANELS)):
        _plot_panel(ax, runs, panel, top=i < 2, first=i == 0)
        _set_step_ticks(ax, labels, has_labels)
    for ax in axes[2:]:
        ax.set_xlabel("step", fontsize=9)
    fig.suptitle(_text(task), fontsize=12, fontweight="bold")
    states = dict.fromkeys(r["state"] for r in everything)
    _state_legend(fig, states, loc="outside lower center", ncols=len(states))
    _save(fig, path)


def _plot_timeline(tasks: dict[str, list[dict[str, Any]]], path: Path, run: str) -> None:
    """One run's phases: rows = tasks, columns = steps, cells coloured by state (white: not measured)."""
    everything = [r for recs in tasks.values() for r in recs]
    labels = _step_labels(everything)
    column = {step: i for i, step in enumerate(labels)}
    states = [*STATE_COLOURS, *sorted({r["state"] for r in everything} - set(STATE_COLOURS))]
    code = {s: i + 1 for i, s in enumerate(states)}  # 0 = no measurement
    rows = np.zeros((len(tasks), len(column)), dtype=int)
    for row, recs in zip(rows, tasks.values()):
        for r in recs:
            row[column[r["step"]]] = code[r["state"]]
    names = [_text(task) for task in tasks]
    cmap = ListedColormap([MISSING_COLOUR, *(_colour(s) for s in states)])
    height = 1.6 + 0.26 * len(rows)
    fig = Figure(figsize=(10, height), layout="constrained")
    ax = fig.subplots()
    ax.pcolormesh(rows, cmap=cmap, vmin=0, vmax=len(states), edgecolors="white", lw=0.5 if len(column) <= 60 else 0)
    ax.hlines(np.arange(1, len(rows)), 0, len(column), color="white", lw=2)  # separate the tasks
    ax.set_yticks(np.arange(len(rows)) + 0.5, names, fontsize=8)
    ax.invert_yaxis()
    stride = max(1, math.ceil(len(labels) / 20))
    ticks = list(labels.values())[::stride]
    ax.set_xticks(np.arange(0, len(labels), stride) + 0.5, [_text(t) for t in ticks], fontsize=8)
    if max(len(t) for t in ticks) > 5 or len(ticks) > 10:
        ax.tick_params(axis="x", labelrotation=35)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    ax.set_xlabel("measurement (step or label)", fontsize=9)
    ax.set_title(_text(f"phase timeline: {run}"), fontsize=11, fontweight="bold")
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    present = [s for s in states if any(r["state"] == s for r in everything)]
    _state_legend(fig, present, loc="outside right upper")
    _save(fig, path)


def _plot_bars(task: str, run: str | None, record: dict[str, Any], path: Path | IO[bytes]) -> None:
    """Last consensus vs the nearest seed's centroid, horizontal bars over (the top) outcomes."""
    outcomes = [str(o) for o in record["outcomes"]]
    consensus = np.array([_num(v) for v in record["consensus"]])
    centroid = record.get("seed_centroid")
    seed = np.array([_num(v) for v in centroid]) if centroid and len(centroid) == len(outcomes) else None
    top = np.nan_to_num(np.fmax(consensus, seed) if seed is not None else consensus)
    keep = np.arange(len(outcomes))
    if len(outcomes) > TOP_OUTCOMES:
        keep = np.argsort(-top, kind="stable")[:TOP_OUTCOMES]
    n = len(keep)
    fig = Figure(figsize=(6.4, 1.5 + 0.32 * n), layout="constrained")
    ax = fig.subplots()
    y = np.arange(n)
    width = 0.4 if seed is not None else 0.7
    shift = width / 2 if seed is not None else 0.0
    ax.barh(y - shift, consensus[keep], height=width, color="#3182bd", label="consensus")
    if seed is not None:
        ax.barh(y + shift, seed[keep], height=width, color="#fd8d3c", label=f"seed {_text(record.get('seed'))}")
    ax.set_yticks(y, [_text(outcomes[i]) for i in keep], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("probability", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.8)
    shown = f"top {n} of {len(outcomes)} outcomes" if n < len(outcomes) else f"{n} outcomes"
    where = f"step {record['step']}" + (f" ({record['label']})" if record.get("label") else "")
    head = f"{task} · {run}" if run else task
    ax.set_title(_text(f"{head}: {where}, {shown}"), fontsize=9, loc="left")
    _save(fig, path)


def bars_png(task: str, record: dict[str, Any], run: str | None = None) -> bytes:
    """The bar chart of one trajectory record (consensus vs nearest seed) as PNG bytes (used by the W&B sink)."""
    buffer = io.BytesIO()
    _plot_bars(task, run, record, buffer)
    return buffer.getvalue()


# -- html ---------------------------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; } section { margin-top: 2.5em; border-top: 1px solid #ddd; }
.meta { color: #555; } .state { font-weight: 600; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    v = _num(value)
    return "–" if math.isnan(v) else f"{v:.3g}"


def _metric_text(metrics: dict[str, Any], name: str) -> str:
    if name == "temperature" and not math.isnan(_num(metrics.get(name))):
        return _esc(temperature_text({k: _num(v) for k, v in metrics.items()}, ".3g"))
    return _fmt(metrics.get(name))


def _state_cell(state: str) -> str:
    rgb = _colour(state).lstrip("#")
    dark = sum(int(rgb[i : i + 2], 16) * w for i, w in zip((0, 2, 4), (0.299, 0.587, 0.114))) < 128
    style = f"background:{_colour(state)};color:{'#fff' if dark else '#000'}"
    return f'<td class="state" style="{style}">{_esc(state)}</td>'


def _top_outcome(record: dict[str, Any]) -> str:
    probs = [_num(v) for v in record["consensus"]]
    if not probs or all(math.isnan(p) for p in probs):
        return "–"
    best = int(np.nanargmax(probs))
    return f"{record['outcomes'][best]} ({probs[best]:.2f})"


def _checkpoints(records: list[dict[str, Any]]) -> str:
    """'base @0, sft @100, ...' for the labelled measurements (a checkpoint ladder); '' without labels."""
    seen = dict.fromkeys((r["run"], r["index"], r["step"], r["label"]) for r in records if r.get("label"))
    return ", ".join(f"{label} @{step}" for _, _, step, label in sorted(seen, key=lambda k: k[:2]))


def _summary_rows(tasks: dict[str, Runs], slugs: dict[str, str], several: bool) -> list[str]:
    rows = []
    for task, runs in tasks.items():
        for run, recs in runs.items():
            last = recs[-1]
            metrics = last.get("metrics") or {}
            cells = [f'<td><a href="#task-{_esc(slugs[task])}">{_esc(task)}</a></td>']
            cells += [f"<td>{_esc(run)}</td>"] if several else []
            cells += [_state_cell(last["state"]), f"<td>{_esc(last.get('seed') or '–')}</td>"]
            cells += [f'<td class="num">{_metric_text(metrics, m)}</td>' for m in TABLE_METRICS]
            cells.append(f"<td>{_esc(_top_outcome(last))}</td>")
            cells.append(f"<td>{_esc(', '.join(_transitions(recs)) or '–')}</td>")
            rows.append(f"<tr>{''.join(cells)}</tr>")
    return rows


def _img(name: str, alt: str) -> str:
    return f"<img src='{_esc(name)}' alt='{_esc(alt)}'>"


def _html(records: list[dict[str, Any]], tasks: dict[str, Runs], images: dict[str, Any], run_names: list[str],
          title: str | None) -> str:  # fmt: skip
    several = len(run_names) > 1
    slugs = images["slugs"]
    title = title or f"crystalwatch report: {', '.join(run_names)}"
    measurements = len({(r["run"], r["index"]) for r in records})
    models = list(dict.fromkeys(str(r.get("model")) for r in records if r.get("model")))
    times = sorted(r["time"] for r in records if r.get("time"))
    checkpoints = _checkpoints(records)
    span = f" from {_esc(times[0])} to {_esc(times[-1])}" if times else ""
    head = ["task", *(["run"] if several else []), "final state", "seed", *TABLE_METRICS, "top outcome", "transitions"]
    parts = [
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p class='meta'>Run{'s' if several else ''}: <b>{_esc(', '.join(run_names))}</b> · "
        f"{measurements} measurement{'s' if measurements != 1 else ''} of {len(tasks)} task(s){span} · "
        f"model{'s' if len(models) != 1 else ''}: {_esc(', '.join(models) or 'unknown')}</p>",
        f"<p class='meta'>Checkpoints: {_esc(checkpoints)}</p>" if checkpoints else "",
        "<h2>Summary (last measurement)</h2><table>",
        "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>",
        *_summary_rows(tasks, slugs, several),
        "</table>",
        "<h2>Phase timeline</h2>",
        *(_img(name, f"phase timeline of {run}") for run, name in images["timelines"].items()),
    ]
    for task, files in images["tasks"].items():
        parts += [f"<section id='task-{_esc(slugs[task])}'><h2>{_esc(task)}</h2>", _img(files["plot"], task)]
        parts += [_img(name, f"last distribution of {task} ({run})") for run, name in files["bars"].items()]
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
