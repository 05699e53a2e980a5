"""Run by tests/test_engines.py under torchrun (2 processes, gloo, CPU): a training loop of our own on a model
sharded with FSDP2 (``fully_shard`` on every decoder layer and the root), measured through the Monitor.

Writes one line per rank (<out>/rank-N.txt): errors, measurements, and what the measurement saw (DTensor
parameters, local shard
sizes), and whether sharding and train mode were restored; rank 0 saves the trained weights (full state dict)
so that the test can score them in one process and compare.
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from launched import leave  # noqa: E402
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

import crystalwatch.scoring.exact as exact  # noqa: E402
from crystalwatch import Monitor, load_task, measure  # noqa: E402
from crystalwatch.scoring.sharded import UnsupportedEngineError  # noqa: E402

TASKS = ["integer_1_10", "coin_flip", "yes_no"]  # 20 chat prompts: an uneven share of batches per rank


def main(folder: str, out: str, lora: str = "full", fault: str = "") -> None:
    """``fault="fault"``: rank 1's scoring raises (as an out-of-memory would) in the measurement of step 4."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    if lora == "lora":
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(0)  # the same random LoRA weights on every rank (and in the test's single process)
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    layers = model.get_base_model().model.layers if lora == "lora" else model.model.layers
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)

    seen = []  # inside each measurement: how many parameters are DTensors, and are they really split?
    real = exact.score_requests
    now = [0]  # the training step

    def spy(m, *args, **kwargs):
        if fault and rank == 1 and now[0] >= 4:
            raise RuntimeError("out of memory (injected)")
        dtensors = [p for p in model.parameters() if isinstance(p, DTensor)]
        split = all(p.to_local().numel() < p.numel() for p in dtensors if p.numel() > 1)
        seen.append((len(dtensors), split))
        return real(m, *args, **kwargs)

    exact.score_requests = spy
    monitor = Monitor(tasks=TASKS, every_n_steps=2, batch_tokens=512, run_name="fsdp2", console=False)
    alone = "measured"
    if rank == 0:  # measure() on one rank alone: refused at once (rank 1 is not coming to the weight gathers)
        try:
            measure(model, tok, ["coin_flip"])
        except UnsupportedEngineError as err:
            alone = "refused: " + str(err)
        try:
            measure(model, tok, ["coin_flip"], estimator="sampled")
        except UnsupportedEngineError as err:
            alone += " | sampled refused: " + str(err)
    sampling = Monitor(tasks=["coin_flip"], estimator="sampled", console=False)  # refused at setup, on both ranks
    alone += f" | sampling monitor on={sampling.start(model, tok, output_dir=out + '/sampled', measure=False)}"
    monitor.start(model, tok, output_dir=out)
    texts = [tok.apply_chat_template([{"role": "user", "content": p.user}, {"role": "assistant", "content": "7"}],
                                     tokenize=False) for p in load_task("integer_1_10").chat_prompts]  # fmt: skip
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(1, 5):
        now[0] = step
        ids = torch.tensor([rows[(2 * step + rank) % len(rows)]])
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        monitor.step(model, step)
    monitor.close(model, 4)
    after = all(isinstance(p, DTensor) for p in model.parameters()) and model.training
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        torch.save(full, os.path.join(out, "final.pt"))
    with open(os.path.join(out, f"rank-{rank}.txt"), "w") as f:
        f.write(f"errors={monitor.errors} measured={monitor.index} engine_seen={min(seen)} restored={after} {alone}")


if __name__ == "__main__":
    main(*sys.argv[1:])
    leave()  # tests/launched.py: a clean exit despite torch's gloo teardown race
