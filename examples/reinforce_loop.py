"""An RL-style loop that updates the policy itself (REINFORCE with a verifiable reward), watched by the Monitor.

    python examples/reinforce_loop.py --tiny                        # a tiny local model: seconds on a CPU
    python examples/reinforce_loop.py --model HuggingFaceTB/SmolLM2-135M-Instruct --steps 200 --target 7

Each step samples --samples answers to a "pick a number between 1 and 10" prompt, rewards an answer 1 when
its first number is --target (a verifiable reward, like RLVR's), and takes a policy-gradient step on
(reward - mean reward) x log p(answer). This is how a reward pulls a distribution onto one outcome: the
Monitor shows integer_1_10 collapsing onto the target (nucleated or foreign, depending on whether a base
seed already preferred it), while its measurements never disturb sampling or training.

The loop acts on what the Monitor sees: each ``monitor.step`` returns a reading (the measurement's records, its
transitions, and whether the settings ask to save or stop). With ``--stop-on foreign`` the run ends when the
reward has pulled the task off every seed the base had; ``--save-on nucleated`` saves the policy at the step it
nucleated. The run's length is given to ``start``, so the adaptive cadence (no ``--every``) looks hardest early.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from crystalwatch import Monitor, load_task

PROMPTS = [p for p in load_task("integer_1_10").chat_prompts if not p.prefill]


def reward(text: str, target: int) -> float:
    """1 when the answer's first number is the target, else 0."""
    found = re.search(r"\d+", text)
    return float(found is not None and int(found.group()) == target)


def load(args: argparse.Namespace):
    if args.tiny:
        from crystalwatch.tiny import build_model, build_tokenizer

        tokenizer = build_tokenizer()
        return build_model("llama", len(tokenizer)).train(), tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(args.model), AutoTokenizer.from_pretrained(args.model)


def reinforce_step(model, tokenizer, optimizer, prompt: str, args: argparse.Namespace) -> float:
    """Sample answers, score them, and push the policy toward the rewarded ones; returns the mean reward."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]  # fmt: skip
    model.eval()
    with torch.no_grad():
        out = model.generate(input_ids=ids.repeat(args.samples, 1), attention_mask=torch.ones_like(ids).repeat(
            args.samples, 1), do_sample=True, max_new_tokens=4, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    model.train()
    answers = out[:, ids.shape[1] :]
    rewards = torch.tensor([reward(tokenizer.decode(a, skip_special_tokens=True), args.target) for a in answers])
    advantage = rewards - rewards.mean()
    logits = model(input_ids=out).logits[:, ids.shape[1] - 1 : -1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, answers[..., None]).squeeze(-1)
    keep = answers != tokenizer.pad_token_id
    loss = -(advantage[:, None] * logp * keep).sum() / keep.sum().clamp(min=1)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return float(rewards.mean())


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--tiny", action="store_true", help="a tiny local model instead of --model")
    parser.add_argument("--seeds", default=None, help="the base's seed library (default: built from the start)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--samples", type=int, default=8, help="answers sampled per step")
    parser.add_argument("--target", type=int, default=7, help="the rewarded number")
    parser.add_argument("--every", type=int, default=4, help="measure every N steps (0: adaptive, front-loaded)")
    parser.add_argument("--save-on", default="", help="states whose entry saves the policy (comma-separated)")
    parser.add_argument("--stop-on", default="", help="states whose entry ends the run (comma-separated)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--out", default="out/reinforce-loop")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model, tokenizer = load(args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    monitor = Monitor(args.seeds, tasks=["integer_1_10"], every_n_steps=args.every or None, label="rl",
                      save_on=args.save_on, stop_on=args.stop_on)  # fmt: skip
    monitor.start(model, tokenizer, output_dir=args.out, total_steps=args.steps)
    step = 0
    for step in range(1, args.steps + 1):
        mean_reward = reinforce_step(model, tokenizer, optimizer, PROMPTS[step % len(PROMPTS)].user, args)
        monitor.log({"reward": mean_reward})  # kept beside the readings (record.trainer; the report draws it)
        reading = monitor.step(model, step)
        for record in reading:
            print(f"step {step}: reward {mean_reward:.2f}; {record.task} {record.state}, top {record.top}")
        for transition in reading.transitions:
            print(f"transition: {transition}")
        if reading.save:
            model.save_pretrained(Path(args.out) / f"policy-{step}")
        if reading.stop:
            print(f"stopping: {reading.why('stop')}")
            break
    monitor.close(model, step)
    return Path(str(monitor.trajectory))


if __name__ == "__main__":
    main()
