"""SFT in a plain Accelerate + PyTorch loop (no Trainer), watched by crystalwatch's Monitor.

    python examples/accelerate_loop.py --tiny                       # a tiny local model: seconds on a CPU
    python examples/accelerate_loop.py --model HuggingFaceTB/SmolLM2-135M --seeds smollm2-base.seeds.json.gz \\
        --report-to tensorboard --steps 500
    accelerate launch examples/accelerate_loop.py --model ...       # several processes: they measure in lockstep

It trains on the everyday chat conversations crystalwatch ships (crystalwatch/data/chat_sft.jsonl). The
Monitor measures at the start, every --every steps (or adaptively: all it spends within 1% of the training
time), and at the end; the trajectory goes to <out>/crystalwatch/trajectory.jsonl (`crystalwatch report` renders it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from crystalwatch import Monitor
from crystalwatch.data import chat_sft_path


def load(args: argparse.Namespace):
    """The model and tokenizer: a tiny Llama built here (--tiny), or a hub id / folder."""
    if args.tiny:
        from crystalwatch.tiny import build_model, build_tokenizer

        tokenizer = build_tokenizer()
        return build_model("llama", len(tokenizer)).train(), tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(args.model), AutoTokenizer.from_pretrained(args.model)


def batches(tokenizer, max_length: int, batch_size: int) -> DataLoader:
    """Chat conversations tokenised with the chat template; the loss is on every token (a plain SFT loop)."""
    rows = [json.loads(line)["messages"] for line in chat_sft_path().read_text().splitlines()]
    ids = [tokenizer.apply_chat_template(m, tokenize=True, return_dict=False)[:max_length] for m in rows]

    def collate(items: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(map(len, items))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in items])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in items])
        return {"input_ids": input_ids, "attention_mask": mask, "labels": input_ids.masked_fill(mask == 0, -100)}

    return DataLoader(ids, batch_size=batch_size, shuffle=True, collate_fn=collate)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M")
    parser.add_argument("--tiny", action="store_true", help="a tiny local model instead of --model")
    parser.add_argument("--seeds", default=None, help="the base's seed library (default: built from the start)")
    parser.add_argument("--tasks", default="integer_1_10,coin_flip", help="comma-separated task ids")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=None, help="measure every N steps (default: adaptive)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--report-to", default="none", help="tensorboard, wandb, trackio, mlflow, all or none")
    parser.add_argument("--out", default="out/accelerate-loop")
    args = parser.parse_args(argv)

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model, tokenizer = load(args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    loader = batches(tokenizer, max_length=128, batch_size=4)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    monitor = Monitor(args.seeds, tasks=args.tasks.split(","), every_n_steps=args.every, report_to=args.report_to)
    monitor.start(model, tokenizer, output_dir=args.out)  # measures the starting model (step 0)
    step = 0
    model.train()
    while step < args.steps:
        for batch in loader:
            loss = model(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            monitor.step(model, step)  # counts the training time; measures when due
            if step == args.steps:
                break
    monitor.close(model, step)  # the final measurement; closes the trackers
    accelerator.print(f"trajectory: {monitor.trajectory} ({monitor.index} measurements, {monitor.errors} errors)")
    return Path(str(monitor.trajectory))


if __name__ == "__main__":
    main()
