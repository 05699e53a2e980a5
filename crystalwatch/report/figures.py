"""The report's figures: per-task metric panels shaded by state, the phase timeline, consensus-vs-seed bars.

Figures are built with :class:`matplotlib.figure.Figure` on the Agg canvas: no pyplot state, no display.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter, ScalarFormatter
from matplotlib.transforms import blended_transform_factory
from PIL import Image

from crystalwatch.bars import shown
from crystalwatch.files import write_atomic
from crystalwatch.phases import state_names
from crystalwatch.records import Record
from crystalwatch.report.data import (
    DPI,
    MISSING_COLOUR,
    PANELS,
    Runs,
    _colour,
    _series,
    _step_labels,
    _text,
)


def _save(fig: Figure, path: Path) -> None:
    """Write a small PNG: Agg render, then an adaptive palette (flat plots lose nothing visible, ~3x smaller)."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png", dpi=DPI)
    fig.clear()
    png = io.BytesIO()
    with Image.open(buffer) as img:
        img.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(png, format="PNG", optimize=True)
    write_atomic(path, png.getvalue())


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


def _shade(ax, recs: list[Record]) -> None:
    """Background spans coloured by state, each centred on its measurement."""
    steps = [float(r.step) for r in recs]
    gaps = np.diff(steps) if len(steps) > 1 else np.array([1.0])
    edges = [steps[0] - gaps[0] / 2, *(s + g / 2 for s, g in zip(steps, gaps)), steps[-1] + gaps[-1] / 2]
    start = 0
    for i in range(1, len(recs) + 1):  # one span per stretch of equal states
        if i == len(recs) or recs[i].state != recs[start].state:
            ax.axvspan(edges[start], edges[i], color=_colour(recs[start].state), alpha=0.35, lw=0, zorder=0)
            start = i


def _mark_events(ax, recs: list[Record], *, text: bool, colour: str, prefix: str) -> None:
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for r in recs:
        for e in r.events or []:
            ax.axvline(r.step, color=colour, lw=1, ls="--", zorder=1)
            if text:
                ax.text(r.step, 0.97, prefix + _text(e.to_state), transform=trans, rotation=90, va="top",
                        ha="center", fontsize=7, color="#222222", zorder=4,
                        bbox={"facecolor": "white", "alpha": 0.75, "lw": 0, "pad": 1})  # fmt: skip


def _plot_panel(ax, runs: Runs, panel: tuple[str, str, str | None, bool], *, top: bool, first: bool) -> None:
    """One metric panel: a line per run (secondary metric dashed), states and events behind."""
    name, primary, secondary, log = panel
    single = len(runs) == 1
    plotted = False
    for i, (run, recs) in enumerate(runs.items()):
        steps = [r.step for r in recs]
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
            ax.scatter(steps, _series(recs, primary), c=[_colour(r.state) for r in recs], s=18, zorder=3,
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
    fig = Figure(figsize=(10, 6.4))  # fixed margins: a constrained layout took half the report's time
    fig.subplots_adjust(left=0.07, right=0.985, top=0.9, bottom=0.2, hspace=0.22, wspace=0.18)
    axes = fig.subplots(2, 2, sharex=True).ravel()
    everything = [r for recs in runs.values() for r in recs]
    labels = _step_labels(everything)
    has_labels = any(r.label for r in everything)
    for i, (ax, panel) in enumerate(zip(axes, PANELS)):
        _plot_panel(ax, runs, panel, top=i < 2, first=i == 0)
        _set_step_ticks(ax, labels, has_labels)
    for ax in axes[2:]:
        ax.set_xlabel("step", fontsize=9)
    fig.suptitle(_text(task), fontsize=12, fontweight="bold")
    states = dict.fromkeys(r.state for r in everything)
    _state_legend(fig, states, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=len(states))
    _save(fig, path)


def leading_answers(runs: Runs, most: int = 5) -> list[int]:
    """The answers worth a line: those among the top 3 of some measurement of some run, by their highest
    probability, at most ``most``."""
    best: dict[int, float] = {}
    for recs in runs.values():
        for r in recs:
            p = np.asarray(r.consensus, dtype=float)
            for o in np.argsort(-p)[:3]:
                best[int(o)] = max(best.get(int(o), 0.0), float(p[o]))
    return sorted(best, key=lambda o: -best[o])[:most]


def _plot_answers(task: str, runs: Runs, path: Path) -> None:
    """Answers over steps: each leading answer's probability (a line, one colour per answer in every run), the
    readings as bands behind, and the seed of the last reading as short bars at the right (what it heads for);
    one row per run, sharing the step axis."""
    first = next(iter(runs.values()))[0]
    outcomes = [str(o) for o in first.outcomes]
    answers = leading_answers(runs)
    height = 1.85 + 2.3 * len(runs)
    fig = Figure(figsize=(10, height))
    fig.subplots_adjust(left=0.07, right=0.83, top=1 - 0.55 / height, bottom=1.4 / height, hspace=0.35)
    axes = fig.subplots(len(runs), 1, sharex=True, squeeze=False).ravel()
    everything = [r for recs in runs.values() for r in recs]
    labels = _step_labels(everything)
    for ax, (run, recs) in zip(axes, runs.items()):
        _shade(ax, recs)
        steps = [r.step for r in recs]
        for i, o in enumerate(answers):
            ax.plot(steps, [r.consensus[o] for r in recs], "-", marker="o", ms=3, color=f"C{i}", lw=1.6,
                    label=_text(outcomes[o]), zorder=2)  # fmt: skip
        seed = recs[-1].seed_centroid
        if seed is not None and len(seed) == len(outcomes):
            for i, o in enumerate(answers):
                ax.plot([steps[-1]], [seed[o]], marker="_", ms=14, mew=2, color=f"C{i}", zorder=3)
        _mark_events(ax, recs, text=True, colour="#333333", prefix="")
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability", fontsize=8)
        ax.set_title(_text(run) if len(runs) > 1 else "answers over steps", fontsize=9, loc="left")
        ax.grid(alpha=0.3, zorder=1)
        _set_step_ticks(ax, labels, any(r.label for r in everything))
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.8,
                   title="answer (— : seed)", title_fontsize=7)  # fmt: skip
    axes[-1].set_xlabel("step", fontsize=9)
    fig.suptitle(_text(task), fontsize=11, fontweight="bold")
    states = dict.fromkeys(r.state for r in everything)
    _state_legend(fig, states, loc="lower center", bbox_to_anchor=(0.45, 0.0), ncols=len(states))
    _save(fig, path)


def _plot_timeline(tasks: dict[str, list[Record]], path: Path, run: str) -> None:
    """One run's phases: rows = tasks, columns = steps, cells coloured by state (white: not measured)."""
    everything = [r for recs in tasks.values() for r in recs]
    labels = _step_labels(everything)
    column = {step: i for i, step in enumerate(labels)}
    known = state_names()
    states = [*known, *sorted({r.state for r in everything} - set(known))]
    code = {s: i + 1 for i, s in enumerate(states)}  # 0 = no measurement
    rows = np.zeros((len(tasks), len(column)), dtype=int)
    for row, recs in zip(rows, tasks.values()):
        for r in recs:
            row[column[r.step]] = code[r.state]
    names = [_text(task) for task in tasks]
    cmap = ListedColormap([MISSING_COLOUR, *(_colour(s) for s in states)])
    signals = trainer_signals(everything, list(labels))
    grid = 0.26 * len(rows)
    height = 2.0 + grid + 0.9 * len(signals)
    fig = Figure(figsize=(10, height))
    longest = max(len(n) for n in names)
    fig.subplots_adjust(left=min(0.35, 0.02 + 0.0075 * longest), right=0.86, top=1 - 0.45 / height,
                        bottom=min(0.45, 1.25 / height), hspace=0.15)  # fmt: skip
    axes = fig.subplots(1 + len(signals), 1, sharex=True, squeeze=False,
                        height_ratios=[max(grid, 0.5)] + [0.75] * len(signals))[:, 0]  # fmt: skip
    ax = axes[0]
    ax.pcolormesh(rows, cmap=cmap, vmin=0, vmax=len(states), edgecolors="white", lw=0.5 if len(column) <= 60 else 0)
    ax.hlines(np.arange(1, len(rows)), 0, len(column), color="white", lw=2)  # separate the tasks
    ax.set_yticks(np.arange(len(rows)) + 0.5, names, fontsize=8)
    ax.invert_yaxis()
    stride = max(1, math.ceil(len(labels) / 20))
    ticks = list(labels.values())[::stride]
    for below, (key, values) in zip(axes[1:], signals.items()):  # the trainer's own signals, column by column
        below.plot(np.arange(len(values)) + 0.5, values, ".-", color="0.3", lw=1.2)
        below.set_ylabel(key, fontsize=7, rotation=0, ha="right", va="center")
        below.tick_params(labelsize=7)
        below.grid(axis="y", lw=0.3)
    bottom = axes[-1]
    bottom.set_xticks(np.arange(0, len(labels), stride) + 0.5, [_text(t) for t in ticks], fontsize=8)
    if max(len(t) for t in ticks) > 5 or len(ticks) > 10:
        bottom.tick_params(axis="x", labelrotation=35)
        for tick in bottom.get_xticklabels():
            tick.set_horizontalalignment("right")
    bottom.set_xlabel("measurement (step or label)" + ("; below: the trainer's own signals, logged since the "
                      "measurement before" if signals else ""), fontsize=9)  # fmt: skip
    ax.set_title(_text(f"phase timeline: {run}"), fontsize=11, fontweight="bold")
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    present = [s for s in states if any(r.state == s for r in everything)]
    _state_legend(fig, present, loc="upper right", bbox_to_anchor=(0.995, 1 - 0.3 / height))
    _save(fig, path)


SIGNAL_ORDER = ("reward", "rewards/margins", "entropy", "frac_reward_zero_std", "rewards/accuracies", "kl", "loss")


def trainer_signals(records: list[Record], steps: list[float], most: int = 3) -> dict[str, list[float]]:
    """Up to ``most`` of the trainer's signals the records carry (``Record.trainer``, in ``SIGNAL_ORDER``), one
    value per measured step (NaN where none was logged): an RL run shows its reward and entropy, DPO its margins."""
    at = {}
    for r in records:
        if r.trainer:
            at.setdefault(r.step, r.trainer)
    if not at:
        return {}
    keys = [k for k in SIGNAL_ORDER if any(k in t for t in at.values())][:most]
    return {k: [float(at.get(step, {}).get(k, math.nan)) for step in steps] for k in keys}


def _plot_bars(task: str, run: str | None, record: Record, path: Path) -> None:
    """Last consensus vs the nearest seed's centroid, horizontal bars over (the top) outcomes."""
    outcomes = [str(o) for o in record.outcomes]
    keep, consensus, seed = shown(record)
    n = len(keep)
    height = 1.5 + 0.32 * n
    fig = Figure(figsize=(6.4, height))
    fig.subplots_adjust(left=0.05 + 0.0125 * min(max(len(outcomes[i]) for i in keep), 20), right=0.97,
                        top=1 - 0.4 / height, bottom=0.55 / height)  # fmt: skip
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
    count = f"top {n} of {len(outcomes)} outcomes" if n < len(outcomes) else f"{n} outcomes"
    where = f"step {record.step}" + (f" ({record.label})" if record.label else "")
    head = f"{task} · {run}" if run else task
    ax.set_title(_text(f"{head}: {where}, {count}"), fontsize=9, loc="left")
    _save(fig, path)
