"""Render a trajectory (docs/trajectory.md) into PNG plots and a self-contained ``index.html``.

The report shows a phase timeline of all tasks (one per run), then per task a plot of the metrics over steps
(background shaded by phase state, transitions marked) and a bar chart of the last consensus against its nearest
seed. Usage: ``render_report("run.jsonl", "report/")`` returns ``report/index.html``.

Figures are built with :class:`matplotlib.figure.Figure` on the Agg canvas: no pyplot state, no display.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from crystalwatch.errors import CrystalwatchError
from crystalwatch.files import ensure_folder, write_atomic
from crystalwatch.records import SCHEMA, Record, read_trajectory
from crystalwatch.report.data import Runs, _group, _slugs
from crystalwatch.report.figures import _plot_answers, _plot_bars, _plot_task, _plot_timeline
from crystalwatch.report.html import page

__all__ = ["render_report"]


def render_report(
    trajectory: str | Path | list[Record] | list[str | Path],
    out_dir: str | Path,
    *,
    title: str | None = None,
    seeds: str | Path | None = None,
    tasks: list[str] | None = None,
) -> Path:
    """Render PNGs + index.html for a trajectory (a path, or records: :class:`Record` or their JSON objects) or
    several trajectories side by side (a list of paths: each task's runs overlaid); return the index.html path.
    With ``seeds`` (a seed library file), the runs are first re-read against it with this version's phase model
    (:func:`crystalwatch.trajectory.reread`), so runs written by older versions show today's readings. ``tasks``:
    only these tasks (all by default)."""
    if isinstance(trajectory, list) and trajectory and all(isinstance(t, (str, Path)) for t in trajectory):
        records = side_by_side([Path(t) for t in trajectory])
    elif isinstance(trajectory, list):
        records = [r if isinstance(r, Record) else Record.from_json({"schema": SCHEMA, **r}) for r in trajectory]
    else:
        records = read_trajectory(trajectory)
    if tasks:
        missing = sorted(set(tasks) - {r.task for r in records})
        if missing:
            raise CrystalwatchError(f"no records of task(s) {', '.join(missing)} in the trajectory (it has "
                             f"{', '.join(sorted({r.task for r in records}))})")  # fmt: skip
        records = [r for r in records if r.task in tasks]
    if not records:
        raise ValueError("the trajectory has no records: nothing to report (was the run measured at least once?)")
    if seeds is not None:
        from crystalwatch.seeds import SeedLibrary
        from crystalwatch.trajectory import reread

        records = reread(records, SeedLibrary.load(seeds))
    out = ensure_folder(out_dir)
    tasks = _group(records)
    run_names = list(dict.fromkeys(r.run for r in records))
    images = _render_images(tasks, run_names, out)
    index = out / "index.html"
    write_atomic(index, page(records, tasks, images, run_names, title))
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
        plot, answers = f"task-{slugs[task]}.png", f"answers-{slugs[task]}.png"
        _plot_task(task, runs, out / plot)
        _plot_answers(task, runs, out / answers)
        bars = {}
        for run, recs in runs.items():
            bars[run] = f"bars-{slugs[task]}--{run_slugs[run]}.png" if several else f"bars-{slugs[task]}.png"
            _plot_bars(task, run if several else None, recs[-1], out / bars[run])
        images["tasks"][task] = {"plot": plot, "answers": answers, "bars": bars}
    return images


def side_by_side(paths: list[Path]) -> list[Record]:
    """The records of several trajectories (files, or run folders holding ``trajectory.jsonl`` or
    ``crystalwatch/trajectory.jsonl``), each run named as in its file — or, when two files name a run alike, after
    its file's folder."""
    files = [next((f for f in (p / "trajectory.jsonl", p / "crystalwatch" / "trajectory.jsonl") if f.is_file()),
                  p / "crystalwatch" / "trajectory.jsonl") if p.is_dir() else p for p in paths]  # fmt: skip
    loaded = [read_trajectory(f) for f in files]
    names = [run for recs in loaded for run in dict.fromkeys(r.run for r in recs)]
    clash = len(names) != len(set(names))
    out = []
    for f, recs in zip(files, loaded):
        where = f.parent.parent.name if f.parent.name == "crystalwatch" else f.parent.name
        out += [dataclasses.replace(r, run=f"{where}/{r.run}" if clash else r.run) for r in recs]
    return out
