"""Recipes (recipes/): every shipped config parses with its TrlParser (real-scale ones too, no
download, no vLLM); TRL's ModelConfig, data mixture and trainer arguments reach the trainer; every callback
setting is a YAML key; ``crystalwatch recipe`` runs a shipped config by name; the smoke chain runs end to end,
grouped as one experiment in the trackers."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from crystalwatch.recipes.launch import CONFIGS

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(CONFIGS.rglob("*.yaml"))
CHAINS = [p for p in SHIPPED if "stages" in yaml.safe_load(p.read_text())]  # chain.yaml, demo/tiny.yaml
STAGES = [p for p in SHIPPED if p not in CHAINS]
REAL_GRPO = [p for p in STAGES if p.stem == "grpo" and p.parent.name != "smoke"]
TRACKER_ENV = ("WANDB_RUN_GROUP", "WANDB_JOB_TYPE", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TAGS", "TENSORBOARD_LOGGING_DIR",
               "TRACKIO_PROJECT")  # fmt: skip
CPU = {"use_cpu": True, "bf16": False, "activation_checkpointing": False, "report_to": "none"}  # a CPU run


@pytest.fixture
def bf16_gpu(monkeypatch):
    """Real-scale configs train in bf16 on a GPU: validate everything else as if one were present."""
    import transformers.training_args as targs

    monkeypatch.setattr(targs, "is_torch_bf16_gpu_available", lambda: True)


def parse(recipe: str, config: str | Path, *extra: str) -> tuple:
    from crystalwatch.recipes.common import parse as parse_sections

    module = importlib.import_module(f"crystalwatch.recipes.{recipe}")
    return parse_sections(module.make_parser(), ["--config", str(config), *extra])


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("path", STAGES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_stage_configs_parse_and_validate(path, bf16_gpu):
    from crystalwatch.recipes.common import watch_config

    script, training, model, data, watch = parse(path.stem.split("_")[0], path)  # demo/sft_null.yaml: an SFT config
    assert data.datasets and training.output_dir and model.model_name_or_path
    for dataset in data.datasets:  # local files resolve from the config's own folder, whatever the cwd
        assert dataset.path != "json" or Path(dataset.data_files).is_file()
    assert training.report_to == ["wandb"] and watch_config(watch).label in ("sft", "dpo", "rlvr")
    if path.stem == "dpo":
        assert training.loss_type == ["sigmoid_norm"] and training.beta == 5.0
    if path.stem == "grpo":
        assert training.beta == 0.01 and training.num_generations >= 2
        assert training.use_vllm is (path.parent.name != "smoke")  # CPU CI: plain generate
    if path.parent.name == "demo":  # gemma-3-270m on a CPU, fp32, LoRA; the chain builds the library
        assert model.dtype == "float32" and training.use_cpu and model.use_peft and not watch.crystalwatch_seeds
    elif path.parent.name != "smoke":
        assert model.dtype == "bfloat16" and training.bf16 and watch.crystalwatch_seeds
        assert model.attn_implementation == "sdpa" and script.max_samples


@pytest.mark.parametrize("path", REAL_GRPO, ids=lambda p: p.parent.name)
def test_vllm_grpo_configs_parse_without_vllm(path, bf16_gpu, monkeypatch):
    """The real-scale GRPO configs generate with vLLM colocated, open-instruct's sampling; parsing them (in CI,
    where vLLM is not installed) imports no vLLM."""
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    _, training, *_ = parse("grpo", path)
    assert "vllm" not in sys.modules
    assert training.use_vllm and training.vllm_mode == "colocate" and 0 < training.vllm_gpu_memory_utilization < 1
    assert training.temperature == 1.0 and training.top_p == 1.0 and training.num_generations == 16
    assert training.max_completion_length < training.vllm_max_model_length


@pytest.mark.parametrize("path", CHAINS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_chain_configs(path):
    from crystalwatch.recipes.tulu3 import load_chain

    chain = load_chain(path)
    stages = ["sft", "dpo"] if path.parent.name == "demo" else ["sft", "dpo", "grpo"]  # the demo: no RL stage
    assert [s["recipe"] for s in chain["stages"]] == stages
    assert all(Path(s["config"]).is_file() and Path(s["config"]).parent == path.parent for s in chain["stages"])


def test_bad_chain_config_names_the_field(tmp_path):
    from crystalwatch.recipes.tulu3 import load_chain

    bad = write_yaml(tmp_path / "chain.yaml", {"base": "m", "output_dir": "o",
                                               "stages": [{"recipe": "ppo", "config": "x.yaml"}]})  # fmt: skip
    with pytest.raises(ValueError, match=r"stages\[0\] needs recipe"):
        load_chain(bad)
    write_yaml(bad, {"base": "m", "output_dir": "o", "stages": [{"recipe": "sft", "config": "x.yaml"}]})
    with pytest.raises(ValueError, match=r"stages\[0\]\.config x\.yaml: no such file"):
        load_chain(bad)
    (tmp_path / "x.yaml").write_text("max_steps: 1\n")
    write_yaml(bad, {"base": "m", "output_dir": "o", "stages": [{"recipe": "sft", "config": "x.yaml",
                                                                "overrides": [1]}]})  # fmt: skip
    with pytest.raises(ValueError, match=r"stages\[0\]\.overrides must be a mapping"):
        load_chain(bad)


# ---- the crystalwatch section: generated from CrystalWatchConfig ------------------------------------------------


def test_generated_settings_are_the_config_fields():
    """One key per CrystalWatchConfig field and per PhaseConfig field (phases flattened), with its help: a field
    added to either appears as a YAML key without touching the recipes."""
    from crystalwatch.phases import PhaseConfig
    from crystalwatch.recipes.common import CrystalWatchArguments, settings_arguments
    from crystalwatch.settings import CrystalWatchConfig

    generated = {f.name: f for f in dataclasses.fields(CrystalWatchArguments)}
    expected = {f"crystalwatch_{f.name}" for f in dataclasses.fields(CrystalWatchConfig) if f.name != "phases"}
    expected |= {f"crystalwatch_phases_{f.name}" for f in dataclasses.fields(PhaseConfig)}
    assert set(generated) == expected | {"crystalwatch_enabled"}
    for f in dataclasses.fields(CrystalWatchConfig):
        if f.name != "phases":
            assert generated[f"crystalwatch_{f.name}"].metadata["help"] == f.metadata["help"]
    assert all(f.metadata["help"] for f in generated.values())

    @dataclasses.dataclass
    class Extended(CrystalWatchConfig):  # a field added to the config later
        new_setting: int = dataclasses.field(default=3, metadata={"help": "a new setting"})

    cls, keys = settings_arguments(Extended)
    added = {f.name: f for f in dataclasses.fields(cls)}["crystalwatch_new_setting"]
    assert added.default == 3 and added.metadata["help"] == "a new setting" and keys[added.name] == ("new_setting",)


def _non_default(name: str, f: dataclasses.Field, hint: object):
    """A valid value other than the default, by type (the few constrained strings and lists named)."""
    named = {"kind": "completion", "estimator": "sampled", "terminators": "eot", "tasks": ["coin_flip"],
             "report_to": ["tensorboard"], "alert_states": ["foreign"], "images": "all", "save_on": ["nucleated"],
             "stop_on": ["foreign", "melted"], "reference": "base"}  # fmt: skip
    if name in named:
        return named[name]
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    kind = type(default) if default is not None else next(a for a in typing.get_args(hint) if a is not type(None))
    if kind is bool:
        return not default
    if kind is int:
        return 3 if default is None else default + 1
    if kind is float:
        return 0.05 if default is None else default / 2
    return default + "x" if default else "x.jsonl"


def test_every_generated_key_parses_from_yaml_and_reaches_the_callback(tmp_path, monkeypatch):
    import crystalwatch.callback
    from crystalwatch.recipes.common import SETTINGS, CrystalWatchArguments, callbacks

    hints = typing.get_type_hints(CrystalWatchArguments)  # (HfArgumentParser rewrites the fields' .type)
    values = {f.name: _non_default(SETTINGS[f.name][-1], f, hints[f.name])
              for f in dataclasses.fields(CrystalWatchArguments) if f.name != "crystalwatch_enabled"}  # fmt: skip
    config = write_yaml(tmp_path / "sft.yaml", {"output_dir": str(tmp_path / "out"), **CPU, **values})
    *_, watch = parse("sft", config)

    seen = []
    monkeypatch.setattr(crystalwatch.callback, "CrystalWatchCallback", lambda **kw: seen.append(kw["config"]))
    callbacks(watch)
    assert len(seen) == 1
    for key, path in SETTINGS.items():
        got = seen[0]
        for part in path:
            got = getattr(got, part)
        assert (list(got) if isinstance(got, tuple) else got) == values[key], key
    assert callbacks(parse("sft", config, "--crystalwatch_enabled", "false")[-1]) == []


def test_bad_callback_setting_is_one_error_naming_the_config(tmp_path):
    from crystalwatch.errors import CrystalwatchError

    config = write_yaml(tmp_path / "sft.yaml", {**CPU, "crystalwatch_budget": 2.0})
    with pytest.raises(CrystalwatchError, match="budget must be a number in"):
        parse("sft", config)
    write_yaml(config, {**CPU, "crystalwatch_bugdet": 0.1})
    with pytest.raises(CrystalwatchError, match=r"sft\.yaml: Unknown arguments.*crystalwatch_bugdet"):
        parse("sft", config)


# ---- TRL's ModelConfig and data sections reach the trainer -----------------------------------------------------


def test_model_config_reaches_from_pretrained_and_the_trainer(tmp_path, monkeypatch):
    """attn_implementation, revision, trust_remote_code and dtype reach from_pretrained (merged with the YAML's
    model_init_kwargs); the LoRA settings reach the trainer as TRL's peft_config."""
    import transformers
    import trl
    from peft import LoraConfig
    from trl import SFTTrainer

    from crystalwatch.recipes import sft

    loaded = []
    original = transformers.PreTrainedModel.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        loaded.append(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(recording))
    trainer_kwargs = {}

    class Recording(SFTTrainer):
        def __init__(self, **kwargs):
            trainer_kwargs.update(kwargs)
            super().__init__(**kwargs)

    config = write_yaml(tmp_path / "sft.yaml", {
        "model_name_or_path": "crystalwatch-tiny", "attn_implementation": "eager", "dtype": "float32",
        "model_init_kwargs": {"use_cache": False}, "use_peft": True, "lora_r": 2, "lora_alpha": 4,
        "lora_target_modules": ["q_proj", "v_proj"],
        "datasets": [{"path": "json", "data_files": str(ROOT / "crystalwatch/data/chat_sft.jsonl"),
                      "split": "train[:8]"}],
        "output_dir": str(tmp_path / "out"), "max_steps": 1, "per_device_train_batch_size": 2, "max_length": 64,
        **CPU, "save_strategy": "no", "crystalwatch_enabled": False,
    })  # fmt: skip
    monkeypatch.setattr(trl, "SFTTrainer", Recording)  # what recipes/sft.py builds, recorded
    out = sft.main(*parse("sft", config))

    assert len(loaded) == 1 and loaded[0]["attn_implementation"] == "eager" and loaded[0]["revision"] == "main"
    assert loaded[0]["trust_remote_code"] is False and loaded[0]["use_cache"] is False
    assert str(loaded[0]["dtype"]) == "torch.float32"
    assert isinstance(trainer_kwargs["peft_config"], LoraConfig) and trainer_kwargs["peft_config"].r == 2
    assert set(trainer_kwargs["peft_config"].target_modules) == {"q_proj", "v_proj"}
    assert trainer_kwargs["quantization_config"] is None
    assert (Path(out) / "model.safetensors").is_file()  # the LoRA merged, the model saved


@pytest.mark.parametrize("bits", [4, 8])
def test_quantisation_reaches_the_trainer(tmp_path, bits):
    """load_in_4bit / load_in_8bit become TRL's BitsAndBytesConfig for the trainer (nothing is loaded here)."""
    from transformers import BitsAndBytesConfig

    from crystalwatch.recipes.common import trainer_arguments

    config = write_yaml(tmp_path / "sft.yaml", {"model_name_or_path": "some/model", f"load_in_{bits}bit": True,
                                                "dtype": "bfloat16", "use_peft": True, **CPU})  # fmt: skip
    _, training, model, *_ = parse("sft", config)
    kwargs = trainer_arguments(training, model)
    quantization = kwargs["quantization_config"]
    assert isinstance(quantization, BitsAndBytesConfig) and kwargs["peft_config"] is not None
    if bits == 4:
        assert quantization.load_in_4bit and quantization.bnb_4bit_quant_type == "nf4"
        assert str(quantization.bnb_4bit_compute_dtype) == "torch.bfloat16"
    else:
        assert quantization.load_in_8bit and not quantization.load_in_4bit
    assert kwargs["model"] == "some/model" and training.model_init_kwargs["dtype"] == "bfloat16"


def test_tulu3_style_mixture_with_fractions_and_slices(tmp_path):
    """A mixture written the TRL way: per-dataset fractions or split slices, local paths relative to the YAML."""
    from crystalwatch.recipes.common import load_data

    (tmp_path / "configs").mkdir()
    (tmp_path / "data").mkdir()
    for name in ("chat_sft.jsonl", "rlvr.jsonl"):
        source = ROOT / ("crystalwatch/data/chat_sft.jsonl" if name == "chat_sft.jsonl" else
                         "recipes/data/rlvr_smoke.jsonl")  # fmt: skip
        (tmp_path / "data" / name).write_text(source.read_text())
    mixture = [
        {"path": "json", "data_files": "../data/chat_sft.jsonl", "columns": ["messages"], "fraction": 0.8},
        {"path": "json", "data_files": "../data/rlvr.jsonl", "columns": ["messages"], "fraction": 0.2},
    ]
    config = write_yaml(tmp_path / "configs" / "sft.yaml", {"datasets": mixture, **CPU})
    script, _, _, data_args, _ = parse("sft", config)
    train = load_data(script, data_args)["train"]
    assert len(train) == 110  # 22 RLVR prompts are 20%: 88 conversations + 22 prompts
    assert train[87]["messages"][-1]["role"] == "assistant" and train[88]["messages"][-1]["role"] == "user"

    sliced = [
        {"path": "json", "data_files": "../data/chat_sft.jsonl", "split": "train[:10]"},
        {"path": "json", "data_files": "../data/chat_sft.jsonl", "split": "train[-5:]"},
    ]
    script, _, _, data_args, _ = parse("sft", write_yaml(config, {"datasets": sliced, "max_samples": 12, **CPU}))
    assert len(load_data(script, data_args)["train"]) == 12  # 15 rows, then a shuffled subset of 12


# ---- running from the package ----------------------------------------------------------------------------------


def test_cli_runs_a_shipped_config_by_name(tmp_path, monkeypatch):
    """`crystalwatch recipe sft --config smoke/sft` from anywhere: the YAML and its data ship with the package."""
    from typer.testing import CliRunner

    from crystalwatch.cli import app

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sft"
    result = CliRunner().invoke(app, ["recipe", "sft", "--config", "smoke/sft", "--max_steps", "1",
                                      "--output_dir", str(out), "--report_to", "none", "--crystalwatch_tasks",
                                      "coin_flip", "--crystalwatch_every_n_steps", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and (out / "crystalwatch" / "trajectory.jsonl").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["sft", "--config", "smoke/stf"], "neither a file nor a shipped config (did you mean 'smoke/sft'?)"),
    (["sft", "--config", "missing.yaml"], "--config missing.yaml: no such file"),
    (["sft", "--config", "smoke/dpo"], "is a dpo config; run `crystalwatch recipe dpo"),
    (["ppo", "--config", "smoke/sft"], "unknown recipe 'ppo'"),
    (["sft", "--config", "smoke/sft", "--accelerate-config", "zero4"], "(did you mean 'zero3'?)"),
    (["sft", "--config", "smoke/sft", "--num-processes", "2"], "--num-processes needs --accelerate-config"),
])  # fmt: skip
def test_cli_errors_are_one_line(args, message):
    from typer.testing import CliRunner

    from crystalwatch.cli import app

    result = CliRunner().invoke(app, ["recipe", *args])
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_launches_through_accelerate(monkeypatch):
    """--accelerate-config re-launches the recipe module under `accelerate launch` with the shipped config."""
    from typer.testing import CliRunner

    from crystalwatch.cli import app
    from crystalwatch.recipes.launch import ACCELERATE_CONFIGS

    launched = []
    monkeypatch.setattr(subprocess, "run", lambda command, **_: launched.append(command) or
                        subprocess.CompletedProcess(command, 0))  # fmt: skip
    result = CliRunner().invoke(app, ["recipe", "chain", "--config", "smoke", "--accelerate-config", "zero3",
                                      "--num-processes", "8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    chain, zero3 = str(CONFIGS / "smoke" / "chain.yaml"), str(ACCELERATE_CONFIGS / "zero3.yaml")
    assert launched == [[sys.executable, "-m", "accelerate.commands.launch", "--config_file", zero3,
                         "--num_processes", "8", "-m", "crystalwatch.recipes.tulu3", "--config", chain]]  # fmt: skip
    assert {p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml")} == {"ddp", "fsdp2", "zero2", "zero3"}


def test_recipe_modules_run_with_python_m_and_the_cli_imports_no_torch():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "crystalwatch.recipes.tulu3", "--help"], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0 and "--config" in done.stdout
    code = "import sys, crystalwatch.cli, crystalwatch.recipes.launch; print({'torch', 'trl'} & {*sys.modules})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip() == "set()", done.stderr


# ---- the smoke chain, grouped in the trackers --------------------------------------------------------------------


def test_smoke_chain_end_to_end(tmp_path, monkeypatch):
    """SFT -> DPO -> GRPO on the tiny model: one trajectory, each stage's W&B offline run in the chain's group
    with its stage as job type, trackio/MLflow/TensorBoard grouping set per stage, the environment restored."""
    from wandb_run import inspect_records, read_offline_run

    from crystalwatch import read_trajectory
    from crystalwatch.recipes import common
    from crystalwatch.recipes.tulu3 import run_chain

    for var in TRACKER_ENV:
        monkeypatch.delenv(var, raising=False)
    seen = []
    end_stage = common.end_stage

    def recording(trainer, last=True):  # called inside the stage, at its end
        seen.append({"project": trainer.args.project, "last": last, **{k: os.environ.get(k) for k in TRACKER_ENV}})
        end_stage(trainer, last=last)

    monkeypatch.setattr(common, "end_stage", recording)
    monkeypatch.chdir(tmp_path)  # the configs find their data relative to themselves, not the cwd
    chain = yaml.safe_load((CONFIGS / "smoke/chain.yaml").read_text())
    chain["output_dir"] = str(tmp_path / "smoke")
    for stage in chain["stages"]:
        stage["config"] = str(CONFIGS / "smoke" / stage["config"])
    chain["stages"][2]["overrides"] = {"max_steps": 2}  # a stage's field changed by the chain (grpo.yaml: 4)
    result = run_chain(write_yaml(tmp_path / "chain.yaml", chain))

    assert result["trajectory"] == str(tmp_path / "smoke" / "crystalwatch" / "trajectory.jsonl")  # run_files
    assert [(s["name"], s["steps"]) for s in result["stages"]] == [("sft", 12), ("dpo", 6), ("grpo", 2)]
    records = read_trajectory(result["trajectory"])
    stages = [(r["label"], r["step"]) for r in records if r["task"] == "coin_flip"]
    assert stages == [("sft", 0), ("sft", 4), ("sft", 8), ("sft", 12), ("dpo", 15), ("dpo", 18),
                      ("rlvr", 20)]  # fmt: skip
    assert len({r["library"] for r in records}) == 1  # one base library for the whole chain
    assert Path(result["report"]).is_file()
    runs = result["wandb_runs"]
    assert len(runs) == 3 and all(runs)
    labels, groups = [], []
    for run_dir in runs:
        run = read_offline_run(run_dir)
        assert any("crystal/coin_flip/entropy" in h for h in run["history"]) and any(
            "train/loss" in h or "train/reward" in h for h in run["history"]
        )
        labels.append(run["config"]["crystalwatch"]["label"])
        header = next(r["run"] for r in inspect_records(run_dir) if r["type"] == "run")
        groups.append((header.get("run_group"), header.get("job_type")))
    assert labels == ["sft", "dpo", "rlvr"]
    assert groups == [("smoke", "sft"), ("smoke", "dpo"), ("smoke", "grpo")]
    assert [s["last"] for s in seen] == [False, False, True]  # only the last stage ends the process group
    for stage, s in zip(("sft", "dpo", "grpo"), seen):
        assert s["project"] == "smoke" and s["TRACKIO_PROJECT"] == "smoke"  # trackio: one project
        assert s["MLFLOW_EXPERIMENT_NAME"] == "smoke" and json.loads(s["MLFLOW_TAGS"])["stage"] == stage
        assert s["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "smoke" / "tensorboard" / stage)
        assert (s["WANDB_RUN_GROUP"], s["WANDB_JOB_TYPE"]) == ("smoke", stage)
    assert not {k for k in TRACKER_ENV if k in os.environ}  # restored after each stage
    assert all(os.path.isdir(p) for p in result["outputs"])
