"""The DPO and GRPO arms read with the frozen answer-aware readings (docs/experiments/rl.md).

    python bench/rl_table.py

Writes docs/experiments/rl/results.md, results.json and rl.png from the arms that have run. Every trajectory is
re-read with ``PhaseConfig()`` and judged exactly as the SFT held-out arms (bench/heldout_table.py): a target is a
pushed answer whose consensus probability reaches 0.5, on time = read no later than one measurement after that;
false alarms are takeover readings on the null arms. Beside the readings, TRL's own per-step signals of each arm
(DPO reward margin and accuracy, GRPO mean reward, entropy and the share of groups whose rewards were all equal),
averaged over the steps since the previous measurement.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import LIBRARY  # noqa: E402 (bench/)
from heldout_table import _f, draw, judge, part_lines, records_by_task, replicate_noise  # noqa: E402
from rl_calibration import ARMS, OUT  # noqa: E402

from crystalwatch.files import write_atomic  # noqa: E402
from crystalwatch.phases import PhaseConfig  # noqa: E402

NULLS = ("dpo_null", "grpo_null", "dpo_null_r1", "grpo_null_r1")
PAIRS = (("dpo_seed", "dpo_seed_r1"), ("grpo_seed", "grpo_seed_r1"))
SIGNALS = {"dpo": ["rewards/margins", "rewards/accuracies"], "grpo": ["reward", "entropy", "frac_reward_zero_std"]}
DRAWN = {"dpo": ("rewards/margins", "DPO reward margin"), "grpo": ("reward", "GRPO mean reward")}


def judged_arm(arm: dict) -> dict:
    """An RL arm in the shape bench/heldout_table.py judges: ``targets`` maps a task to its one pushed answer (a
    reward for a set of answers, or for any answer, pushes none: ``uniform``), ``fraction`` the share of training
    examples that ask a target task."""
    pushed = arm.get("chosen", arm.get("reward"))
    if arm["trainer"] == "dpo":
        return {**arm, "targets": pushed}
    targets = {t: a if isinstance(a, str) else "uniform" for t, a in pushed.items()} if isinstance(pushed, dict) \
        else {t: "uniform" for t in ("integer_1_10", "weekday")}  # fmt: skip
    return {**arm, "targets": targets, "fraction": 1.0}


def load(name: str, config: PhaseConfig):
    """Per task, an RL arm's records re-read with ``config`` and the gemma library (None when it has not run)."""
    return records_by_task(OUT / name / "trajectory.jsonl", LIBRARY, config)


def signals(name: str, steps: list[int], trainer: str) -> dict[str, list]:
    """TRL's logged signals of an arm, averaged over the steps since the previous measurement (None: not logged)."""
    path = OUT / name / "summary.json"
    if not path.is_file():
        return {}
    history = [h for h in json.loads(path.read_text())["log_history"] if "step" in h]
    out = {}
    for key in SIGNALS[trainer]:
        values = []
        for lo, hi in zip([-1, *steps[:-1]], steps):
            xs = [h[key] for h in history if key in h and lo < h["step"] <= hi]
            values.append(round(float(np.mean(xs)), 3) if xs else None)
        out[key] = values
    return out


def signal_lines(result: dict) -> list[str]:
    lines = ["## TRL's own signals beside the readings", "",
             "Each arm's logged per-step signals, averaged over the steps up to each measurement (none at step 0).",
             ""]  # fmt: skip
    for name, got in result["signals"].items():
        if not got["values"]:
            continue
        lines += [f"`{name}`", "", "| signal | " + " | ".join(str(s) for s in got["steps"]) + " |",
                  "|---|" + "---|" * len(got["steps"])]  # fmt: skip
        for key, values in got["values"].items():
            lines.append(f"| {key} | " + " | ".join(_f(v, ".2f") for v in values) + " |")
        lines.append("")
    return lines


def write() -> dict:
    config = PhaseConfig()
    arms = {n: judged_arm(a) for n, a in ARMS.items() if a["trainer"] != "sft" and "start" not in a}  # first part
    result = {"config": asdict(config), "nulls": NULLS}
    for trainer in ("dpo", "grpo"):
        mine = {n: a for n, a in arms.items() if a["trainer"] == trainer}
        result[trainer] = judge(mine, tuple(n for n in NULLS if n in mine), config, load=load)
    by_arm: dict[str, list] = {}
    for t in result["dpo"]["targets"] + result["grpo"]["targets"]:
        by_arm.setdefault(t["arm"], []).append(t)
    result["noise"] = {f"{a} vs {b}": replicate_noise(by_arm[a], by_arm[b]) for a, b in PAIRS
                       if a in by_arm and b in by_arm}  # fmt: skip
    result["signals"] = {}
    for trainer in ("dpo", "grpo"):
        for name in result[trainer]["arms"]:
            steps = next(u["steps"] for u in result[trainer]["untouched"] if u["arm"] == name)
            result["signals"][name] = {"steps": steps, "values": signals(name, steps, trainer)}
    lines = ["# DPO and GRPO arms read with the frozen readings (written by `python bench/rl_table.py`)", "",
             f"Every arm re-read with `PhaseConfig()`: `{json.dumps(result['config'])}`", ""]  # fmt: skip
    for trainer, title in (("dpo", "DPO arms"), ("grpo", "GRPO arms")):
        lines += part_lines(result[trainer], title, NULLS)
    if result["noise"]:
        lines += ["## Replicate noise", "", "| pair | task → answer | final probability | difference | read at |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for pair, rows in result["noise"].items():
            lines += [f"| {pair} | {r['task']} → {r['answer']} | {r['final'][0]:.2f}, {r['final'][1]:.2f} | "
                      f"{r['final_difference']:.2f} | {_f(r['read'][0], 'd')}, {_f(r['read'][1], 'd')} |"
                      for r in rows]  # fmt: skip
        lines.append("")
    lines += signal_lines(result)
    OUT.mkdir(parents=True, exist_ok=True)
    write_atomic(OUT / "results.json", json.dumps(result, indent=1, default=str) + "\n")
    write_atomic(OUT / "results.md", "\n".join(lines) + "\n")
    figure(result, arms, OUT / "rl.png")
    print("\n".join(lines))
    return result


def figure(result: dict, arms: dict, path: Path) -> None:
    """Each target, then each arm without one (its task closest to a takeover), with TRL's signal in grey."""
    panels = []
    for trainer in ("dpo", "grpo"):
        j = result[trainer]
        panels += j["targets"]
        for name in j["arms"]:
            if not any(t["arm"] == name for t in j["targets"]):
                mine = [u for u in j["untouched"] if u["arm"] == name]
                u = max(mine, key=lambda u: (u["takeover_readings"] > 0, u["closest"]))
                panels.append({**u, "answer": f"top answer ({'/'.join(dict.fromkeys(u['top']))})",
                               "read": u["first"][0] if u["first"] else None})  # fmt: skip
    for p in panels:
        key, label = DRAWN[arms[p["arm"]]["trainer"]]
        got = result["signals"].get(p["arm"], {})
        values = got.get("values", {}).get(key)
        if values:
            xs = [s for s, v in zip(got["steps"], values) if v is not None]
            p["signal"] = (label, xs, [v for v in values if v is not None])
    if panels:
        draw(panels, path, "The pushed answer's probability in the consensus of the task's own prompts (line), the "
             "reading (bands), first right reading (dashed), 0.5 (dotted), TRL's signal (grey); arms without a "
             "target: the task closest to a takeover")  # fmt: skip


if __name__ == "__main__":
    write()
