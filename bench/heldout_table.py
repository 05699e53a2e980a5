"""The answer-aware phase model judged on its fitting arms and on the held-out arms (docs/experiments/heldout.md).

    python bench/heldout_table.py            # writes docs/experiments/heldout/results.{md,json} and heldout.png

Every arm's trajectory is re-read with the checkout's phase model (``PhaseConfig()``: the frozen v3 settings) against
its own library (gemma-3-270m's committed one; SmolLM2's built from itself). The pass line of the issue is computed
exactly as the predictions page defines it: a target is an injected answer whose consensus probability reaches 0.5;
it is read at the first measurement in a takeover state (nucleating, nucleated, settling, settled, foreign) with
that answer on top and ``foreign`` exactly when no seed favours it; on time = no later than one measurement after
the crossing. False alarms: null and format-only task-runs with any takeover reading.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import ARMS, HELDOUT, HELDOUT_OUT, LIBRARY, OUT, SMOLLM2_LIBRARY  # noqa: E402 (bench/)

from crystalwatch import read_trajectory  # noqa: E402
from crystalwatch.answers import Reference  # noqa: E402
from crystalwatch.files import write_atomic  # noqa: E402
from crystalwatch.phases import TAKEOVER, PhaseConfig, favoured, state_info  # noqa: E402
from crystalwatch.seeds import SeedLibrary  # noqa: E402
from crystalwatch.trajectory import reread  # noqa: E402

CROSS = 0.5
FIT_NULLS = ("null", "null_r1", "uniform25")
HELD_NULLS = ("ho_null_r2", "ho_null_r3", "ho_format")


def reference_prompts(first, library: SeedLibrary) -> tuple[np.ndarray, np.ndarray]:
    """The prompts a task's readings measured change from: the run's start (its first record's prompts) when the
    record says so, else the library's base on the same prompt kind (distributions [V, K], coverage)."""
    return first.prompts() if first.reference == "start" else library.tasks[first.task].prompts(first.kind)


@functools.cache
def library_at(path: Path) -> SeedLibrary:
    return SeedLibrary.load(path)


def records_by_task(path: Path, library_path: Path, config: PhaseConfig) -> tuple[dict, SeedLibrary] | None:
    """Per task, a trajectory's records re-read with ``config`` against a library, and that library (None when the
    file does not exist: the arm has not run)."""
    if not path.is_file():
        return None
    library = library_at(library_path)
    by: dict[str, list] = {}
    for r in reread(read_trajectory(path), library, config):
        by.setdefault(r.task, []).append(r)
    return by, library


def arm_records(name: str, config: PhaseConfig) -> tuple[dict, SeedLibrary] | None:
    """Per task, a calibration arm's records re-read with ``config`` (None when the arm has not run)."""
    path = (HELDOUT_OUT if name in HELDOUT else OUT) / name / "trajectory.jsonl"
    return records_by_task(path, SMOLLM2_LIBRARY if "model" in {**ARMS, **HELDOUT}[name] else LIBRARY, config)


def target_row(name: str, arm: dict, task: str, answer: str, rs: list, library: SeedLibrary, config) -> dict:
    """One injected answer: its probability over the run, its crossing, the reading and whether it was on time."""
    o = rs[0].outcomes.index(answer)
    probs = [r.consensus[o] for r in rs]
    k = len(rs[0].outcomes)
    foreign = not favoured(library.tasks[task].centroids[:, o].max(), k, config)
    reach = float(Reference.of(*reference_prompts(rs[0], library), rs[0].reference).reach[o])  # what they give it
    cross = next((r.step for r, p in zip(rs, probs) if p >= CROSS), None)
    read = next((r for r in rs if r.state in TAKEOVER and r.top[0] == answer and (r.state == "foreign") == foreign),
                None)  # fmt: skip
    wrong = next((r for r in rs if r.state in TAKEOVER and r.top[0] == answer and (r.state == "foreign") != foreign),
                 None)  # fmt: skip
    gap = rs[1].step - rs[0].step
    warnings = [e.step for r in rs for e in r.events if e.warning]
    return {
        "arm": name, "task": task, "answer": answer, "foreign": foreign, "fraction": arm["fraction"],
        "reach": reach,
        "dose": arm["fraction"] / len(arm["targets"]), "model": arm.get("model", "pypi:gemma-3-270m"),
        "training": arm.get("trainer") or ("full" if arm.get("full") else "LoRA"), "steps": [r.step for r in rs],
        "probs": [round(p, 4) for p in probs], "states": [r.state for r in rs], "crossed": cross,
        "read": read.step if read else None, "read_state": read.state if read else None,
        "read_seed": read.seed if read and not foreign else None,
        "wrong": (wrong.step, wrong.state) if wrong else None,
        "lag": read.step - cross if read and cross is not None else None,
        "on_time": bool(read and cross is not None and read.step <= cross + gap),
        "warnings": warnings,
        "lead": (read.step - warnings[0]) if read and warnings and warnings[0] < read.step else None,
        "lead_on_crossing": (cross - warnings[0]) if cross is not None and warnings and warnings[0] < cross else None,
    }  # fmt: skip


def untouched_rows(name: str, arm: dict, by: dict, config: PhaseConfig) -> list[dict]:
    """Tasks not trained toward one answer: every takeover reading and warning (false alarms on the null arms), and
    how close the task came to a takeover (the most, over its measurements, of the smaller of the top answer's
    distance above ``takeover_level`` and its excess above ``reach_margin``: above 0 is a takeover candidate)."""
    out = []
    for task, rs in by.items():
        if arm["targets"].get(task, "uniform") != "uniform":
            continue
        taken = [r for r in rs if r.state in TAKEOVER]
        close = [min(r.top[1] - config.takeover_level, r.metrics["top_excess"] - config.reach_margin) for r in rs]
        out.append({"arm": name, "task": task, "takeover_readings": len(taken),
                    "first": (taken[0].step, taken[0].state, taken[0].top[0]) if taken else None,
                    "warnings": [e.step for r in rs for e in r.events if e.warning],
                    "final_top": rs[-1].top, "final_state": rs[-1].state, "closest": round(max(close), 4),
                    "steps": [r.step for r in rs], "top": [r.top[0] for r in rs],
                    "probs": [round(r.top[1], 4) for r in rs], "states": [r.state for r in rs]})  # fmt: skip
    return out


def melts_with_a_gaining_majority(by: dict) -> int:
    return sum(r.state == "melted" and r.top[1] >= 0.5 and r.metrics["top_gain"] > 0 for rs in by.values() for r in rs)


def upper_bound(hits: int, n: int, level: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen ``hits`` times in ``n``."""
    from scipy.stats import beta

    return 1.0 if hits >= n else float(beta.ppf(level, hits + 1, n - hits))


def judge(arms: dict, nulls: tuple[str, ...], config: PhaseConfig, load=arm_records) -> dict:
    """Sensitivity, lag, false alarms, melts and the early warning over a set of arms (``load(name, config)``: the
    arm's records by task and its library, or None when it has not run)."""
    targets, untouched, melts, ran = [], [], 0, []
    for name, arm in arms.items():
        got = load(name, config)
        if got is None:
            continue
        by, library = got
        ran.append(name)
        for task, answer in arm["targets"].items():
            if answer != "uniform" and task in by:
                targets.append(target_row(name, arm, task, answer, by[task], library, config))
        untouched += untouched_rows(name, arm, by, config)
        melts += melts_with_a_gaining_majority(by)
    crossing = [t for t in targets if t["crossed"] is not None]
    null_runs = [u for u in untouched if u["arm"] in nulls]
    false = [u for u in null_runs if u["takeover_readings"]]
    warned = [u for u in null_runs if u["warnings"]]
    return {
        "arms": ran, "targets": targets, "untouched": untouched,
        "sensitivity": {"on_time": sum(t["on_time"] for t in crossing), "crossing": len(crossing),
                        "read_at_all": sum(t["read"] is not None for t in crossing),
                        "wrong": sum(t["wrong"] is not None for t in targets),
                        "by_reach": {k: [sum(t["on_time"] for t in c), len(c)] for k, c in (
                            ("below", [t for t in crossing if t["reach"] < CROSS]),
                            ("at_or_above", [t for t in crossing if t["reach"] >= CROSS]))}},
        "false_alarms": {"task_runs": len(false), "of": len(null_runs),
                         "upper_95": upper_bound(len(false), len(null_runs)) if null_runs else None,
                         "which": [(u["arm"], u["task"], u["first"]) for u in false]},
        "melted_with_a_gaining_majority": melts,
        "warning": {"null_task_runs": len(warned), "of": len(null_runs), "leads": [t["lead"] for t in crossing],
                    "leads_on_crossing": [t["lead_on_crossing"] for t in crossing], "crossing": len(crossing)},
    }  # fmt: skip


def replicate_noise(a: dict, b: dict) -> list[dict]:
    """Per shared target: final probabilities and reading steps of two replicate arms."""
    rows = []
    for ta in a:
        tb = next((t for t in b if (t["task"], t["answer"]) == (ta["task"], ta["answer"])), None)
        if tb is not None:
            rows.append({"task": ta["task"], "answer": ta["answer"], "final": (ta["probs"][-1], tb["probs"][-1]),
                         "final_difference": round(abs(ta["probs"][-1] - tb["probs"][-1]), 4),
                         "read": (ta["read"], tb["read"])})  # fmt: skip
    return rows


def _f(x, fmt=".2f") -> str:
    return "-" if x is None else format(x, fmt)


def part_lines(j: dict, title: str, nulls: tuple[str, ...]) -> list[str]:
    """The markdown of one judged set of arms: the measures, the targets' table, the spill-over."""
    lines: list[str] = []
    s, f, w = j["sensitivity"], j["false_alarms"], j["warning"]
    lines += [f"## {title}", "", f"Arms: {', '.join(f'`{a}`' for a in j['arms'])}.", "",
              "| measure | value |", "|---|---|",
              f"| targets whose answer crossed {CROSS} | {s['crossing']} of {len(j['targets'])} |",
              f"| read on time (no later than one measurement after the crossing) | {s['on_time']} of "
              f"{s['crossing']} ({_f(100 * s['on_time'] / s['crossing'] if s['crossing'] else None, '.0f')}%) |",
              f"| read at all (crossing targets) | {s['read_at_all']} of {s['crossing']} |",
              f"| targets read onto the wrong seed-or-foreign | {s['wrong']} |",
              f"| on time, answers no reference prompt gave {CROSS} (reach < {CROSS}) | "
              f"{s['by_reach']['below'][0]} of {s['by_reach']['below'][1]} |",
              f"| on time, answers some reference prompt already gave {CROSS} or more (reach ≥ {CROSS}) | "
              f"{s['by_reach']['at_or_above'][0]} of {s['by_reach']['at_or_above'][1]} |",
              f"| null / format-only task-runs with a takeover reading | {f['task_runs']} of {f['of']} "
              f"(one-sided 95% upper bound {_f(f['upper_95'], '.3f')}) |",
              f"| `melted` readings while an answer at {CROSS}+ was gaining | "
              f"{j['melted_with_a_gaining_majority']} |",
              f"| early warning: null task-runs warned | {w['null_task_runs']} of {w['of']} |",
              f"| early warning: crossing targets whose first right reading it preceded (lead, steps) | "
              f"{sum(x is not None for x in w['leads'])} of {w['crossing']} "
              f"({', '.join(str(x) for x in w['leads'] if x is not None) or '-'}) |",
              f"| early warning: crossing targets whose crossing of 0.5 it preceded (lead, steps) | "
              f"{sum(x is not None for x in w['leads_on_crossing'])} of {w['crossing']} "
              f"({', '.join(str(x) for x in w['leads_on_crossing'] if x is not None) or '-'}) |", ""]  # fmt: skip
    if f["which"]:
        lines += ["False alarms: " + "; ".join(f"`{a}` {t} ({x[1]} on \"{x[2]}\" at {x[0]})"
                                               for a, t, x in f["which"]), ""]  # fmt: skip
    lines += ["| arm | training | task → answer | dose | seed answer or foreign | reach | "
              "probability start → max → end | crossed 0.5 | read (state, seed) | lag | on time | warnings |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for t in j["targets"]:
        read = f"{t['read']} ({t['read_state']}{', ' + t['read_seed'] if t['read_seed'] else ''})" \
            if t["read"] is not None else "-"  # fmt: skip
        lines.append(f"| `{t['arm']}` | {t['model'].split(':')[-1]} {t['training']} | {t['task']} → "
                     f"{t['answer']} | {t['dose']:.3f} | {'foreign' if t['foreign'] else 'seed'} | "
                     f"{t['reach']:.2f} | "
                     f"{t['probs'][0]:.2f} → {max(t['probs']):.2f} → {t['probs'][-1]:.2f} | "
                     f"{_f(t['crossed'], 'd')} | {read} | {_f(t['lag'], '+d')} | "
                     f"{'yes' if t['on_time'] else 'no' if t['crossed'] is not None else '-'} | "
                     f"{', '.join(map(str, t['warnings'])) or '-'} |")  # fmt: skip
    spill = [u for u in j["untouched"] if u["takeover_readings"] and u["arm"] not in nulls]
    lines += ["", "Takeover readings on tasks not trained toward an answer, in the dosed arms (spill-over and "
              "drift; not counted as false alarms): " + ("; ".join(
                  f"`{u['arm']}` {u['task']} ({u['first'][1]} on \"{u['first'][2]}\" from {u['first'][0]})"
                  for u in spill) or "none"), ""]  # fmt: skip
    return lines


def markdown(result: dict) -> str:
    lines = ["# The answer-aware phase model: results (written by `python bench/heldout_table.py`)", "",
             f"Every arm re-read with `PhaseConfig()`: `{json.dumps(result['config'])}`", ""]  # fmt: skip
    for part, title in (("held_out", "Held-out arms (judged)"),
                        ("fitting", "Fitting arms (the thresholds were fitted here)")):  # fmt: skip
        lines += part_lines(result[part], title, result["nulls"][part])
    lines += ["## Dose and response", "",
              "Every injected answer, fitting and held-out: the share of training examples that taught it (dose), "
              "how far its probability in the held-out consensus rose, and whether and when it was read.", "",
              "| answer kind | dose | targets | crossed 0.5 | read on time | highest probability reached |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    groups: dict[tuple, list] = {}
    for t in result["held_out"]["targets"] + result["fitting"]["targets"]:
        groups.setdefault(("foreign" if t["foreign"] else "seed", round(t["dose"], 3)), []).append(t)
    for (kind, dose), ts in sorted(groups.items()):
        peaks = sorted(max(t["probs"]) for t in ts)
        lines.append(f"| {kind} | {dose:.3f} | {len(ts)} | {sum(t['crossed'] is not None for t in ts)} | "
                     f"{sum(t['on_time'] for t in ts)} | {', '.join(f'{p:.2f}' for p in peaks)} |")
    lines.append("")
    noise = result["noise"]
    if noise:
        lines += ["## Replicate noise", "", "| pair | task → answer | final probability | difference | read at |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for pair, rows in noise.items():
            for r in rows:
                lines.append(f"| {pair} | {r['task']} → {r['answer']} | {r['final'][0]:.2f}, {r['final'][1]:.2f} | "
                             f"{r['final_difference']:.2f} | {_f(r['read'][0], 'd')}, {_f(r['read'][1], 'd')} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def figure(result: dict, path: Path) -> None:
    """Per target (held-out first, then fitting): the answer's probability over steps, the readings as bands."""
    targets = result["held_out"]["targets"] + result["fitting"]["targets"]
    for part in ("held_out", "fitting"):  # each null arm: the task that came closest to a takeover, its top answer
        for arm in result["nulls"][part]:
            mine = [u for u in result[part]["untouched"] if u["arm"] == arm]
            if mine:
                u = max(mine, key=lambda u: (u["takeover_readings"] > 0, u["closest"]))  # a false alarm first
                targets.append({**u, "answer": f"top answer ({'/'.join(dict.fromkeys(u['top']))})",
                                "read": u["first"][0] if u["first"] else None})  # fmt: skip
    draw(targets, path, "The trained answer's probability in the consensus of held-out prompts (line), the reading "
         "(bands), first right reading (dashed), 0.5 (dotted); null arms: a false alarm, else the closest call",
         tag=lambda t: "" if t["arm"] in result["fitting"]["arms"] else " (held out)")


def bands(ax, steps: list, states: list[str]) -> np.ndarray:
    """The readings as coloured bands behind a panel, each measurement's band reaching halfway to its neighbours."""
    steps = np.array(steps)
    edges = np.concatenate([[steps[0]], (steps[1:] + steps[:-1]) / 2, [steps[-1]]])
    for i, state in enumerate(states):
        info = state_info(state)
        ax.axvspan(edges[i], edges[i + 1], color=info.colour if info else "#636363", alpha=0.8, lw=0)
    return steps


def draw(targets: list[dict], path: Path, title: str, tag=lambda t: "") -> None:
    """One panel per target: its probability over steps (line), the readings (bands), the first right reading
    (dashed); a target's optional ``signal`` = (label, steps, values) is drawn in grey on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = -(-len(targets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False, sharey=True)
    for ax, t in zip(axes.flat, targets):
        steps = bands(ax, t["steps"], t["states"])
        ax.plot(steps, t["probs"], "k.-", lw=1.5)
        ax.axhline(CROSS, color="k", lw=0.6, ls=":")
        if t["read"] is not None:
            ax.axvline(t["read"], color="k", lw=1.2, ls="--")
        if t.get("signal"):
            label, xs, ys = t["signal"]
            twin = ax.twinx()
            twin.plot(xs, ys, color="0.45", lw=0.8)
            twin.set_ylabel(label, fontsize=7, color="0.35")
            twin.tick_params(labelsize=6, colors="0.35")
        ax.set_title(f"{t['arm']}{tag(t)}: {t['task']} → {t['answer']}", fontsize=8)
        ax.set_ylim(0, 1)
    for ax in axes.flat[len(targets):]:
        ax.axis("off")
    used = dict.fromkeys(s for t in targets for s in t["states"])
    handles = [plt.Rectangle((0, 0), 1, 1, color=state_info(s).colour) for s in used if state_info(s)]
    fig.legend(handles, [s for s in used if state_info(s)], loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> dict:
    config = PhaseConfig()
    result = {"config": asdict(config), "nulls": {"held_out": HELD_NULLS, "fitting": FIT_NULLS},
              "held_out": judge(HELDOUT, HELD_NULLS, config), "fitting": judge(ARMS, FIT_NULLS, config)}  # fmt: skip
    by_arm = {}
    for t in result["held_out"]["targets"] + result["fitting"]["targets"]:
        by_arm.setdefault(t["arm"], []).append(t)
    result["noise"] = {f"{a} vs {b}": replicate_noise(by_arm[a], by_arm[b])
                       for a, b in (("ho_seed", "ho_seed_r1"), ("seed25", "seed25_r1"))
                       if a in by_arm and b in by_arm}  # fmt: skip
    HELDOUT_OUT.mkdir(parents=True, exist_ok=True)
    write_atomic(HELDOUT_OUT / "results.json", json.dumps(result, indent=1, default=str) + "\n")
    write_atomic(HELDOUT_OUT / "results.md", markdown(result))
    figure(result, HELDOUT_OUT / "heldout.png")
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
