"""Recipes: every YAML config parses with its TrlParser (real-scale ones too, no download); the smoke chain runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "recipes" / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem != "chain"], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_stage_configs_parse_and_validate(path, monkeypatch):
    import importlib

    import transformers.training_args as targs

    # Real-scale configs train in bf16 on a GPU: validate everything else as if one were present.
    monkeypatch.setattr(targs, "is_torch_bf16_gpu_available", lambda: True)

    recipe = importlib.import_module(f"recipes.{path.stem}")
    script, training, model, watch = recipe.make_parser().parse_args_and_config(args=["--config", str(path)])
    assert script.dataset_name or script.dataset_files
    assert training.output_dir and model.model_name_or_path
    assert training.report_to == ["wandb"] and watch.crystalwatch_label in ("sft", "dpo", "rlvr")
    if path.stem == "dpo":
        assert training.loss_type == ["sigmoid_norm"] and training.beta == 5.0
    if path.stem == "grpo":
        assert training.beta == 0.01 and training.num_generations >= 2
    if path.parent.name != "smoke":
        assert model.dtype == "bfloat16" and training.bf16 and watch.crystalwatch_seeds


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem == "chain"], ids=lambda p: p.parent.name)
def test_chain_configs(path):
    from recipes.tulu3 import load_chain

    chain = load_chain(path)
    assert [s["recipe"] for s in chain["stages"]] == ["sft", "dpo", "grpo"]
    assert all((ROOT / s["config"]).is_file() for s in chain["stages"])


def test_bad_chain_config_names_the_field(tmp_path):
    from recipes.tulu3 import load_chain

    bad = tmp_path / "chain.yaml"
    bad.write_text("base: m\noutput_dir: o\nstages:\n  - {recipe: ppo, config: x.yaml}\n")
    with pytest.raises(ValueError, match=r"stages\[0\] needs recipe"):
        load_chain(bad)


def test_smoke_chain_end_to_end(tmp_path, monkeypatch):
    """SFT -> DPO -> GRPO on the tiny model: one trajectory, each stage's W&B offline run, the combined report."""
    import yaml
    from wandb_run import read_offline_run

    from crystalwatch import read_trajectory
    from recipes.tulu3 import run_chain

    monkeypatch.chdir(ROOT)  # the configs use repository-relative data paths
    chain = yaml.safe_load((ROOT / "recipes/configs/smoke/chain.yaml").read_text())
    chain["output_dir"] = str(tmp_path / "smoke")
    (tmp_path / "chain.yaml").write_text(yaml.safe_dump(chain))
    result = run_chain(tmp_path / "chain.yaml")

    records = read_trajectory(result["trajectory"])
    stages = [(r["label"], r["step"]) for r in records if r["task"] == "coin_flip"]
    assert stages == [("sft", 0), ("sft", 4), ("sft", 8), ("sft", 12), ("dpo", 15), ("dpo", 18),
                      ("rlvr", 20), ("rlvr", 22)]  # fmt: skip
    assert len({r["library"] for r in records}) == 1  # one base library for the whole chain
    assert Path(result["report"]).is_file()
    runs = result["wandb_runs"]
    assert len(runs) == 3 and all(runs)
    names = []
    for run_dir in runs:
        run = read_offline_run(run_dir)
        assert any("crystal/coin_flip/entropy" in h for h in run["history"]) and any(
            "train/loss" in h or "train/reward" in h for h in run["history"]
        )
        names.append(run["config"]["crystalwatch"]["label"])
    assert names == ["sft", "dpo", "rlvr"]
    assert all(os.path.isdir(p) for p in result["outputs"])
