"""GPU benchmark at bf16, ready to run on one GPU with no downloads (about 5 minutes on one H200).

    python bench/gpu.py                 # writes bench/results/gpu.md and bench/results/gpu.json
    python bench/gpu.py --smoke         # tiny shapes on the CPU in seconds: checks the script itself (CI runs it)

Models are built here with random weights in the shapes of OLMo-2-0425-1B (vocabulary 100,352) and
gemma-3-270m (vocabulary 262,144, sliding-window layers); the tokenizer is crystalwatch's tiny BPE, so the
prompts are short but the LM head costs what a real vocabulary costs. It measures:

1. the callback's share of training time: TRL SFT of the OLMo-shaped model, bf16, measuring all 15 tasks
   every 50 steps (the callback's own time against the training steps' time);
2. the exact scorer against a lower bound (the decoder body over the same packed tokens with a plain causal
   mask, the LM head at the same positions), both at bf16, 15 tasks' chat prompts;
3. the peak GPU memory of one measurement above the resident model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402

from crystalwatch.measure import plan, run  # noqa: E402
from crystalwatch.scoring import trie  # noqa: E402
from crystalwatch.scoring.exact import HEAD_CHUNK_ELEMENTS, _final_logits  # noqa: E402
from crystalwatch.scoring.model import split_model  # noqa: E402
from crystalwatch.tiny import build_tokenizer  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def build(shape: str, vocab: int, smoke: bool, device: str):
    """A randomly initialised causal LM in the shape of a real one (or a tiny one for --smoke), bf16."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, Olmo2Config

    if shape == "olmo2-1b":
        config = Olmo2Config(vocab_size=100_352, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                             num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=4096)  # fmt: skip
        if smoke:
            config = Olmo2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=4)  # fmt: skip
    else:
        config = Gemma3TextConfig(vocab_size=262_144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                                  num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
                                  max_position_embeddings=32_768)  # fmt: skip
        if smoke:
            config = Gemma3TextConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                                      sliding_window=24)  # fmt: skip
    torch.manual_seed(0)
    dtype = torch.float32 if smoke else torch.bfloat16
    return AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def lower_bound(model, requests, device: str) -> None:
    """exact's own blocks (``trie.layout``) in its batches (``trie.batches``) through the body with a plain causal
    mask, the head where exact needs it: exact's work without the tree mask and bookkeeping."""
    body, head, config = split_model(model)
    chunk = max(1, HEAD_CHUNK_ELEMENTS // head.weight.shape[0])
    for batch in trie.batches(trie.layout(requests, 512), 4096):
        ids = torch.zeros(len(batch), max(b.length for b in batch), dtype=torch.long)
        rows, cols = [], []
        for r, block in enumerate(batch):
            ids[r, : block.length] = torch.tensor(block.tokens)
            needed = block.needed
            rows += [r] * len(needed)
            cols += needed
        hidden = body(input_ids=ids.to(device), use_cache=False).last_hidden_state
        rows_t, cols_t = torch.tensor(rows, device=device), torch.tensor(cols, device=device)
        for lo in range(0, len(rows), chunk):
            at = hidden[rows_t[lo : lo + chunk], cols_t[lo : lo + chunk]]
            torch.log_softmax(_final_logits(head, config, at), -1)


def best_of(n: int, fn, device: str) -> float:
    times = []
    for _ in range(n):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def scorer(shape: str, tokenizer, device: str, smoke: bool) -> dict:
    model = build(shape, len(tokenizer), smoke, device)
    prepared = plan(tokenizer, None, kind="chat")
    flat = [r for reqs in prepared.requests.values() for r in reqs]
    run(model, tokenizer, prepared)  # warm-up (kernels, allocator)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        resident = torch.cuda.memory_allocated()
    exact = best_of(1 if smoke else 3, lambda: run(model, tokenizer, prepared), device)
    peak = (torch.cuda.max_memory_allocated() - resident) / 2**20 if device.startswith("cuda") else None
    bound = best_of(1 if smoke else 3, lambda: lower_bound(model, flat, device), device)
    params = sum(p.numel() for p in model.parameters())
    return {"shape": shape, "parameters": params, "prompts": len(flat), "exact_s": exact, "lower_bound_s": bound,
            "ratio": exact / bound, "measurement_peak_mib": peak}  # fmt: skip


def callback_share(tokenizer, device: str, smoke: bool, out: Path) -> dict:
    """TRL SFT of the OLMo-shaped model at bf16 with the callback measuring all 15 tasks every 50 steps."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from crystalwatch import CrystalWatchCallback

    model = build("olmo2-1b", len(tokenizer), smoke, device).train()
    steps = 20 if smoke else 200
    text = "The quick brown fox jumps over the lazy dog. " * 40
    rows = [{"messages": [{"role": "user", "content": text[: 100 + i]}, {"role": "assistant", "content": text}]}
            for i in range(64)]  # fmt: skip
    step_times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            sync(device)
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            sync(device)
            step_times.append(time.perf_counter() - self.start)

    cb = CrystalWatchCallback(every_n_steps=5 if smoke else 50, console=False)
    args = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-5,
                     bf16=not smoke, use_cpu=device == "cpu", max_length=512, report_to="none", save_strategy="no",
                     logging_steps=10, disable_tqdm=True, activation_checkpointing=False)  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         callbacks=[Timer(), cb])  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    train = sum(step_times)  # Timer comes first: its step times end before the callback measures
    return {"steps": steps, "every": cb.config.every_n_steps, "measurements": cb.index, "callback_s": cb.seconds,
            "wall_s": wall,
            "step_s_median": sorted(step_times)[len(step_times) // 2], "callback_share_of_wall": cb.seconds / wall,
            "callback_share_of_steps": cb.seconds / max(train, 1e-9), "errors": cb.errors}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: check the script in seconds")
    parser.add_argument("--out", default=None, help="results folder (default bench/results; --smoke: a temp dir)")
    args = parser.parse_args()
    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    if device == "cpu" and not args.smoke:
        raise SystemExit("no GPU here: run it where one is, or pass --smoke to check the script on the CPU")
    out = Path(args.out) if args.out else RESULTS
    tokenizer = build_tokenizer()
    started = time.perf_counter()
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "smoke": args.smoke,
        "scorer": [scorer(s, tokenizer, device, args.smoke) for s in ("olmo2-1b", "gemma3-270m")],
        "callback": callback_share(tokenizer, device, args.smoke, out / "gpu-sft"),
    }  # fmt: skip
    result["seconds"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# GPU benchmark (bench/gpu.py) on {result['device']}, torch {result['torch']}, bf16", "",
             "| model shape | parameters | prompts | exact (s) | lower bound (s) | exact ÷ bound | "
             "measurement peak (MiB) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in result["scorer"]:
        peak = "-" if s["measurement_peak_mib"] is None else f"{s['measurement_peak_mib']:.0f}"
        lines.append(f"| {s['shape']} | {s['parameters'] / 1e6:.0f}M | {s['prompts']} | {s['exact_s']:.3f} | "
                     f"{s['lower_bound_s']:.3f} | {s['ratio']:.2f} | {peak} |")  # fmt: skip
    c = result["callback"]
    lines += ["", f"TRL SFT, {c['steps']} steps, batch 8 × 512 tokens, 15 tasks measured every {c['every']} steps: "
              f"{c['measurements']} measurements, callback {c['callback_s']:.1f} s of {c['wall_s']:.1f} s wall "
              f"(**{100 * c['callback_share_of_wall']:.2f}%**), median step {c['step_s_median']:.3f} s, "
              f"errors {c['errors']}. Total benchmark time {result['seconds']:.0f} s."]  # fmt: skip
    (out / "gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
