"""The callback's cost with everything on: the same TRL SFT run with and without CrystalWatchCallback.

    python bench/callback.py [--steps 2000] [--repeats 5]   # writes bench/results/callback.{md,json}
    python bench/callback.py --quick                        # 20 steps, 2 pairs, 2 tasks, temp folder: checks it

The run: a small Llama (hidden 256, 4 layers, ~3M parameters, crystalwatch's tiny BPE tokenizer) trained with
TRL's SFTTrainer on crystalwatch's chat conversations, batch 8, max length 128, fp32, 2 threads, seed 0, a
checkpoint every ``--save-steps`` steps. Both arms report to every tracker: ``report_to`` = wandb (offline),
tensorboard, mlflow (local file store) and trackio (local folder), so the Trainer's own logging is in both and the
difference is crystalwatch's. The callback runs at its defaults (all 15 tasks, chat prompts, adaptive cadence with
budget 1%, bar charts at transitions: W&B's native chart, a Pillow image in TensorBoard; phase table and alerts on;
the trajectory logged as a W&B artifact at the end) against a seed library built beforehand from the starting model.
The default 2000 steps (~5.5 minutes of training) are long enough for the adaptive cadence to pay for setup and the
begin and end measurements (~2 s) and still measure during training; a shorter run pays those only.

Each run is a fresh Python process; the timed wall time is the callback's construction (loading the library and
tasks), ``trainer.train()`` and the trackers' final flush (``wandb.finish``, ``mlflow.end_run``,
``trackio.finish``); the Trainer's construction is not timed, so the trackers' packages, which it imports, are
imported before the timer in both arms (the callback's import time is then crystalwatch's own). Runs come in pairs
(without, with), the order flipped every other pair (AB, BA, AB, ...); before each run the script waits for a quiet
machine (bench/scoring.py's rule). Inside the runs with the callback, the Monitor's calls (start, step, measure,
save_state, close), the scorer, every sink's start/write/close and the bar charts are timed by wrapping them.

The cadence (issue 22): the runs with the callback use the front-loaded cadence (the Trainer gives the run's
length); ``--old-runs N`` (default 1) more runs use the pay-as-you-go rule the Monitor keeps for runs of unknown
length (the same callback, its start told no length). Each run with the callback records the steps it measured
and the Trainer's loss curve; ``callback_cadence.png`` draws both cadences' steps against the loss.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from scoring import WAIT, cpu_seconds, machine, wait_quiet  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TRACKERS = ["wandb", "tensorboard", "mlflow", "trackio"]
GOAL = 0.01  # issue 15: the callback's cost at the default cadence, as a share of training time


# -- one training run (a worker process) -------------------------------------------------------------------------
class Timers:
    """Wall seconds and calls per name. Monitor methods are also tracked by nesting: ``measure@start`` is a
    measurement made inside ``start``; ``own`` sums the outermost Monitor calls only (no double counting)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[str] = []

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds
        self.calls[name] += 1

    def wrap(self, owner: Any, attr: str, name: str, monitor: bool = False) -> None:
        fn = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            outer = self.stack[-1] if self.stack else None
            if monitor:
                self.stack.append(attr)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - start
                self.add(name, seconds)
                if monitor:
                    self.stack.pop()
                    self.add(f"{name}@{outer or 'top'}", seconds)
                    if outer is None:
                        self.add("own", seconds)

        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        setattr(owner, attr, timed)


def instrument(timers: Timers) -> None:
    """Wrap the scorer, the phase step, every sink's methods and the bar charts (module level)."""
    import crystalwatch.monitor as monitor_module
    import crystalwatch.sinks.tensorboard as tb
    import crystalwatch.sinks.wandb as wb
    from crystalwatch.sinks.console import ConsoleSink
    from crystalwatch.sinks.jsonl import JsonlSink
    from crystalwatch.sinks.mlflow import MLflowSink
    from crystalwatch.sinks.trackio import TrackioSink

    timers.wrap(monitor_module, "run", "scoring (measure.run)")
    timers.wrap(monitor_module, "observe", "metrics + phases (observe)")
    for cls in (JsonlSink, ConsoleSink, wb.WandbSink, tb.TensorBoardSink, MLflowSink, TrackioSink):
        for method in ("start", "write", "close"):
            timers.wrap(cls, method, f"sink {cls.name}.{method}")
    timers.wrap(wb, "bars_chart", "bars: W&B native chart (bars_chart)")
    timers.wrap(tb, "bars_rgb", "bars: TensorBoard image (bars_rgb)")


def model_for(tokenizer: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)  # fmt: skip
    return AutoModelForCausalLM.from_config(config)


def finish_trackers() -> None:
    """What a script does at its end: the trackers' final flush (runs the Trainer left open)."""
    import mlflow
    import trackio
    import wandb

    if wandb.run is not None:
        wandb.finish()
    if mlflow.active_run() is not None:
        mlflow.end_run()
    if trackio.context_vars.current_run.get() is not None:
        trackio.finish()


def children_cpu() -> float:
    """CPU seconds of this process's child processes: live ones (recursive) and those already waited for."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[2:4])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def worker(opts: argparse.Namespace) -> None:
    """One training run; writes its figures as JSON to ``opts.result``."""
    import torch
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    from crystalwatch.data import chat_sft_path
    from crystalwatch.tiny import build_tokenizer

    torch.set_num_threads(2)
    # The trackers' packages, which the Trainer imports when it is made (untimed, in both arms): imported here so
    # that the callback's imports below are crystalwatch's own, not these.
    import mlflow  # noqa: F401
    import torch.utils.tensorboard  # noqa: F401
    import trackio  # noqa: F401
    import wandb  # noqa: F401

    tokenizer = build_tokenizer()
    out = Path(opts.work) / opts.name
    args = SFTConfig(output_dir=str(out), max_steps=opts.steps, per_device_train_batch_size=8, learning_rate=5e-4,
                     max_length=128, use_cpu=True, bf16=False, report_to=TRACKERS, run_name=opts.name,
                     save_strategy="steps", save_steps=opts.save_steps, save_total_limit=1,
                     activation_checkpointing=False, logging_steps=50, disable_tqdm=True, seed=0)  # fmt: skip
    data = load_dataset("json", data_files=str(chat_sft_path()), split="train")
    timers = Timers()
    busy, own = cpu_seconds()
    children_at_begin = children_cpu()
    begin = start = time.perf_counter()
    callbacks = []
    if opts.arm in ("with", "old"):
        instrument(timers)  # imports the monitor and the sinks: the callback would import them too
        from crystalwatch.callback import CrystalWatchCallback

        t = time.perf_counter()
        timers.add("imports (crystalwatch's callback and sinks)", t - start)
        cb = CrystalWatchCallback(seeds=opts.seeds)  # the defaults: adaptive cadence, images at transitions, alerts
        if opts.arm == "old":  # the pay-as-you-go rule: the run's length is not told to the cadence
            new_run = cb.monitor.cadence.new_run
            cb.monitor.cadence.new_run = lambda step=0, total_steps=None: new_run(step, None)  # type: ignore[method-assign]
        timers.add("construct (load library + tasks)", time.perf_counter() - t)
        timers.add("own", time.perf_counter() - start)
        for method in ("start", "step", "measure", "save_state", "close"):
            timers.wrap(cb.monitor, method, f"monitor.{method}", monitor=True)
        callbacks.append(cb)
    constructed = time.perf_counter() - start
    trainer = SFTTrainer(model=model_for(tokenizer), args=args, train_dataset=data, processing_class=tokenizer,
                         callbacks=callbacks)  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    train_call = time.perf_counter() - start
    start = time.perf_counter()
    finish_trackers()
    finish = time.perf_counter() - start
    busy2, own2 = cpu_seconds()
    elapsed = time.perf_counter() - begin
    result = {
        "arm": opts.arm, "name": opts.name, "wall_s": constructed + train_call + finish, "construct_s": constructed,
        "train_call_s": train_call, "finish_s": finish, "steps": trainer.state.global_step,
        "child_cpu_s": children_cpu() - children_at_begin,  # child processes (the W&B service) meanwhile
        "other_cpu_cores": max(0.0, (busy2 - busy - (own2 - own)) / elapsed),
        "seconds": dict(timers.seconds), "calls": dict(timers.calls),
    }  # fmt: skip
    if callbacks:
        from crystalwatch.callback import trajectory_of

        cb = callbacks[0]
        result.update(measurements=cb.index, errors=cb.errors, monitor_seconds=cb.seconds,
                      measured_steps=sorted({r.step for r in trajectory_of(out)}))  # fmt: skip
    result["loss"] = [[h["step"], h["loss"]] for h in trainer.state.log_history if "loss" in h]
    Path(opts.result).write_text(json.dumps(result, indent=1))


# -- the benchmark -----------------------------------------------------------------------------------------------
def environment(work: Path) -> dict[str, str]:
    """Every tracker local and offline, in the work folder."""
    env = dict(os.environ)
    env.update({
        "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false",
        "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(work), "WANDB_PROJECT": "cw-bench",
        "WANDB_CACHE_DIR": str(work / "wandb-cache"), "WANDB_CONFIG_DIR": str(work / "wandb-config"),
        "WANDB_DATA_DIR": str(work / "wandb-data"),
        "MLFLOW_TRACKING_URI": (work / "mlruns").as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true",
        "TRACKIO_DIR": str(work / "trackio"), "TRACKIO_PROJECT": "cw-bench",
    })  # fmt: skip
    return env


def build_library(work: Path, tasks: int | None) -> tuple[Path, float]:
    """The starting model's seed library (all tasks; ``tasks``: the first N), built once before the runs."""
    from crystalwatch import build_seed_library
    from crystalwatch.tasks import load_tasks
    from crystalwatch.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    ids = [t.id for t in load_tasks()][:tasks] if tasks else None
    start = time.perf_counter()
    library = build_seed_library(model_for(tokenizer), tokenizer, ids, model_name="tiny-llama-3M")
    seconds = time.perf_counter() - start
    path = work / "seeds.json.gz"
    library.save(path)
    return path, seconds


def one(arm: str, i: int, opts: argparse.Namespace, work: Path, seeds: Path) -> dict:
    waited = wait_quiet() if WAIT["limit_s"] > 0 else 0.0
    result = work / f"{arm}-{i}.json"
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        arm,
        "--name",
        f"{arm}-{i}",
        "--work",
        str(work),
        "--seeds",
        str(seeds),
        "--steps",
        str(opts.steps),
        "--save-steps",
        str(opts.save_steps),
        "--result",
        str(result),
    ]
    log = work / f"{arm}-{i}.log"
    with log.open("w") as f:
        done = subprocess.run(cmd, env=environment(work), stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"run {arm}-{i} failed; its log: {log}\n" + log.read_text()[-3000:])
    for checkpoint in (work / f"{arm}-{i}").glob("checkpoint-*"):  # ~40 MB each; the trajectory stays
        shutil.rmtree(checkpoint)
    out = json.loads(result.read_text())
    out["waited_s"] = waited
    out["error_lines"] = reported_errors(log.read_text())
    print(f"{arm}-{i}: wall {out['wall_s']:.1f} s, own {out['seconds'].get('own', 0.0):.2f} s, "
          f"other CPU {out['other_cpu_cores']:.2f} cores", flush=True)  # fmt: skip
    return out


def reported_errors(log: str) -> list[str]:
    """The errors the callback reported in a run's log, one line each (the first comes with a traceback: its last
    line, the exception, is appended)."""
    lines, out = log.splitlines(), []
    for i, line in enumerate(lines):
        if not line.startswith("crystalwatch: error while"):
            continue
        if line.rstrip().endswith("):"):  # the first report: a traceback follows
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or lines[j].startswith("Traceback")):
                j += 1
            line = line.rstrip(":") + ": " + (lines[j].strip() if j < len(lines) else "")
        out.append(line.strip())
    return out


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean."""
    from scipy import stats

    n, mean = len(values), statistics.fmean(values)
    if n < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean, mean - half, mean + half


def breakdown(run: dict) -> dict[str, float]:
    """The callback's own time of one run split into parts that add up to it (seconds)."""
    s: dict[str, float] = defaultdict(float, run["seconds"])
    sinks = {k.removeprefix("sink "): v for k, v in s.items() if k.startswith("sink ")}
    images = s["bars: W&B native chart (bars_chart)"] + s["bars: TensorBoard image (bars_rgb)"]
    writes = sum(v for k, v in sinks.items() if k.endswith(".write"))
    measure = s["monitor.measure"]
    parts = {
        "setup: imports (callback, sinks)": s["imports (crystalwatch's callback and sinks)"],
        "setup: construct (library, tasks)": s["construct (load library + tasks)"],
        "setup: start, without its measurement (plan, checks, sinks start)": s["monitor.start"]
        - s["monitor.measure@start"],
        "measurements: scoring (measure.run)": s["scoring (measure.run)"],
        "measurements: metrics + phases (observe)": s["metrics + phases (observe)"],
        "measurements: sink writes without images": writes - images,
        "measurements: bar charts (W&B native, TensorBoard image)": images,
        "measurements: rest": measure - s["scoring (measure.run)"] - s["metrics + phases (observe)"] - writes,
        "step(): cadence bookkeeping": s["monitor.step"] - s["monitor.measure@step"],
        "save_state (on_save)": s["monitor.save_state"],
        "close, without its measurement (sink closes, trajectory artifact)": s["monitor.close"]
        - s["monitor.measure@close"],
    }  # fmt: skip
    parts["(sum of the parts)"] = sum(parts.values())
    parts["(own time, measured)"] = s["own"]
    return parts


def analyse(runs: list[dict], opts: argparse.Namespace, library_s: float) -> dict:
    pairs = [(a, b) for a, b in zip(runs[0::2], runs[1::2])]
    pairs = [(a, b) if a["arm"] == "without" else (b, a) for a, b in pairs]  # (without, with)
    without = [a["wall_s"] for a, _ in pairs]
    with_cb = [b["wall_s"] for _, b in pairs]
    diffs = [b - a for a, b in zip(without, with_cb)]
    mean_d, low, high = t_interval(diffs)
    base = statistics.fmean(without)
    own = [b["seconds"].get("own", 0.0) for _, b in pairs]
    own_shares = [o / (b["wall_s"] - o) for o, (_, b) in zip(own, pairs)]
    parts = [breakdown(b) for _, b in pairs]
    periodic = [b["seconds"].get("monitor.measure@step", 0.0) for _, b in pairs]
    training = [b["wall_s"] - o for o, (_, b) in zip(own, pairs)]
    median_parts = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    detail_keys = sorted({k for _, b in pairs for k in b["seconds"]})
    detail = {k: statistics.median(b["seconds"].get(k, 0.0) for _, b in pairs) for k in detail_keys}
    calls = {k: statistics.median(b["calls"].get(k, 0) for _, b in pairs) for k in detail_keys}
    return {
        "machine": machine(), "quick": opts.quick, "steps": opts.steps, "repeats": len(pairs),
        "save_steps": opts.save_steps, "tasks": opts.tasks or 15, "trackers": TRACKERS, "library_build_s": library_s,
        "order": [r["arm"] for r in runs], "runs": runs,
        "without_s": without, "with_s": with_cb, "paired_diff_s": diffs,
        "median_without_s": statistics.median(without), "median_with_s": statistics.median(with_cb),
        "mean_without_s": base, "mean_diff_s": mean_d, "diff_ci95_s": [low, high],
        "callback_wall_share": mean_d / base, "callback_wall_share_ci95": [low / base, high / base],
        "callback_own_s": own, "callback_own_shares": own_shares,
        "callback_own_share": statistics.median(own_shares),
        "callback_own_share_range": [min(own_shares), max(own_shares)],
        "periodic_s": periodic, "fixed_s": [o - p for o, p in zip(own, periodic)],
        "periodic_share": statistics.median(p / t for p, t in zip(periodic, training)),
        "fixed_share": statistics.median((o - p) / t for o, p, t in zip(own, periodic, training)),
        "fixed_median_s": statistics.median(o - p for o, p in zip(own, periodic)),
        "error_lines": sorted({x for _, b in pairs for x in b.get("error_lines", []) if x}),
        "measurements": [b.get("measurements") for _, b in pairs], "errors": [b.get("errors") for _, b in pairs],
        "breakdown_s": median_parts, "timers_s": detail, "timer_calls": calls,
        "child_cpu_s": {"without": [a["child_cpu_s"] for a, _ in pairs], "with": [b["child_cpu_s"] for _, b in pairs]},
        "step_s": statistics.median(without) / opts.steps, "goal": GOAL,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 2000, ~5.5 min)")
    parser.add_argument("--repeats", type=int, default=None, help="pairs of runs (default 5, at least 2)")
    parser.add_argument("--save-steps", type=int, default=None, help="checkpoint every N steps (default 250)")
    parser.add_argument("--tasks", type=int, default=None, help="measure the first N tasks only (default: all 15)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20 steps, 2 pairs, 2 tasks, a checkpoint every 10 steps, no waiting, temp folder",
    )
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--out", default=None, help="results folder (default bench/results; --quick: a temp dir)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from callback.json in --out")
    parser.add_argument("--old-runs", type=int, default=1, help="runs with the pay-as-you-go cadence (default 1)")
    parser.add_argument("--cadence-only", action="store_true",
                        help="one run with each cadence (no pairs), added to the callback.json in --out")  # fmt: skip
    parser.add_argument("--worker", choices=["with", "without", "old"], help=argparse.SUPPRESS)
    for hidden in ("--name", "--work", "--seeds", "--result"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        opts.arm = opts.worker
        opts.steps, opts.save_steps = int(opts.steps), int(opts.save_steps)
        worker(opts)
        return
    quick = opts.quick
    opts.steps = opts.steps or (20 if quick else 2000)
    opts.repeats = opts.repeats or (2 if quick else 5)
    opts.save_steps = opts.save_steps or (10 if quick else 250)
    opts.tasks = opts.tasks or (2 if quick else None)
    if opts.repeats < 2 and not opts.cadence_only:
        parser.error("--repeats: at least 2 pairs (the interval needs them)")
    if quick or opts.no_wait:
        WAIT["limit_s"] = 0.0
    out = Path(opts.out) if opts.out else Path(tempfile.mkdtemp(prefix="cw-callback-")) if quick else RESULTS
    if opts.render_only:
        write(json.loads((out / "callback.json").read_text()), out)
        return
    work = Path(tempfile.mkdtemp(prefix="cw-callback-work-"))
    print(f"work folder {work}", flush=True)
    seeds, library_s = build_library(work, opts.tasks)
    if opts.cadence_only:  # the cadences on a cheaper measurement (fewer tasks), beside the full benchmark
        result = json.loads((out / "callback.json").read_text())
        both = [one("with", 0, opts, work, seeds), one("old", 0, opts, work, seeds)]
        result.setdefault("cadence_more", {})[f"{opts.tasks or 15} tasks"] = cadence(both[:1], both[1:], opts.steps)
        write(result, out)
        return
    runs = []
    for i in range(opts.repeats):
        for arm in ("without", "with") if i % 2 == 0 else ("with", "without"):
            runs.append(one(arm, i, opts, work, seeds))
    old = [one("old", i, opts, work, seeds) for i in range(opts.old_runs)]
    result = analyse(runs, opts, library_s)
    result["cadence"] = cadence(runs, old, opts.steps)
    result["work"] = str(work)
    write(result, out)


# -- the report --------------------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def cadence(runs: list[dict], old: list[dict], steps: int) -> dict:
    """The steps each cadence measured (front-loaded: the runs with the callback; pay as you go: ``old``), the first
    periodic one (not the train-begin or train-end measurement) and the own-time share of each run."""

    def summary(r: dict) -> dict:
        periodic = [s for s in r["measured_steps"] if 0 < s < steps]
        own = r["seconds"].get("own", 0.0)
        return {"name": r["name"], "measured_steps": r["measured_steps"], "periodic": len(periodic),
                "first_periodic": periodic[0] if periodic else None, "own_s": own,
                "own_share": own / (r["wall_s"] - own), "loss": r["loss"]}  # fmt: skip

    front = [summary(r) for r in runs if r["arm"] == "with"]
    return {"front_loaded": front, "pay_as_you_go": [summary(r) for r in old]}


def cadence_lines(c: dict, goal: float) -> list[str]:
    """The cadence section of callback.md."""
    lines = ["## Cadence: front-loaded (length known) against pay as you go (issue 22)", "",
             "| cadence | run | steps measured | periodic | first periodic step | own-time share |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, label in (("front_loaded", "front-loaded"), ("pay_as_you_go", "pay as you go")):
        for r in c[name]:
            first = "none" if r["first_periodic"] is None else str(r["first_periodic"])
            lines.append(f"| {label} | {r['name']} | {', '.join(map(str, r['measured_steps']))} | {r['periodic']} | "
                         f"{first} | {_pct(r['own_share'])} |")  # fmt: skip
    shares = [r["own_share"] for r in c["front_loaded"]]
    lines += ["", f"Front-loaded own-time share, largest run: {_pct(max(shares))} (goal ≤ {_pct(goal)}: "
              f"**{'MET' if max(shares) <= goal else 'NOT MET'}**). The plot: `callback_cadence.png` (the steps each "
              "cadence measured, drawn over the Trainer's loss curve).", ""]  # fmt: skip
    return lines


def plot_cadence(sets: dict[str, dict], path: Path) -> None:
    """The loss curve of the first front-loaded run, and each cadence's measured steps as a row of ticks (one pair
    of rows per set of runs: the full benchmark's 15 tasks, and any cheaper measurement)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    first = next(iter(sets.values()))["front_loaded"][0]
    ax.plot([s for s, _ in first["loss"]], [v for _, v in first["loss"]], color="0.4", label="training loss")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("optimizer step (linear to 10, log beyond)")
    ax.set_ylabel("loss")
    top = max((v for _, v in first["loss"]), default=1.0)
    row = 0
    for label, c in sets.items():
        for name, colour in (("front_loaded", "tab:blue"), ("pay_as_you_go", "tab:orange")):
            for r in c[name][:1]:
                row += 1
                ax.scatter(r["measured_steps"], [top * (1.0 + 0.07 * row)] * len(r["measured_steps"]), marker="|",
                           s=150, color=colour, alpha=0.5 + 0.5 * (row <= 2),
                           label=f"{label}, {name.replace('_', ' ')}: {len(r['measured_steps'])} measurements")
    ax.legend(loc="center right", fontsize=7)
    ax.set_title("When the callback measured (SFT, budget 1%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _verdict(low: float, high: float, goal: float) -> str:
    """MET when the whole interval is within the goal, NOT MET when all of it is above, else UNDECIDED (too few
    pairs for the run-to-run noise)."""
    if high != high:  # NaN: one pair
        return "UNDECIDED"
    return "MET" if high <= goal else "NOT MET" if low > goal else "UNDECIDED (the interval spans the goal)"


def render(r: dict) -> str:
    from crystalwatch.settings import CrystalWatchConfig

    budget = CrystalWatchConfig().budget
    ok = {True: "MET", False: "NOT MET"}
    m, parts = r["machine"], r["breakdown_s"]
    own_total = parts["(own time, measured)"]
    named = {k: v for k, v in parts.items() if not k.startswith("(")}
    top = max(named, key=named.get)  # type: ignore[arg-type]
    images = parts["measurements: bar charts (W&B native, TensorBoard image)"]
    scoring = parts["measurements: scoring (measure.run)"]
    low, high = r["callback_wall_share_ci95"]
    own_lo, own_hi = r["callback_own_share_range"]
    child = {arm: statistics.median(v) for arm, v in r["child_cpu_s"].items()}
    lines = [
        "# The callback's cost with every sink on",
        "",
        f"Written by `python bench/callback.py{' --quick' if r['quick'] else ''}` (every figure below comes from the "
        "script; its docstring describes the run).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with 2 threads, transformers "
        f"{m['transformers']}. TRL SFT, {r['steps']} steps (batch 8, max length 128, ~3M-parameter Llama, fp32), "
        f"a checkpoint every {r['save_steps']} steps; every run reports to {', '.join(r['trackers'])}. The callback "
        f"at its defaults: {r['tasks']} tasks, chat prompts, adaptive cadence (budget {budget:.0%}), bar charts at "
        "transitions, phase table and alerts on.",
        "",
    ]  # fmt: skip
    if r["quick"]:
        lines += ["**Quick run** (`--quick`: few steps, 2 pairs, no waiting for a quiet machine): it checks the "
                  "script; its figures mean nothing.", ""]  # fmt: skip
    lines += [
        "| | value |",
        "|---|---|",
        f"| pairs of runs (without, with; order AB, BA, ...) | {r['repeats']} |",
        f"| wall time without the callback, median | {r['median_without_s']:.1f} s "
        f"({r['step_s'] * 1000:.0f} ms/step) |",
        f"| wall time with the callback, median | {r['median_with_s']:.1f} s |",
        f"| **wall-time share** (mean paired difference ÷ mean without) | **{_pct(r['callback_wall_share'])}**, "
        f"95% t interval {_pct(low)} to {_pct(high)} ({r['mean_diff_s']:+.2f} s, {r['diff_ci95_s'][0]:+.2f} to "
        f"{r['diff_ci95_s'][1]:+.2f} s) |",
        f"| **own-time share** (callback's own time ÷ the rest of the run), median | "
        f"**{_pct(r['callback_own_share'])}** (range {_pct(own_lo)}–{_pct(own_hi)}) |",
        f"| callback's own time per run | {', '.join(f'{x:.2f}' for x in r['callback_own_s'])} s |",
        f"| measurements per run | {', '.join(map(str, r['measurements']))} (train begin, adaptive, train end) |",
        f"| errors reported by the callback | {', '.join(map(str, r['errors']))} |",
        f"| runs without / with (s) | {', '.join(f'{x:.1f}' for x in r['without_s'])} / "
        f"{', '.join(f'{x:.1f}' for x in r['with_s'])} |",
        f"| paired differences (s) | {', '.join(f'{x:+.2f}' for x in r['paired_diff_s'])} |",
        f"| CPU of child processes (the W&B service), median without / with | {child['without']:.1f} / "
        f"{child['with']:.1f} s |",
        f"| seed library build (once, before the runs; not in the figures) | {r['library_build_s']:.1f} s |",
        "",
        f"Own time = fixed part (setup, the train-begin and train-end measurements, saves, close) + periodic part "
        f"(the measurements the adaptive cadence makes during training): median {_pct(r['fixed_share'])} + "
        f"{_pct(r['periodic_share'])} of the training time. The adaptive cadence counts everything the monitor "
        f"spends against its budget ({budget:.0%}), the final measurement included: it measures during training "
        f"only while the whole cost fits, so the whole cost stays within the budget once training is longer than "
        f"the fixed part ÷ budget (here {r['fixed_median_s']:.2f} s ÷ {budget:.0%} = "
        f"{r['fixed_median_s'] / budget:.0f} s), and a shorter run pays the fixed part only.",
        "",
        f"Goal (issue 15): ≤ {_pct(r['goal'])} of training time at the default cadence. Own-time share: "
        f"**{ok[r['callback_own_share'] <= r['goal']]}** ({_pct(r['callback_own_share'])}). Wall-time share: "
        f"**{_verdict(low, high, r['goal'])}** (its 95% interval {_pct(low)} to {_pct(high)}).",
        "",
        *(["Errors the callback reported (its log; training went on):", "",
           *(f"    {x}" for x in r["error_lines"]), ""] if r.get("error_lines") else []),
        "## Where the callback's own time goes (median over the runs with it, seconds per run)",
        "",
        "| part | seconds | share of own time |",
        "|---|---|---|",
    ]  # fmt: skip
    for k, v in parts.items():
        lines.append(f"| {k} | {v:.3f} | {100 * v / own_total:.1f}% |" if own_total > 0 else f"| {k} | {v:.3f} | — |")
    lines += [
        "",
        f"The largest part is **{top}**: {named[top]:.2f} s of {own_total:.2f} s ({100 * named[top] / own_total:.0f}%"
        f"). Bar charts (W&B's native chart and a Pillow image for TensorBoard, per task at its first measurement "
        f"and transitions): {images:.2f} s ({100 * images / own_total:.0f}%); scoring: {scoring:.2f} s "
        f"({100 * scoring / own_total:.0f}%)"
        + (". **Drawing dominates.**" if top.startswith("measurements: bar") else "."),
        "",
        "## Every timer (median seconds per run with the callback; calls)",
        "",
        "| timer | seconds | calls |",
        "|---|---|---|",
    ]  # fmt: skip
    for k, v in r["timers_s"].items():
        lines.append(f"| `{k}` | {v:.3f} | {r['timer_calls'][k]:.0f} |")
    if r.get("cadence"):
        lines += ["", *cadence_lines(r["cadence"], r["goal"])]
    for name, more in r.get("cadence_more", {}).items():
        lines += [f"### The same comparison measuring {name} (a cheaper measurement)", "",
                  *cadence_lines(more, r["goal"])[2:]]  # fmt: skip
    lines += [
        "",
        "## How it is measured",
        "",
        "- Wall time of a run: the callback's construction (with it), `trainer.train()` and the trackers' final flush "
        "(`wandb.finish`, `mlflow.end_run`, `trackio.finish`); each run a fresh process, seed 0, the same data. The "
        "wall-time share includes what no in-process timer sees: the W&B service process's work on crystalwatch's "
        "logs, competing for the same 2 cores.",
        "- Own time: the outermost Monitor calls (`start`, `step`, `save_state`, `close`, each measurement inside "
        "them counted once) plus the callback's construction; the own-time share divides it by the rest of the run.",
        "- Interval: Student's t over the paired differences (with − without of each pair), divided by the mean "
        "wall time without the callback.",
        "- Other processes' CPU during the runs (cores, in run order "
        + ", ".join(r["order"]) + "): " + ", ".join(f"{x['other_cpu_cores']:.2f}" for x in r["runs"]) + ".",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "callback.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "callback.md").write_text(render(result))
    sets = {f"{result['tasks']} tasks": result["cadence"]} if result.get("cadence") else {}
    sets.update(result.get("cadence_more", {}))
    if sets:
        plot_cadence(sets, out / "callback_cadence.png")
    print(render(result))
    print(f"wrote {out / 'callback.md'} and {out / 'callback.json'}", flush=True)


if __name__ == "__main__":
    main()
