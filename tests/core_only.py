"""What the core install (`pip install crystalwatch`, no extras) gives, checked in a venv that has nothing else.

.ci/run runs this in a fresh venv with `CRYSTALWATCH_CORE_ONLY=1` (then the extras must really be absent);
tests/test_install.py runs it in the full test environment too, so that it cannot rot.

    python tests/core_only.py OUT_FOLDER
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crystalwatch.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "COLUMNS": "200"})  # fmt: skip


def without_torch(*args: str) -> subprocess.CompletedProcess:
    """The CLI with torch and transformers unimportable: what needs no model must not need them (the decision:
    ``report`` and ``seeds show`` read files only; torch stays a core dependency for everything else)."""
    code = ("import sys; sys.modules.update(torch=None, transformers=None); sys.argv = ['crystalwatch', *sys.argv[1:]]"
            "; from crystalwatch.cli import main; main()")  # fmt: skip
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})  # fmt: skip


def one_line_error(done: subprocess.CompletedProcess, *phrases: str) -> None:
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and all(p in lines[0] for p in phrases), lines


def main(out: str) -> None:
    import torch
    from transformers import Trainer, TrainingArguments

    from crystalwatch import CrystalWatchCallback, load_task
    from crystalwatch.callback import trajectory_of
    from crystalwatch.tiny import build_model, build_tokenizer, save

    if os.environ.get("CRYSTALWATCH_CORE_ONLY"):  # the extras are really not there
        absent = ["trl", "peft", "datasets", "wandb", "tensorboard", "mlflow", "trackio", "gguf", "deepspeed"]
        present = [m for m in absent if importlib.util.find_spec(m)]
        assert not present, f"the core install has {present}"
    out_dir = Path(out)
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    model = build_model("llama", len(tokenizer), seed=0)
    chats = [[{"role": "user", "content": p.user}, {"role": "assistant", "content": "7"}]
             for p in load_task("integer_1_10").chat_prompts]  # fmt: skip
    texts = [tokenizer.apply_chat_template(chat, tokenize=False) for chat in chats]
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    data = [{"input_ids": torch.tensor(r), "labels": torch.tensor(r)} for r in rows]
    args = TrainingArguments(output_dir=str(out_dir / "run"), max_steps=4, per_device_train_batch_size=1,
                             learning_rate=1e-3, report_to="none", save_strategy="no", use_cpu=True,
                             disable_tqdm=True)  # fmt: skip
    watch = CrystalWatchCallback(tasks=["integer_1_10", "coin_flip"], every_n_steps=2, batch_tokens=512)
    Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, callbacks=[watch]).train()
    records = trajectory_of(out_dir / "run")
    assert [(r.step, r.task) for r in records] == [(s, t) for s in (0, 2, 4) for t in ("integer_1_10", "coin_flip")]
    assert watch.errors == 0
    done = cli("report", str(out_dir / "run" / "crystalwatch" / "trajectory.jsonl"), "--out", str(out_dir / "report"))
    assert done.returncode == 0 and (out_dir / "report" / "index.html").is_file(), done.stdout + done.stderr
    trajectory = out_dir / "run" / "crystalwatch" / "trajectory.jsonl"
    done = without_torch("report", str(trajectory), "--out", str(out_dir / "report-no-torch"))
    assert done.returncode == 0 and (out_dir / "report-no-torch" / "index.html").is_file(), done.stderr[-2000:]
    library = Path(__file__).resolve().parent.parent / "docs" / "real" / "gemma-3-270m.seeds.json.gz"
    done = without_torch("seeds", "show", str(library))
    assert done.returncode == 0 and "integer_1_10" in done.stdout, done.stderr[-2000:]
    if os.environ.get("CRYSTALWATCH_CORE_ONLY"):  # a missing extra: one line naming what to install
        from crystalwatch.errors import CrystalwatchError
        from crystalwatch.sinks.base import tracker_sink

        try:
            tracker_sink("wandb")
            raise AssertionError("report_to wandb without W&B installed was not refused")
        except CrystalwatchError as err:
            assert "pip install 'crystalwatch[wandb]'" in str(err), err
        one_line_error(cli("measure", "pypi:gemma-3-270m"), "crystalwatch[real-models]")
        one_line_error(cli("recipe", "sft", "--config", "smoke"), "crystalwatch recipe needs trl", "crystalwatch[trl]")
        one_line_error(cli("demo", "--tiny", "--out", str(out_dir / "demo")), "crystalwatch[demo]")
        one_line_error(cli("seeds", "build", str(save(model, tokenizer, out_dir / "tiny")), "--out", "x.json",
                           "--tasks", "nope"), "unknown task")  # fmt: skip
    print("core install: Trainer + callback, report, extras' errors: ok")


if __name__ == "__main__":
    main(sys.argv[1])
