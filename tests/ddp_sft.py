"""Run by tests/test_callback_ddp.py (``accelerate launch`` with recipes/accelerate_configs/ddp.yaml,
2 processes, gloo, CPU): an SFT with the callback on a fixed or an adaptive cadence, with a seed library that only
rank 0 can read, or ("act") driven to a transition that saves and stops."""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from launched import leave  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

import crystalwatch.monitor as monitor_module  # noqa: E402
from crystalwatch import CrystalWatchCallback, load_task  # noqa: E402


def inject_fault(rank: int, step: int) -> TrainerCallback:
    """Make rank 1's scoring raise from ``step`` on; the returned callback (placed before the monitor's) arms it."""
    import crystalwatch.scoring.exact as exact

    real, armed = exact.score_requests, [False]

    def scoring(*args, **kwargs):
        if armed[0] and rank == 1:
            raise RuntimeError("out of memory (injected)")
        return real(*args, **kwargs)

    class Arm(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            armed[0] = state.global_step >= step

    exact.score_requests = scoring
    return Arm()


def main(folder: str, out: str, cadence: str = "fixed", library: str = "", answer: str = "7") -> None:
    torch.set_num_threads(1)
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    rows = [{"messages": [{"role": "user", "content": p.user}, {"role": "assistant", "content": answer}]}
            for p in load_task("integer_1_10").chat_prompts]  # fmt: skip
    steps = {"adaptive": 12, "one-library": 12, "act": 40}.get(cadence, 6)
    args = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=2,
                     learning_rate=3e-3 if cadence == "act" else 1e-3, use_cpu=True,
                     bf16=False, ddp_backend="gloo", report_to="wandb", run_name="ddp",
                     save_strategy="steps" if cadence in ("save", "resume") else "no", save_steps=4,
                     activation_checkpointing=False, max_length=96, disable_tqdm=True, logging_steps=1)  # fmt: skip
    # 3 tasks = 20 chat prompts in many small batches: the two ranks get an uneven share.
    tasks, extra = ["integer_1_10", "coin_flip", "yes_no"], []
    if cadence in ("fixed", "fault", "save", "resume"):
        cb = CrystalWatchCallback(tasks=tasks, every_n_steps=2, batch_tokens=512)
        if cadence == "fault":  # rank 1's scoring raises from step 4 on, as an out-of-memory would
            extra.append(inject_fault(int(os.environ.get("RANK", "0")), step=4))
    elif cadence == "act":  # the main process's on_transition asks to save and stop at the first transition
        calls = []

        def on_transition(t):
            calls.append(t)
            return ("save", "stop")

        cb = CrystalWatchCallback(library, tasks=["integer_1_10"], every_n_steps=5, batch_tokens=512,
                                  on_transition=on_transition)  # fmt: skip
    elif cadence == "one-library":  # the library file is on rank 0's disk only (a file missing on one node)
        rank = int(os.environ.get("RANK", "0"))
        cb = CrystalWatchCallback(library if rank == 0 else library + ".not-on-this-node", tasks=["coin_flip"],
                                  every_n_steps=2, batch_tokens=512)  # fmt: skip
    else:  # adaptive, on clocks that disagree: rank 0's steps take 1 s, rank 1's 0.25 s; a measurement takes 1 s.
        # Left alone (budget 0.5, 12 steps known: the front-loaded cadence), rank 0 would measure at steps 1, 3, 7
        # and rank 1 at none before the end, and the sharded scoring would hang.
        clock = {"now": 0.0, "step": 1.0 if int(os.environ.get("RANK", "0")) == 0 else 0.25}

        class Steps(TrainerCallback):
            def on_step_end(self, *args, **kwargs):
                clock["now"] += clock["step"]

        real_run = monitor_module.run

        def run(*args, **kwargs):
            clock["now"] += 1.0
            return real_run(*args, **kwargs)

        monitor_module.run = run
        extra.append(Steps())
        cb = CrystalWatchCallback(tasks=tasks, budget=0.5, batch_tokens=512, clock=lambda: clock["now"])
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows * 4), processing_class=tok,
                         callbacks=[*extra, cb])  # fmt: skip
    # "resume": the run that saved checkpoint-4 and went on to step 6 died; it is restarted from checkpoint-4.
    trainer.train(resume_from_checkpoint=os.path.join(out, "checkpoint-4") if cadence == "resume" else None)
    acted = f" calls={len(calls)}" if cadence == "act" else ""
    print(f"rank {trainer.args.process_index}: errors={cb.errors} measured={cb.index} "
          f"trained={trainer.state.global_step}{acted}", flush=True)  # fmt: skip
    if trainer.args.process_index == 0:
        import wandb

        wandb.finish()


if __name__ == "__main__":
    main(*sys.argv[1:])
    leave()  # tests/launched.py: a clean exit despite torch's gloo teardown race
