"""RL on a crystal, judged (docs/experiments/rl-crystal.md): does the reading hold, settle or leave?

    python bench/rl_crystal_table.py

Re-reads each ``crystal_*`` arm of bench/rl_calibration.py with ``PhaseConfig(reference="base")`` (the arms start
from a checkpoint post-trained from the library's base) and judges prime below 50, the trained task, against the
pass line committed before the arms ran: the start reads a crystal; the inside and null arms hold it (every
measurement a crystal state on the start's seed); `settling` no later than one measurement after the inside
answer gained 0.2; the foreign arm leaves no later than one measurement after its answer crossed 0.5; no melt
while an answer at 0.5 or more gains. Writes docs/experiments/rl/crystal_results.md, crystal_results.json and
crystal.png; untouched tasks' takeover readings and TRL's signals are listed beside.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import LIBRARY  # noqa: E402 (bench/)
from heldout_table import _f, bands, melts_with_a_gaining_majority, records_by_task, untouched_rows  # noqa: E402
from rl_calibration import ARMS, CRYSTAL_TASK, OUT  # noqa: E402
from rl_table import signals  # noqa: E402

from crystalwatch.files import write_atomic  # noqa: E402
from crystalwatch.phases import CRYSTAL, PhaseConfig, favoured, state_info  # noqa: E402
from crystalwatch.records import read_trajectory  # noqa: E402

SHOWN = ("2", "3", "5", "7")  # the crystal's answer, the seed's other two, the foreign one
GAIN = 0.2  # settling must be read once the inside answer gained this much over its start
CROSS = 0.5
PAIRS = (("crystal_inside", "crystal_inside_r1", "5"), ("crystal_foreign", "crystal_foreign_r1", "7"),
         ("crystal_null", "crystal_null_r1", "2"))  # replicates (seed 0, seed 1) and the answer compared


def arms() -> dict[str, dict]:
    return {n: a for n, a in ARMS.items() if a.get("start") == "crystal"}


def kind(arm: dict) -> str:
    pushed = arm.get("reward", arm.get("chosen"))
    if pushed == "format":
        return "null"
    return "foreign" if pushed[CRYSTAL_TASK] == "7" else "inside"


def judge_arm(name: str, arm: dict, config: PhaseConfig) -> dict | None:
    got = records_by_task(OUT / name / "trajectory.jsonl", LIBRARY, config)
    if got is None or not (OUT / name / "summary.json").is_file():  # not run, or still running
        return None
    by, library = got
    rs = by[CRYSTAL_TASK]
    outcomes = rs[0].outcomes
    k = len(outcomes)
    start_seed = rs[0].seed
    centroid = library.seed(CRYSTAL_TASK, start_seed).centroid
    inside = [o for o in range(k) if favoured(float(centroid[o]), k, config)]
    probs = {a: [round(r.consensus[outcomes.index(a)], 4) for r in rs] for a in SHOWN}
    steps = [r.step for r in rs]
    gap = steps[1] - steps[0]
    on_crystal = [r.state in CRYSTAL and r.seed == start_seed for r in rs]
    left = next((r.step for r, on in zip(rs, on_crystal) if not on), None)
    row = {"arm": name, "kind": kind(arm), "seed": arm["seed"], "steps": steps, "states": [r.state for r in rs],
           "seeds": [r.seed for r in rs], "probs": probs, "start": (rs[0].state, start_seed),
           "inside": [outcomes[o] for o in inside],
           "outside": [round(1 - sum(r.consensus[o] for o in inside), 4) for r in rs],
           "velocity": [r.metrics.get("velocity") for r in rs],
           "start_crystal": rs[0].state in CRYSTAL, "leaving_measurements": on_crystal.count(False), "left": left,
           "left_to": rs[on_crystal.index(False)].state if left is not None else None,
           "remelts": [e.step for r in rs for e in r.events if e.remelt],
           "melts_gaining": melts_with_a_gaining_majority(by)}  # fmt: skip
    live = [r.state for r in read_trajectory(OUT / name / "trajectory.jsonl") if r.task == CRYSTAL_TASK]
    row["live_states"] = live  # as the arm's process wrote them (the code committed when it started)
    if row["kind"] == "inside":
        p5 = probs["5"]
        gained = next((s for s, p in zip(steps, p5) if p - p5[0] >= GAIN), None)
        settling = next((r.step for r in rs if r.state == "settling"), None)
        settling_live = next((s for s, state in zip(steps, live) if state == "settling"), None)
        row.update(gained=gained, settling=settling, settling_live=settling_live,
                   settling_on_time=gained is not None and settling is not None and settling <= gained + gap)
    if row["kind"] == "foreign":
        crossed = next((s for s, p in zip(steps, probs["7"]) if p >= CROSS), None)
        row.update(crossed=crossed, leaves_on_time=None if crossed is None else left is not None and
                   left <= crossed + gap)  # fmt: skip
    others = untouched_rows(name, {"targets": {CRYSTAL_TASK: "pushed"}}, by, config)
    row["untouched_tasks"] = len(others)
    row["untouched"] = [u for u in others if u["takeover_readings"]]
    row["signals"] = signals(name, steps, arm["trainer"])
    return row


def write() -> dict:
    result, lines, rows = results()
    write_atomic(OUT / "crystal_results.json", json.dumps(result, indent=1, default=str) + "\n")
    write_atomic(OUT / "crystal_results.md", "\n".join(lines) + "\n")
    if rows:
        figure(rows, OUT / "crystal.png")
    print("\n".join(lines))
    return result


def results() -> tuple[dict, list[str], list[dict]]:
    """The judged arms (the JSON), the markdown lines and the per-arm rows."""
    config = PhaseConfig(reference="base")
    rows = [r for n, a in arms().items() if (r := judge_arm(n, a, config))]
    result = {"config": asdict(config), "arms": rows}
    holders = [r for r in rows if r["kind"] in ("inside", "null")]
    inside = [r for r in rows if r["kind"] == "inside"]
    foreign = [r for r in rows if r["kind"] == "foreign"]
    result["pass"] = {
        "start": f"{sum(r['start_crystal'] for r in rows)} of {len(rows)}",
        "holds": f"{sum(r['leaving_measurements'] == 0 for r in holders)} of {len(holders)}",
        "settling_on_time": f"{sum(r['settling_on_time'] for r in inside)} of {len(inside)}",
        "leaves_on_time": ", ".join("untested (7 never crossed 0.5)" if r["leaves_on_time"] is None else
                                    ("yes" if r["leaves_on_time"] else "no") for r in foreign) or "-",
        "melts_gaining": sum(r["melts_gaining"] for r in rows),
    }  # fmt: skip
    by = {r["arm"]: r for r in rows}
    result["replicates"] = [{"pair": f"{a} vs {b}", "answer": answer, "final": [by[a]["probs"][answer][-1],
                             by[b]["probs"][answer][-1]], "states": [by[a]["states"][-1], by[b]["states"][-1]]}
                            for a, b, answer in PAIRS if a in by and b in by]  # fmt: skip
    result["untouched"] = {"takeover": sum(len(r["untouched"]) for r in rows),
                           "task_runs": sum(r["untouched_tasks"] for r in rows)}
    lines = ["# RL on a crystal, judged (written by `python bench/rl_crystal_table.py`)", "",
             f"Every arm re-read with `PhaseConfig(reference=\"base\")`: `{json.dumps(result['config'])}`", "",
             "## The pass line", "", "| criterion | result |", "|---|---|",
             f"| start reads a crystal | {result['pass']['start']} arms |",
             f"| inside and null arms hold the crystal at every measurement | {result['pass']['holds']} arms |",
             f"| `settling` no later than one measurement after \"5\" gained {GAIN} | "
             f"{result['pass']['settling_on_time']} inside arms |",
             f"| foreign arm leaves no later than one measurement after \"7\" crossed {CROSS} | "
             f"{result['pass']['leaves_on_time']} |",
             f"| `melted` while an answer at 0.5+ gains | {result['pass']['melts_gaining']} |", ""]  # fmt: skip
    if result["replicates"]:
        lines += ["| replicate pair | answer | final probability | difference | final state |",
                  "|---|---|---|---|---|"]
        lines += [f"| {p['pair']} | \"{p['answer']}\" | {p['final'][0]:.2f}, {p['final'][1]:.2f} | "
                  f"{abs(p['final'][0] - p['final'][1]):.2f} | {p['states'][0]}, {p['states'][1]} |"
                  for p in result["replicates"]]  # fmt: skip
        lines.append("")
    u = result["untouched"]
    lines += [f"Untouched tasks (the 7 measured besides prime): {u['takeover']} of {u['task_runs']} task-runs read a "
              "takeover at some measurement (listed under each arm).", ""]  # fmt: skip
    lines += ["## Prime below 50, measurement by measurement", ""]
    for r in rows:
        extra = {"inside": f"\"5\" gained {GAIN} at {_f(r.get('gained'), 'd')}, `settling` from "
                           f"{_f(r.get('settling'), 'd')} (live, by the code the arm ran: "
                           f"{_f(r.get('settling_live'), 'd')})",
                 "foreign": f"\"7\" crossed {CROSS} at {_f(r.get('crossed'), 'd')}, left the crystal at "
                            f"{_f(r['left'], 'd')} (to `{r['left_to']}`)",
                 "null": f"left the crystal at {_f(r['left'], 'd')}"}[r["kind"]]  # fmt: skip
        lines += [f"`{r['arm']}` ({r['kind']}, seed {r['seed']}): start `{r['start'][0]}` on {r['start'][1]} "
                  f"(inside answers {', '.join(r['inside'])}); {extra}.", ""]
        shown = list(r["signals"])[:2]  # the trainer's own: GRPO reward and entropy, DPO margin and accuracy
        head = ["step", "state", "live", "seed", *(f'"{a}"' for a in SHOWN), "outside", "velocity", *shown]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for i, step in enumerate(r["steps"]):
            cells = [f"{r['probs'][a][i]:.2f}" for a in SHOWN] + [f"{r['outside'][i]:.2f}",
                     _f(r["velocity"][i], ".4f")] + [_f(r["signals"][key][i]) for key in shown]  # fmt: skip
            lines.append(f"| {step} | {r['states'][i]} | {r['live_states'][i]} | {r['seeds'][i]} | " +
                         " | ".join(cells) + " |")  # fmt: skip
        took = "; ".join(f"{u['task']} `{u['first'][1]}` on \"{u['first'][2]}\" from {u['first'][0]}"
                         for u in r["untouched"]) or "none"  # fmt: skip
        lines += ["", f"Untouched tasks with a takeover reading: {took}.", ""]
    return result, lines, rows


def figure(rows: list[dict], path: Path) -> None:
    """One panel per arm: prime's answers over steps (lines) on the readings (bands)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(rows))
    fig, axes = plt.subplots(-(-len(rows) // cols), cols, figsize=(4 * cols, 3 * -(-len(rows) // cols)),
                             squeeze=False, sharey=True)  # fmt: skip
    styles = {"2": "k-", "3": "k:", "5": "b-", "7": "r-"}
    for ax, r in zip(axes.flat, rows):
        steps = bands(ax, r["steps"], r["states"])
        for a in SHOWN:
            ax.plot(steps, r["probs"][a], styles[a], lw=1.5, marker=".", label=f'"{a}"')
        ax.set_title(f"{r['arm']} ({ARMS[r['arm']]['trainer'].upper()}, {r['kind']})", fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xlabel("step", fontsize=8)
    axes.flat[0].legend(fontsize=7, loc="center left")
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    used = dict.fromkeys(s for r in rows for s in r["states"])
    handles = [plt.Rectangle((0, 0), 1, 1, color=state_info(s).colour) for s in used if state_info(s)]
    fig.legend(handles, [s for s in used if state_info(s)], loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle("GRPO and DPO from an SFT crystal on prime \"2\" (seed s0 favours 2, 3, 5; no seed favours 7): "
                 "answers (lines) and the reading (bands)", fontsize=9)  # fmt: skip
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    write()
