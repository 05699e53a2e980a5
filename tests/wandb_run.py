"""Read a finished offline W&B run back, for tests (wandb 0.31).

Offline runs write no ``files/wandb-summary.json`` and wandb 0.31 has no Python reader for the ``run-*.wandb``
transaction log (``wandb.sdk.internal.datastore`` is gone), so this module runs ``wandb leet inspect``:
``--json`` prints every record of the log as one JSON line, ``--summary --json`` prints the final state.

``read_offline_run(run_dir)`` returns a dict:

* ``history``: the logged rows in order (``{"_step": .., "train/global_step": .., key: value}``); media and
  tables appear flattened as ``<key>._type``, ``<key>.path``, ... ("NaN"/"Infinity" strings become floats);
* ``config``: the run config (updates merged in order, ``_wandb`` dropped);
* ``charts``: custom charts (``wandb.plot.*``) by key: spec id, fields and title as last logged;
* ``alerts``: ``{"title", "text", "level", "wait_duration_ms"}`` per ``run.alert`` call;
* ``artifacts``: ``{"name", "type", "aliases", "digest", "metadata", "files"}`` per logged artifact (including
  wandb's own ``wandb-run-incremental-table`` artifacts of incremental tables);
* ``metrics``: the ``define_metric`` records (``name`` or ``glob_name``, ``step_metric``, ...);
* ``summary``: the final summary (nested objects for media); ``state``, ``exit_code``;
* ``tables``: every table logged, rebuilt from the ``files/media/table`` JSON files the history points to:
  ``{key: {"columns": [...], "data": [[...], ...]}}``; increments of an INCREMENTAL table are concatenated.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TABLE_TYPES = ("table-file", "incremental-table-file")
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def latest_run_dir(wandb_dir: str | os.PathLike) -> Path:
    """The newest run folder under ``wandb_dir`` (the ``dir=`` given to ``wandb.init`` or its ``wandb/`` folder)."""
    base = Path(wandb_dir)
    if (base / "wandb").is_dir():
        base = base / "wandb"
    runs = [p for p in base.glob("*run-*") if p.is_dir() and any(p.glob("run-*.wandb"))]
    if not runs:
        raise FileNotFoundError(f"no W&B run folder under {base}")
    return max(runs, key=lambda p: next(p.glob("run-*.wandb")).stat().st_mtime)


def _leet(run_dir: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "wandb", "leet", "inspect", str(run_dir), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def inspect_records(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of the run's transaction log: ``{"num", "type", <type>: {...}}``."""
    out = _leet(Path(run_dir), "--json")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _decode(value: Any) -> Any:
    return NON_FINITE.get(value, value) if isinstance(value, str) else value


def _history(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items = (r["history"].get("item", {}) for r in records if r["type"] == "history")
    return [{k: _decode(v) for k, v in item.items()} for item in items]


def _all_config(records: list[dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for r in records:
        change = r["run"].get("config", {}) if r["type"] == "run" else r["config"] if r["type"] == "config" else {}
        config.update(change.get("update", {}))
    return config


def _config(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: v for k, v in _all_config(records).items() if not k.startswith("_wandb")}


def _charts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Custom charts (``wandb.plot.*``) by key: their panel config (spec id, fields, title), as last logged."""
    prefix = "_wandb.visualize."
    return {k[len(prefix) :]: v["panel_config"] for k, v in _all_config(records).items() if k.startswith(prefix)}


def _alerts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    alerts = [r["alert"] for r in records if r["type"] == "alert"]
    keys = ("title", "text", "level")
    return [{**{k: a.get(k) for k in keys}, "wait_duration_ms": int(a.get("wait_duration", 0))} for a in alerts]


def _artifacts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in (r["artifact"] for r in records if r["type"] == "artifact"):
        files = [c["path"] for c in r.get("manifest", {}).get("contents", [])]
        metadata = json.loads(r["metadata"]) if isinstance(r.get("metadata"), str) else r.get("metadata", {})
        keys = ("name", "type", "aliases", "digest")
        out.append({**{k: r.get(k) for k in keys}, "metadata": metadata, "files": files})
    return out


def _tables(run_dir: Path, history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Tables rebuilt from the history: a plain table is replaced, increments are appended once each."""
    tables: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for row in history:
        for key in [k[: -len("._type")] for k, v in row.items() if k.endswith("._type") and v in TABLE_TYPES]:
            path = row[f"{key}.path"]
            if path in seen:  # an incremental table re-logged without new rows points at the same file
                continue
            seen.add(path)
            part = json.loads((run_dir / "files" / path).read_text(encoding="utf-8"))
            if row[f"{key}._type"] == "incremental-table-file" and key in tables:
                tables[key]["data"].extend(part["data"])
            else:
                tables[key] = {"columns": part["columns"], "data": list(part["data"])}
    return tables


def read_offline_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Everything a test needs from a finished offline run (keys: see the module docstring)."""
    run_dir = Path(run_dir)
    records = inspect_records(run_dir)
    final = json.loads(_leet(run_dir, "--summary", "--json"))
    history = _history(records)
    return {
        "history": history,
        "config": _config(records),
        "charts": _charts(records),
        "alerts": _alerts(records),
        "artifacts": _artifacts(records),
        "metrics": [r["metric"] for r in records if r["type"] == "metric"],
        "summary": {k: _decode(v) for k, v in final.get("summary", {}).items()},
        "state": final.get("state"),
        "exit_code": final.get("exit_code"),
        "tables": _tables(run_dir, history),
        "run_dir": run_dir,
    }
