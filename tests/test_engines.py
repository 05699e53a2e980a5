"""The sharding engines real post-training runs on, on CPU (gloo, 2 processes), launched the way users launch them
(``accelerate launch`` with the configs in recipes/accelerate_configs/): FSDP2 in a loop of our own
(the Trainer gives no FSDP on a CPU), DeepSpeed ZeRO-3 and ZeRO-2 through TRL's trainers. Each test checks that the
engine was really active inside the measurement, that every measurement was written once, and that the distributions
equal a single-process measurement of the same weights."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from test_callback_ddp import launch
from transformers import AutoModelForCausalLM, AutoTokenizer

from crystalwatch import measure, read_trajectory
from crystalwatch.monitor import Monitor

TASKS = ["integer_1_10", "coin_flip", "yes_no"]
UNWOUND = "the other ranks wait in a weight gather that cannot be unwound, so the run stops here"
TOLERANCE = 2e-6  # observed: at most 4.95e-7 (fp32 sums in another order); 4x that leaves room for other CPUs


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tokenizer):
    from tiny import build_model, save

    return str(save(build_model("llama", len(tokenizer), seed=0), tokenizer, tmp_path_factory.mktemp("m") / "tiny"))


def ranks(out) -> dict[str, str]:
    """What each rank wrote about itself (<out>/rank-N.txt)."""
    return {p.stem: p.read_text() for p in sorted(out.glob("rank-*.txt"))}


def agree(records, step: int, model, tokenizer) -> float:
    """Largest difference between the records of ``step`` and one process measuring ``model`` now."""
    one = measure(model, tokenizer, TASKS, batch_tokens=512)
    worst = 0.0
    at_step = [r for r in records if r.step == step]
    assert sorted(r.task for r in at_step) == sorted(TASKS), f"no records of every task at step {step}"
    for r in at_step:
        for variant, mine in zip(one.tasks[r.task].variants, r.variants.values(), strict=True):
            worst = max(worst, float(np.abs(np.array(mine["probs"]) - variant.probs).max()))
    print(f"agreement at step {step}: max |p_sharded - p_single| = {worst:.2e}")  # docs/distributed.md
    return worst


def lora(model):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)  # as tests/fsdp2_loop.py does on every rank
    return get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_fsdp2(folder, tmp_path, mode):
    out = tmp_path / "out"
    launch("fsdp2", "fsdp2_loop.py", folder, str(out), mode)
    for rank, line in ranks(out).items():
        found = re.match(r"errors=0 measured=3 engine_seen=\((\d+), True\) restored=True", line)
        assert found and int(found.group(1)) > 0, (rank, line)  # DTensor shards seen inside every measurement
    assert len(ranks(out)) == 2
    assert ranks(out)["rank-0"].endswith(
        "refused: cannot measure on rank 0 alone: the model is sharded over 2 processes (fsdp2) and each forward "
        "gathers weights from every rank; measure through a Monitor (monitor.measure), called on every rank | "
        "sampled refused: estimator 'sampled' cannot measure a model sharded over several processes (fsdp2): use "
        "estimator 'exact' (the default) | sampling monitor on=False")
    assert ranks(out)["rank-1"].endswith(" measured | sampling monitor on=False")
    records = read_trajectory(out / "crystalwatch" / "trajectory.jsonl")
    assert [(r.step, r.task) for r in records] == [(s, t) for s in (0, 2, 4) for t in TASKS]  # written once
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    model = lora(model) if mode == "lora" else model
    assert agree(records, 0, model, tok) < TOLERANCE  # the starting weights
    model.load_state_dict(torch.load(out / "final.pt"))
    assert agree(records, 4, model, tok) < TOLERANCE  # the trained weights rank 0 gathered


def test_fsdp2_fault_on_one_rank_mid_measurement_stops_the_run_with_one_error(folder, tmp_path):
    """Rank 1's scoring raises inside the FSDP2 measurement of step 4, where rank 0 waits in a weight gather that
    cannot be unwound: the run stops (it does not hang, and no collective is desynchronised), with one error that
    names the rank and the cause; the records of steps 0 and 2 are kept whole."""
    out = tmp_path / "out"
    done = launch("fsdp2", "fsdp2_loop.py", folder, str(out), "full", "fault", fails=True)
    said = " ".join((done.stdout + done.stderr).split())
    assert (f"crystalwatch: measuring failed on rank 1 of 2 inside a fsdp2 forward (RuntimeError: out of memory "
            f"(injected)); {UNWOUND}") in said
    assert "Received data size doesn't match" not in said and not ranks(out)  # no desynchronised collective
    records = read_trajectory(out / "crystalwatch" / "trajectory.jsonl")
    assert [(r.step, r.task) for r in records] == [(s, t) for s in (0, 2) for t in TASKS]


ZERO = pytest.mark.skipif(  # CI sets CRYSTALWATCH_CI: there a missing DeepSpeed or g++ fails instead of skipping
    (importlib.util.find_spec("deepspeed") is None or shutil.which("g++") is None)
    and not os.environ.get("CRYSTALWATCH_CI"),
    reason="DeepSpeed on CPU needs the deepspeed package and g++ (it compiles a shared-memory op on first use)",
)


@ZERO
@pytest.mark.parametrize("stage", ["3", "2"])
def test_deepspeed_zero_through_the_trainer(folder, tmp_path, stage):
    out = tmp_path / "out"
    launch(f"zero{stage}", "zero_sft.py", folder, str(out), stage, "accelerate")
    lines = ranks(out)
    assert len(lines) == 2
    for line in lines.values():
        assert line.startswith("errors=0 measured=3 ") and "engine=DistributedType.DEEPSPEED" in line, line
        seen = json.loads(re.search(r"seen=(\[.*\]) engine", line).group(1))
        if stage == "3":  # every parameter partitioned (ds_id, a local shard smaller than the whole) while measured
            assert len(seen) == 5 and all(n == partitioned == 21 for n, partitioned in seen), seen
        else:  # ZeRO-2 shards optimizer states and gradients, not weights
            assert seen and all(n == 0 for n, _ in seen), seen
    records = read_trajectory(out / "crystalwatch" / "trajectory.jsonl")
    assert [(r.step, r.task) for r in records] == [(s, t) for s in (0, 2, 4) for t in TASKS]
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert agree(records, 0, model, tok) < TOLERANCE
    missing, unexpected = model.load_state_dict(torch.load(out / "final.pt"), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)  # ZeRO saves a tied head once
    assert model.lm_head.weight is model.model.embed_tokens.weight or not missing
    assert agree(records, 4, model, tok) < TOLERANCE


@ZERO
def test_zero3_fault_on_one_rank_mid_measurement_stops_the_run_with_one_error(folder, tmp_path):
    """As for FSDP2, through TRL's SFTTrainer under ZeRO-3: the run stops with one error naming the rank and the
    cause, and the records of steps 0 and 2 are kept whole."""
    out = tmp_path / "out"
    done = launch("zero3", "zero_sft.py", folder, str(out), "3", "accelerate", "sft", "fault", fails=True)
    said = " ".join((done.stdout + done.stderr).split())
    assert (f"crystalwatch: measuring failed on rank 1 of 2 inside a zero3 forward (RuntimeError: out of memory "
            f"(injected)); {UNWOUND}") in said
    assert "Received data size doesn't match" not in said and not ranks(out)
    records = read_trajectory(out / "crystalwatch" / "trajectory.jsonl")
    assert [(r.step, r.task) for r in records] == [(s, t) for s in (0, 2) for t in TASKS]


@ZERO
def test_dpo_under_zero3(folder, tmp_path):
    out = tmp_path / "out"
    launch("zero3", "zero_sft.py", folder, str(out), "3", "accelerate", "dpo")
    for line in ranks(out).values():
        assert line.startswith("errors=0 measured=3 ") and "DeepSpeedEngine" in line, line
    records = read_trajectory(out / "crystalwatch" / "trajectory.jsonl")
    assert [(r.step, r.task) for r in records] == [(s, t) for s in (0, 2, 4) for t in TASKS]
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert agree(records, 0, model, tok) < TOLERANCE


def test_fsdp_v1_is_refused_at_setup_with_what_to_use(folder, caplog):
    """FSDP v1 is not supported: measuring turns off at setup with a message naming FSDP2 and ZeRO-3."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    unit = FSDP.__new__(FSDP)  # an FSDP v1 unit as the model would hold one (no process group needed to detect it)
    torch.nn.Module.__init__(unit)
    model.add_module("fsdp_unit", unit)
    monitor = Monitor(tasks=["coin_flip"], every_n_steps=1)
    assert not monitor.start(model, tok, output_dir=folder)
    said = " ".join(caplog.text.split())
    assert "FSDP v1 (FullyShardedDataParallel) is not supported: use FSDP2" in said and "ZeRO-3" in said
    assert monitor.errors == 1 and monitor.step(model, 1) == []
