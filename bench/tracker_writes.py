"""What each tracker's write costs per measurement, and what the answers-over-steps charts add.

    python bench/tracker_writes.py      # writes bench/results/tracker_writes.md and .json (about a minute)

15 tasks of 10 outcomes, 40 measurements (the answers chart carries the whole history, so its cost grows with the
run): each sink is started on its own, offline, in a temporary folder, and ``write`` is timed at every measurement.
W&B is timed with ``images="none"`` (scalars and the phase table only), with the default ``"transitions"`` (plus a
bar chart at a task's first measurement and transitions, and the answers line-series chart of every task at every
measurement) and with ``"all"``. Median and last (the longest history) of 3 repeats.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results"
TASKS, OUTCOMES, MEASUREMENTS, REPEATS = 15, 10, 40, 3


def measurements() -> list[list]:
    """40 measurements of 15 tasks whose top answer slowly takes over (a transition every few measurements)."""
    from crystalwatch.actions import Reading
    from crystalwatch.records import Record

    rng = np.random.default_rng(0)
    out = []
    for m in range(MEASUREMENTS):
        records = []
        for t in range(TASKS):
            p = rng.dirichlet(np.ones(OUTCOMES)) * (1 - m / MEASUREMENTS)
            p[0] += m / MEASUREMENTS
            p /= p.sum()
            state = ("liquid", "nucleating", "nucleated")[min(2, m // 14)]
            events = ([{"step": 10 * m, "task": f"t{t}", "from": "liquid", "to": state, "seed": "s0", "since": 10 * m,
                        "remelt": False}] if m in (14, 28) else [])  # fmt: skip
            records.append(Record(run="bench", index=m, step=10 * m, task=f"t{t}",
                                  outcomes=[str(i) for i in range(OUTCOMES)], consensus=[float(x) for x in p],
                                  metrics={"entropy": 0.5, "collapse": 0.1, "seed_distance": 0.05, "coverage": 0.3},
                                  state=state, events=events, seed="s0",
                                  seed_centroid=[float(x) for x in rng.dirichlet(np.ones(OUTCOMES))]))  # fmt: skip
        out.append(Reading(records))
    return out


def time_sink(make, folder: Path, readings: list) -> list[float]:
    from crystalwatch.sinks.base import RunInfo

    sink = make()
    sink.start(RunInfo("bench", folder, {}, None, "0123456789abcdef", "bench", "sft", None))
    seconds = []
    for reading in readings:
        start = time.perf_counter()
        sink.write(reading, reading[0].step, {"errors": 0.0, "measure_seconds": 1.0})
        seconds.append(time.perf_counter() - start)
    sink.close()
    return seconds


def main() -> None:
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", MLFLOW_ALLOW_FILE_STORE="true")
    import wandb

    from crystalwatch.sinks.jsonl import JsonlSink
    from crystalwatch.sinks.mlflow import MLflowSink
    from crystalwatch.sinks.tensorboard import TensorBoardSink
    from crystalwatch.sinks.wandb import WandbSink

    readings = measurements()
    cases = {
        "jsonl (the trajectory)": lambda f: (lambda: JsonlSink(f / "t.jsonl")),
        "tensorboard (scalars, Custom Scalars layout, bars at transitions)": lambda f: (lambda: TensorBoardSink()),
        "mlflow (scalars)": lambda f: (lambda: MLflowSink()),
        'wandb, images="none" (scalars, phase table)': lambda f: (lambda: WandbSink(images="none")),
        'wandb, images="transitions" (the default: + bars at transitions, answers chart every measurement)':
            lambda f: (lambda: WandbSink(images="transitions")),
        'wandb, images="all" (+ bars every measurement)': lambda f: (lambda: WandbSink(images="all")),
    }
    results = {}
    for name, factory in cases.items():
        runs = []
        for _ in range(REPEATS):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                os.environ["MLFLOW_TRACKING_URI"] = (folder / "mlruns").as_uri()
                os.environ["WANDB_DIR"] = str(folder)
                wandb.init(project="bench", dir=folder) if "wandb" in name else None
                runs.append(time_sink(factory(folder), folder, readings))
                if wandb.run is not None:
                    wandb.finish()
        results[name] = {"median_s": statistics.median(s for run in runs for s in run),
                         "last_s": statistics.median(run[-1] for run in runs)}  # fmt: skip
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    lines = ["# What each tracker's write costs per measurement", "",
             "Written by `python bench/tracker_writes.py` (its docstring describes the run).", "",
             f"Machine: {machine}. {TASKS} tasks of {OUTCOMES} outcomes, {MEASUREMENTS} measurements, offline, "
             f"{REPEATS} repeats.", "",
             f"| sink | median per measurement | at the {MEASUREMENTS}th measurement |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {name} | {r['median_s'] * 1000:.0f} ms | {r['last_s'] * 1000:.0f} ms |"
              for name, r in results.items()]
    none, default = (results[k]["median_s"] for k in list(results)[3:5])
    lines += ["", f"The answers charts and bars add {1000 * (default - none):.0f} ms per measurement to W&B at the "
              f"default ({1000 * (default - none) / TASKS:.1f} ms per task), counted in the monitor's own time and "
              "budget like the rest."]  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "tracker_writes.md").write_text("\n".join(lines) + "\n")
    (OUT / "tracker_writes.json").write_text(json.dumps({"machine": machine, "results": results}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
