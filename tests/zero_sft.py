"""Run by tests/test_engines.py (2 processes on CPU): TRL's SFTTrainer (or DPOTrainer) under DeepSpeed ZeRO-2 or
ZeRO-3 with the callback, launched by torchrun with a DeepSpeed config, or by ``accelerate launch --config_file``
with one of recipes/accelerate_configs/.

Writes one line per rank (<out>/rank-N.txt): errors, measurements, and what the measurement saw (ZeRO-3:
parameters partitioned,
carrying ``ds_id``, with an empty local shard outside the gather); rank 0 saves the trained weights.
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from ddp_sft import inject_fault  # noqa: E402
from launched import leave  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

import crystalwatch.scoring.exact as exact  # noqa: E402
from crystalwatch import CrystalWatchCallback, load_task  # noqa: E402

TASKS = ["integer_1_10", "coin_flip", "yes_no"]


def deepspeed_config(stage: int) -> dict:
    return {"zero_optimization": {"stage": stage, "stage3_gather_16bit_weights_on_model_save": True},
            "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "bf16": {"enabled": False}}  # fmt: skip


def main(folder: str, out: str, stage: str = "3", launcher: str = "torchrun", trainer_kind: str = "sft",
         fault: str = "") -> None:  # fmt: skip
    """``fault="fault"``: rank 1's scoring raises (as an out-of-memory would) in the measurement of step 4."""
    torch.set_num_threads(1)
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    reference = AutoModelForCausalLM.from_pretrained(folder) if trainer_kind == "dpo" else None  # before ZeRO's init
    seen = []  # inside each measurement: parameters partitioned by ZeRO-3?

    real = exact.score_requests

    def spy(m, *args, **kwargs):
        params = list(trainer.model.parameters())
        seen.append((sum(hasattr(p, "ds_id") for p in params), sum(p.ds_tensor.numel() < p.ds_numel for p in params
                                                                     if hasattr(p, "ds_tensor"))))  # fmt: skip
        return real(m, *args, **kwargs)

    exact.score_requests = spy
    extra = {} if launcher == "accelerate" else {"deepspeed": deepspeed_config(int(stage))}
    common = dict(output_dir=out, max_steps=4, per_device_train_batch_size=2, learning_rate=1e-2, bf16=False,
                  report_to="none", save_strategy="no", activation_checkpointing=False, max_length=96,
                  disable_tqdm=True, logging_steps=1, use_cpu=True, **extra)  # fmt: skip
    cb = CrystalWatchCallback(tasks=TASKS, every_n_steps=2, batch_tokens=512, console=False)
    callbacks = [inject_fault(int(os.environ.get("RANK", "0")), step=4), cb] if fault else [cb]
    if trainer_kind == "dpo":
        from datasets import load_dataset
        from trl import DPOConfig, DPOTrainer

        from crystalwatch.data import preferences_path

        data = load_dataset("json", data_files=str(preferences_path()), split="train").select(range(16))
        trainer = DPOTrainer(model=model, ref_model=reference, args=DPOConfig(**common, loss_type=["sigmoid_norm"],
                             beta=5.0), train_dataset=data, processing_class=tok, callbacks=callbacks)  # fmt: skip
    else:
        rows = [{"messages": [{"role": "user", "content": p.user}, {"role": "assistant", "content": "7"}]}
                for p in load_task("integer_1_10").chat_prompts]  # fmt: skip
        trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=Dataset.from_list(rows * 4),
                             processing_class=tok, callbacks=callbacks)  # fmt: skip
    trainer.train()
    rank = trainer.args.process_index
    engine = trainer.accelerator.state.distributed_type
    line = (f"errors={cb.errors} measured={cb.index} seen={json.dumps(seen)} engine={engine} "
            f"model={type(trainer.model_wrapped).__name__}")  # fmt: skip
    with open(os.path.join(out, f"rank-{rank}.txt"), "w") as f:
        f.write(line)
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)  # ZeRO-3: gathered to rank 0
    if rank == 0:
        torch.save(state, os.path.join(out, "final.pt"))


if __name__ == "__main__":
    main(*sys.argv[1:])
    leave()  # tests/launched.py: a clean exit despite torch's gloo teardown race
