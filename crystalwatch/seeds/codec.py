"""The seed library file: JSON (gzip when the name ends in ``.gz``), validated field by field on load."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from crystalwatch.files import write_atomic
from crystalwatch.seeds.types import SCHEMA, Seed, SeedLibraryError, TaskSeeds, VariantDist, variant_key


def to_json(tasks: dict[str, TaskSeeds], provenance: dict[str, Any]) -> dict[str, Any]:
    """The library as the JSON object written to disk (docs/seed-library.md)."""

    def dist(p: np.ndarray, names: list[str]) -> dict[str, float]:
        return {n: float(x) for n, x in zip(names, p)}

    return {
        "schema": SCHEMA,
        "provenance": {k: v for k, v in provenance.items() if k != "path"},
        "tasks": {
            tid: {
                "version": t.version,
                "spec_hash": t.spec_hash,
                "outcomes": t.outcomes,
                "base": t.base,
                "seeds": [
                    {
                        "id": s.id,
                        "weight": s.weight,
                        "members": s.members,
                        "centroid": dist(s.centroid, t.outcomes),
                    }
                    for s in t.seeds
                ],
                "variants": [
                    {
                        "id": v.id,
                        "kind": v.kind,
                        "coverage": v.coverage,
                        "clustered": v.clustered,
                        "probs": dist(v.probs, t.outcomes),
                    }
                    for v in t.variants
                ],
            }
            for tid, t in tasks.items()
        },
    }


def _need(src: str, where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SeedLibraryError(
            f"{src}: field '{where}' must be {what}, got {json.dumps(value)[:60]}; "
            "the file was edited by hand or truncated: rebuild it with `crystalwatch seeds build`"
        )
    return value


def _dist(src: str, where: str, raw: Any, outcomes: list[str]) -> np.ndarray:
    raw = _need(src, where, raw, dict, "an object mapping each outcome to a probability")
    if list(raw) != outcomes:
        raise SeedLibraryError(
            f"{src}: field '{where}' has outcomes {list(raw)[:5]}..., expected the task's "
            f"{outcomes[:5]}...; rebuild the library"
        )
    p = np.array([_need(src, f"{where}.{k}", v, (int, float), "a number") for k, v in raw.items()], dtype=float)
    if (p < 0).any() or abs(p.sum() - 1) > 1e-4:
        raise SeedLibraryError(
            f"{src}: field '{where}' is not a probability distribution (sum {p.sum():.6g}); rebuild the library"
        )
    return p


def _parse_task(src: str, tid: str, raw: Any) -> TaskSeeds:
    at = f"tasks.{tid}"
    raw = _need(src, at, raw, dict, "an object")
    for key in ("version", "spec_hash", "outcomes", "base", "seeds", "variants"):
        if key not in raw:
            raise SeedLibraryError(f"{src}: field '{at}.{key}' is missing; rebuild the library")
    outcomes = _need(src, f"{at}.outcomes", raw["outcomes"], list, "a list of outcome names")
    variants = [
        VariantDist(
            _need(src, f"{at}.variants[{i}].id", v.get("id"), str, "a string"),
            _need(src, f"{at}.variants[{i}].kind", v.get("kind"), str, "a string"),
            _dist(src, f"{at}.variants[{i}].probs", v.get("probs"), outcomes),
            float(_need(src, f"{at}.variants[{i}].coverage", v.get("coverage"), (int, float), "a number")),
            bool(v.get("clustered", True)),
        )
        for i, v in enumerate(_need(src, f"{at}.variants", raw["variants"], list, "a list"))
        if _need(src, f"{at}.variants[{i}]", v, dict, "an object")
    ]
    keys = {variant_key(v) for v in variants}
    seeds = []
    raw_seeds = _need(src, f"{at}.seeds", raw["seeds"], list, "a non-empty list")
    if not raw_seeds:
        raise SeedLibraryError(f"{src}: field '{at}.seeds' must be a non-empty list; rebuild the library")
    for i, s in enumerate(raw_seeds):
        where = f"{at}.seeds[{i}]"
        s = _need(src, where, s, dict, "an object with id, weight, members, centroid")
        members = _need(src, f"{where}.members", s.get("members"), list, "a list of variant ids")
        unknown = [m for m in members if m not in keys]
        if unknown:
            raise SeedLibraryError(f"{src}: field '{where}.members' names unknown variants {unknown}")
        seeds.append(
            Seed(
                _need(src, f"{where}.id", s.get("id"), str, "a string"),
                _dist(src, f"{where}.centroid", s.get("centroid"), outcomes),
                members,
                float(_need(src, f"{where}.weight", s.get("weight"), (int, float), "a number")),
            )
        )
    base = _need(src, f"{at}.base", raw["base"], dict, "an object")
    if "all" not in base or not all(
        isinstance(b, dict) and isinstance(b.get("diversity"), (int, float)) for b in base.values()
    ):
        raise SeedLibraryError(f"{src}: field '{at}.base' needs an 'all' entry and a diversity per prompt kind")
    return TaskSeeds(
        tid,
        int(_need(src, f"{at}.version", raw["version"], int, "an integer")),
        _need(src, f"{at}.spec_hash", raw["spec_hash"], str, "a string"),
        outcomes,
        variants,
        seeds,
        base,
    )


def parse(raw: Any, src: str = "<memory>") -> tuple[dict[str, TaskSeeds], dict[str, Any]]:
    """Validate a library's JSON (schema, every field); return its tasks and provenance."""
    raw = _need(src, "(top level)", raw, dict, "an object")
    if raw.get("schema") != SCHEMA:
        raise SeedLibraryError(
            f"{src}: schema is {raw.get('schema')!r}, expected {SCHEMA!r}; "
            + (
                "rebuild it with this version of crystalwatch"
                if str(raw.get("schema", "")).startswith("crystalwatch.seeds/")
                else "is this a seed library (`crystalwatch seeds build`)?"
            )
        )
    prov = _need(src, "provenance", raw.get("provenance"), dict, "an object")
    tasks = _need(src, "tasks", raw.get("tasks"), dict, "an object with one entry per task")
    if not tasks:
        raise SeedLibraryError(f"{src}: field 'tasks' is empty; rebuild the library")
    return {tid: _parse_task(src, tid, t) for tid, t in tasks.items()}, dict(prov)


def digest(data: bytes) -> str:
    """A library's content digest: 16 hex digits of SHA-256 of its uncompressed JSON."""
    return hashlib.sha256(data).hexdigest()[:16]


def read_bytes(path: Path) -> bytes:
    """The uncompressed JSON of a library file (gzip detected by content)."""
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def file_digest(path: str | Path) -> str:
    """The digest of a library file, without parsing it."""
    return digest(read_bytes(Path(path)))


def save(tasks: dict[str, TaskSeeds], provenance: dict[str, Any], path: str | Path) -> str:
    """Write a library as JSON (gzip when the name ends in ``.gz``), all or nothing; return its digest."""
    path = Path(path)
    data = json.dumps(to_json(tasks, provenance), indent=1, ensure_ascii=False).encode()
    write_atomic(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return digest(data)


def load(path: str | Path) -> tuple[dict[str, TaskSeeds], dict[str, Any], str]:
    """Read and validate a library file: (tasks, provenance, digest); any problem names the file and field."""
    path = Path(path)
    try:
        data = read_bytes(path)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise SeedLibraryError(
            f"{path}: cannot read the seed library ({err}); rebuild it with `crystalwatch seeds build`"
        ) from None
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SeedLibraryError(
            f"{path}: not valid JSON ({err}); the file is truncated or was edited by hand. "
            "Rebuild it with `crystalwatch seeds build`"
        ) from None
    tasks, provenance = parse(raw, str(path))
    return tasks, provenance, digest(data)
