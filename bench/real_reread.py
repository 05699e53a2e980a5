"""The real-model ladder (docs/real/ladder.jsonl: gemma base, 40 steps of LoRA SFT, SmolLM2-135M-Instruct) re-read
with the current phase model, so that the README and docs/real-phases.md quote today's readings.

    python bench/real_reread.py      # writes docs/real/reread.md (seconds; no model is loaded)

Each checkpoint of the ladder is a different stage, so it is read as ``crystalwatch trajectory`` reads a ladder:
``hold=1``.
"""

from __future__ import annotations

from pathlib import Path

from crystalwatch.files import write_atomic
from crystalwatch.phases import PhaseConfig
from crystalwatch.records import read_trajectory
from crystalwatch.seeds import SeedLibrary
from crystalwatch.trajectory import reread

REAL = Path(__file__).resolve().parent.parent / "docs" / "real"


def table() -> str:
    """The re-read ladder as the markdown docs/real/reread.md holds."""
    records = reread(read_trajectory(REAL / "ladder.jsonl"), SeedLibrary.load(REAL / "gemma-3-270m.seeds.json.gz"),
                     PhaseConfig(hold=1))  # fmt: skip
    labels = list(dict.fromkeys(r.label or str(r.step) for r in records))
    by: dict[str, dict[str, str]] = {}
    for r in records:
        top = f'"{r.top[0]}" {r.top[1]:.2f}'
        seed = f" ({r.seed})" if r.state in ("nucleating", "nucleated", "settling", "settled") else ""
        by.setdefault(r.task, {})[r.label or str(r.step)] = f"`{r.state}`{seed}, {top}"
    lines = ["# The real-model ladder re-read with the current phase model (written by `python bench/real_reread.py`)",
             "", f"`PhaseConfig(hold=1)`: `{PhaseConfig(hold=1)}`", "",
             "Per task and checkpoint: the reading, (its seed,) the consensus's top answer.", "",
             "| task | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]  # fmt: skip
    lines += [f"| {task} | " + " | ".join(row.get(label, "-") for label in labels) + " |" for task, row in by.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    text = table()
    write_atomic(REAL / "reread.md", text)
    print(text)


if __name__ == "__main__":
    main()
