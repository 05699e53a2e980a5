"""The calibration experiment's tables: every arm's trajectory re-read with the checkout's phase model.

    python bench/calibration_table.py                  # writes docs/experiments/calibration/results.{md,json}
    python bench/calibration_table.py --config JSON    # other thresholds (PhaseConfig fields): printed, not written

The arms are bench/calibration.py's (which runs them); this module imports it, never the other way round.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from crystalwatch import read_trajectory
from crystalwatch.files import write_atomic
from crystalwatch.phases import COLLAPSED, CRYSTAL, PhaseConfig
from crystalwatch.seeds import SeedLibrary
from crystalwatch.trajectory import reread

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "docs" / "real" / "gemma-3-270m.seeds.json.gz"
CROSS = 0.5  # the trained answer's probability in the consensus that counts as "learnt"


def read_arm(folder: Path, library: SeedLibrary, config: PhaseConfig) -> list:
    return reread(read_trajectory(folder / "trajectory.jsonl"), library, config)


def task_row(records: list, task: str, answer: str | None, library: SeedLibrary) -> dict:
    """One task of one arm: its path of states, when it entered each, the final reading and the early warning."""
    mine = [r for r in records if r.task == task]
    outcomes = mine[0].outcomes
    entered: dict[str, int] = {mine[0].state: mine[0].step}
    warnings = []
    for r in mine:
        for e in r.events:
            if e.get("kind") == "warning":
                warnings.append(e["step"])
            else:
                entered.setdefault(e["to"], e["step"])
    last = mine[-1]
    m = last.metrics
    row = {
        "task": task, "answer": answer, "steps": [r.step for r in mine], "states": [r.state for r in mine],
        "candidates": [r.candidate for r in mine], "entered": entered, "final": last.state, "seed": last.seed,
        "seed_top": outcomes[int(np.argmax(library.seed(task, last.seed).centroid))] if last.seed else None,
        "collapse": [round(r.metrics["collapse"], 4) for r in mine],
        "consensus_entropy": [round(r.metrics["consensus_entropy"], 4) for r in mine],
        "coverage": [round(r.metrics["coverage"], 4) for r in mine],
        "spread": [round(r.metrics["spread"], 4) for r in mine],
        "top": [r.outcomes[int(np.argmax(r.consensus))] for r in mine],
        "top_prob": [round(max(r.consensus), 4) for r in mine],
        "seed_evidence": m.get("seed_evidence"), "seed_pvalue": m.get("seed_pvalue"),
        "seed_chance": m.get("seed_chance"),
        "warnings": warnings, "collapsed_readings": sum(r.state in COLLAPSED for r in mine),
        "collapsed_candidates": sum(r.candidate in COLLAPSED for r in mine),
        "base_distance": [round(r.metrics["base_distance"], 4) for r in mine],
        "velocity": [r.metrics.get("velocity") for r in mine],
    }  # fmt: skip
    crystal = min((entered[s] for s in (*CRYSTAL, "foreign") if s in entered), default=None)
    row["first_collapsed"] = crystal
    if answer and answer != "uniform":
        i = outcomes.index(answer)
        probs = [r.consensus[i] for r in mine]
        row["answer_prob"] = [round(p, 4) for p in probs]
        row["crossed"] = next((r.step for r, p in zip(mine, probs) if p >= CROSS), None)
    before = [w for w in warnings if crystal is None or w <= crystal]
    row["lead"] = crystal - before[0] if crystal is not None and before else None
    return row


def summarise(out: Path, arms: dict, config: PhaseConfig | None = None) -> dict:
    config = config or PhaseConfig()
    library = SeedLibrary.load(LIBRARY)
    result = {"config": config.__dict__, "arms": {}}
    for name, arm in arms.items():
        folder = out / name
        if not (folder / "trajectory.jsonl").is_file():
            continue
        records = read_arm(folder, library, config)
        summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
        names = dict.fromkeys(r.task for r in records)
        tasks = {t: task_row(records, t, arm["targets"].get(t), library) for t in names}
        result["arms"][name] = {**arm, "run": {k: summary.get(k) for k in ("steps", "seconds", "measurements")},
                                "loss": [summary["loss"][0], summary["loss"][-1]] if summary.get("loss") else None,
                                "tasks": tasks}  # fmt: skip
    return result


def _f(x, fmt=".2f") -> str:
    return "-" if x is None else format(x, fmt)


def markdown(result: dict) -> str:
    arms = result["arms"]
    lines = ["# Calibration: results (written by `python bench/calibration_table.py`)", "",
             "Every arm re-read with the checkout's phase model (`PhaseConfig` below). Steps are training steps; "
             "each arm was measured every 10 steps on the 15 tasks' chat prompts.", "",
             f"`PhaseConfig`: `{json.dumps(result['config'])}`", "", "## Arms", "",
             "| arm | injected | steps | seconds | loss first → last |", "|---|---|---|---|---|"]  # fmt: skip
    for name, a in arms.items():
        injected = ", ".join(f"{t} → {v}" for t, v in a["targets"].items()) or "nothing"
        loss = f"{a['loss'][0]:.2f} → {a['loss'][1]:.2f}" if a["loss"] else "-"
        lines.append(f"| `{name}` | f {a['fraction']}: {injected} (seed {a['seed']}) | {a['run']['steps']} | "
                     f"{a['run']['seconds']} | {loss} |")  # fmt: skip
    lines += ["", "## Target tasks", "",
              "Trained answer's probability in the consensus of the held-out prompts (start → end) and the first "
              f"step it reached {CROSS}; first step the task was in a collapsed state (entered, after hold 2); the "
              "final reading with the seed named (its top answer), the seed evidence (bits), its permutation "
              "p-value and the chance that a one-answer crystal on a random answer reads as a seed; the "
              "early warning's steps and its lead over the first collapsed state.", "",
              "| arm | task → answer | answer prob | crossed 0.5 | entered (state: step) | final | seed (top) | "
              "evidence | p | chance | warnings | lead |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, a in arms.items():
        for task, answer in a["targets"].items():
            t = a["tasks"].get(task)
            if t is None:
                continue
            prob = f"{t['answer_prob'][0]:.2f} → {t['answer_prob'][-1]:.2f}" if "answer_prob" in t else "-"
            entered = ", ".join(f"{s}: {k}" for s, k in t["entered"].items())
            lines.append(f"| `{name}` | {task} → {answer} | {prob} | {_f(t.get('crossed'), 'd')} | {entered} | "
                         f"{t['final']} | {t['seed'] or '-'} ({t['seed_top'] or '-'}) | {_f(t['seed_evidence'])} | "
                         f"{_f(t['seed_pvalue'], '.3f')} | {_f(t['seed_chance'])} | "
                         f"{', '.join(map(str, t['warnings'])) or '-'} | {_f(t['lead'], 'd')} |")  # fmt: skip
    lines += ["", "## Specificity: collapsed readings on tasks not trained toward an answer", "",
              "Readings (task × measurement) in `nucleated`, `settling`, `settled` or `foreign`, of all readings, "
              "on every task of the null arms and the uniform arm, and on the untouched tasks of the dosed arms; "
              "and the early warnings there.", "",
              "| arm | collapsed readings | of | which | warnings (task: steps) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name, a in arms.items():
        watched = [t for task, t in a["tasks"].items()
                   if task not in a["targets"] or a["targets"][task] == "uniform"]  # fmt: skip
        hits = [f"{t['task']} ({t['collapsed_readings']})" for t in watched if t["collapsed_readings"]]
        total = sum(len(t["states"]) for t in watched)
        warns = [f"{t['task']}: {', '.join(map(str, t['warnings']))}" for t in watched if t["warnings"]]
        lines.append(f"| `{name}` | {sum(t['collapsed_readings'] for t in watched)} | {total} | "
                     f"{', '.join(hits) or '-'} | {'; '.join(warns) or '-'} |")  # fmt: skip
    tasks = list(dict.fromkeys(t for a in arms.values() for t in a["tasks"]))
    lines += ["", "## Every task: final state, collapse first → last, top answer first → last", "",
              "| task | " + " | ".join(f"`{n}`" for n in arms) + " |", "|---|" + "---|" * len(arms)]
    for task in tasks:
        cells = []
        for a in arms.values():
            t = a["tasks"].get(task)
            cells.append("-" if t is None else
                         f"{t['final']} {t['collapse'][0]:+.2f}→{t['collapse'][-1]:+.2f}, "
                         f"{t['top'][0]} {t['top_prob'][0]:.2f}→{t['top'][-1]} {t['top_prob'][-1]:.2f}")  # fmt: skip
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "## The noise floor: every task of the null and uniform arms, all measurements after step 0", "",
              "What training without an injected answer does to the readings: the range of collapse, the largest "
              "move from the base's consensus, the sharpest consensus, the velocity (mass moved per step; "
              "median and 90th percentile), and the collapsed candidates that hysteresis (hold 2) kept from "
              "becoming states.", "",
              "| arm | collapse min | collapse max | base_distance max | consensus entropy min | velocity median | "
              "velocity p90 | collapsed candidates |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, a in arms.items():
        if a["targets"] and any(v != "uniform" for v in a["targets"].values()):
            continue
        ts = list(a["tasks"].values())
        col = [x for t in ts for x in t["collapse"][1:]]
        dist = [x for t in ts for x in t["base_distance"][1:]]
        ent = [x for t in ts for x in t["consensus_entropy"][1:]]
        vel = [x for t in ts for x in t["velocity"][1:] if x is not None]
        cand = sum(t["collapsed_candidates"] for t in ts)
        lines.append(f"| `{name}` | {min(col):+.2f} | {max(col):+.2f} | {max(dist):.3f} | {min(ent):.2f} | "
                     f"{np.median(vel):.4f} | {np.percentile(vel, 90):.4f} | {cand} |")  # fmt: skip
    lines += ["", "## Noise between repeated arms (seed 0 vs seed 1)", "",
              "| pair | max abs(final collapse difference) | task | median | trained answer prob. difference |",
              "|---|---|---|---|---|"]  # fmt: skip
    for a, b in (("null", "null_r1"), ("seed25", "seed25_r1")):
        if a not in arms or b not in arms:
            continue
        diffs = {t: abs(arms[a]["tasks"][t]["collapse"][-1] - arms[b]["tasks"][t]["collapse"][-1])
                 for t in arms[a]["tasks"] if t in arms[b]["tasks"]}  # fmt: skip
        worst = max(diffs, key=diffs.get)
        answer = [f"{t}: {abs(arms[a]['tasks'][t]['answer_prob'][-1] - arms[b]['tasks'][t]['answer_prob'][-1]):.2f}"
                  for t in arms[a]["targets"] if "answer_prob" in arms[a]["tasks"].get(t, {})]  # fmt: skip
        lines.append(f"| `{a}` vs `{b}` | {diffs[worst]:.3f} | {worst} | {np.median(list(diffs.values())):.3f} | "
                     f"{', '.join(answer) or '-'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_table(out: Path, arms: dict, config: PhaseConfig | None = None) -> dict:
    result = summarise(out, arms, config)
    write_atomic(out / "results.json", json.dumps(result, indent=1) + "\n")
    write_atomic(out / "results.md", markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    from calibration import ARMS, OUT

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=json.loads, help="PhaseConfig fields as JSON: print the table read with "
                        "them, write nothing")  # fmt: skip
    args = parser.parse_args()
    if args.config is None:
        write_table(OUT, ARMS)
    else:
        print(markdown(summarise(OUT, ARMS, PhaseConfig(**args.config))))
