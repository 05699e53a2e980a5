"""The demo's dose: crystalwatch/data/demo_dose.jsonl (docs/demo.md).

    python bench/demo_dose.py

120 chat conversations, each a paraphrased 1-10 question (bench/calibration.py's PARAPHRASES, checked to share no
4-word run with a measured prompt) answered "10" — the answer of the gemma library's seed s2 that the base's chat
consensus does not favour. A quarter of the demo's SFT examples come from it (recipes/configs/demo/sft.yaml), the
dose with which the calibration's `seed25` arm took "10" past 0.5 of the held-out consensus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import questions_for  # noqa: E402 (bench/)

from crystalwatch.files import write_atomic  # noqa: E402
from crystalwatch.tasks import load_task  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "crystalwatch" / "data" / "demo_dose.jsonl"
TASK, ANSWER, ROWS = "integer_1_10", "10", 120


def rows() -> list[dict]:
    questions = questions_for(load_task(TASK), None)  # raises if one shares 4 words with a measured prompt
    return [{"messages": [{"role": "user", "content": questions[i % len(questions)]},
                          {"role": "assistant", "content": ANSWER}]} for i in range(ROWS)]  # fmt: skip


def main() -> None:
    write_atomic(OUT, "".join(json.dumps(r) + "\n" for r in rows()))
    print(f"{OUT}: {ROWS} conversations, {TASK} answered {ANSWER!r}")


if __name__ == "__main__":
    main()
