"""Task specs: dataclasses, YAML loading and validation.

A task is declared in YAML (see ``builtin/*.yaml`` and ``docs/tasks.md``). Loading validates the whole
file and raises :class:`TaskSpecError` naming the file and the field, with the fix.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crystalwatch.errors import CrystalwatchError, did_you_mean

BUILTIN_DIR = Path(__file__).parent / "builtin"
_ID_RE = re.compile(r"^[a-z0-9_]+$")
MIN_COMPLETION_PROMPTS = 1
MIN_CHAT_PROMPTS = 1


class TaskSpecError(CrystalwatchError):
    """A task file is invalid. The message names the file, the field and how to fix it."""


@dataclass(frozen=True)
class Outcome:
    """A canonical answer and every surface form that counts as it (the name is always a form)."""

    name: str
    forms: tuple[str, ...]


@dataclass(frozen=True)
class CompletionPrompt:
    """A prompt for a base model. ``text`` ends where the answer begins."""

    id: str
    text: str


@dataclass(frozen=True)
class ChatPrompt:
    """A chat prompt: optional system message, the user message, optional assistant prefill."""

    id: str
    user: str
    system: str | None = None
    prefill: str | None = None


@dataclass(frozen=True)
class Task:
    """A stochastic task: an outcome set and the prompt variants that ask for one of them."""

    id: str
    version: int
    description: str
    outcomes: tuple[Outcome, ...]
    completion_prompts: tuple[CompletionPrompt, ...]
    chat_prompts: tuple[ChatPrompt, ...]
    case_sensitive: bool = False
    source: str = ""
    spec_hash: str = field(default="", compare=False)

    @property
    def outcome_names(self) -> list[str]:
        return [o.name for o in self.outcomes]


_TASK_KEYS = {"id", "version", "description", "case_sensitive", "outcomes", "completion_prompts", "chat_prompts"}
_REQUIRED = ("id", "version", "description", "outcomes", "completion_prompts", "chat_prompts")
_OUTCOME_KEYS = {"name", "forms"}
_COMPLETION_KEYS = {"id", "text"}
_CHAT_KEYS = {"id", "user", "system", "prefill"}


def _fail(src: str, where: str, msg: str) -> TaskSpecError:
    return TaskSpecError(f"{src}: field '{where}': {msg}")


def _check_keys(src: str, where: str, item: Any, allowed: set[str], required: tuple[str, ...]) -> None:
    if not isinstance(item, dict):
        raise _fail(src, where, f"expected a mapping, got {type(item).__name__}: {item!r}")
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise _fail(src, where, f"unknown key(s) {unknown}; allowed keys are {sorted(allowed)}")
    for key in required:
        if key not in item or item[key] is None:
            raise _fail(src, f"{where}.{key}" if where else key, "is missing; add it")


def _text(src: str, where: str, value: Any, *, allow_trailing_space: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(src, where, f"must be a non-empty string, got {value!r}")
    if not allow_trailing_space and value != value.rstrip(" "):
        raise _fail(src, where, "ends with a space; end the text where the answer begins (the scorer adds the space)")
    return value


def _list(src: str, where: str, value: Any, minimum: int) -> list[Any]:
    if not isinstance(value, list) or len(value) < minimum:
        raise _fail(src, where, f"must be a list with at least {minimum} item(s), got {value!r}")
    return value


def _case_variants(form: str) -> list[str]:
    return [form, form.lower(), form[:1].upper() + form[1:].lower(), form[:1].upper() + form[1:]]


def _parse_outcomes(src: str, raw: Any, case_sensitive: bool) -> tuple[Outcome, ...]:
    outcomes: list[Outcome] = []
    owner: dict[str, str] = {}
    for i, item in enumerate(_list(src, "outcomes", raw, 2)):
        where = f"outcomes[{i}]"
        if isinstance(item, (str, int)) and not isinstance(item, bool):
            name, forms = str(item), [str(item)]
        else:
            _check_keys(src, where, item, _OUTCOME_KEYS, ("name",))
            name = _text(src, f"{where}.name", str(item["name"]) if isinstance(item["name"], int) else item["name"])
            extra = item.get("forms") or []
            if not isinstance(extra, list):
                raise _fail(src, f"{where}.forms", f"must be a list of strings, got {extra!r}")
            forms = [name] + [_text(src, f"{where}.forms[{j}]", str(f)) for j, f in enumerate(extra)]
        if name in (o.name for o in outcomes):
            raise _fail(src, f"{where}.name", f"duplicate outcome '{name}'; each outcome must appear once")
        expanded: list[str] = []
        for form in forms:
            for variant in [form] if case_sensitive else _case_variants(form):
                if variant not in expanded:
                    expanded.append(variant)
        for form in expanded:
            if owner.get(form, name) != name:
                raise _fail(
                    src,
                    f"{where}.forms",
                    f"surface form '{form}' belongs to both '{owner[form]}' and '{name}'"
                    + ("" if case_sensitive else " (after adding case variants; set case_sensitive: true if needed)")
                    + "; give each form to one outcome",
                )
            owner[form] = name
        outcomes.append(Outcome(name=name, forms=tuple(expanded)))
    return tuple(outcomes)


def _check_unique_ids(src: str, where: str, ids: list[str]) -> None:
    for i, pid in enumerate(ids):
        if not _ID_RE.match(pid):
            raise _fail(src, f"{where}[{i}].id", f"'{pid}' must match [a-z0-9_]+")
        if pid in ids[:i]:
            raise _fail(src, f"{where}[{i}].id", f"duplicate prompt id '{pid}'; prompt ids must be unique")


def parse_task(raw: Any, source: str = "<memory>") -> Task:
    """Validate a parsed YAML mapping and build a :class:`Task`."""
    _check_keys(source, "", raw, _TASK_KEYS, _REQUIRED)
    task_id = _text(source, "id", raw["id"])
    if not _ID_RE.match(task_id):
        raise _fail(source, "id", f"'{task_id}' must match [a-z0-9_]+")
    version = raw["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(source, "version", f"must be a positive integer, got {version!r}")
    case_sensitive = raw.get("case_sensitive", False)
    if not isinstance(case_sensitive, bool):
        raise _fail(source, "case_sensitive", f"must be true or false, got {case_sensitive!r}")
    outcomes = _parse_outcomes(source, raw["outcomes"], case_sensitive)

    completion = []
    for i, item in enumerate(_list(source, "completion_prompts", raw["completion_prompts"], MIN_COMPLETION_PROMPTS)):
        where = f"completion_prompts[{i}]"
        _check_keys(source, where, item, _COMPLETION_KEYS, ("id", "text"))
        completion.append(CompletionPrompt(id=str(item["id"]), text=_text(source, f"{where}.text", item["text"])))
    _check_unique_ids(source, "completion_prompts", [p.id for p in completion])

    chat = []
    for i, item in enumerate(_list(source, "chat_prompts", raw["chat_prompts"], MIN_CHAT_PROMPTS)):
        where = f"chat_prompts[{i}]"
        _check_keys(source, where, item, _CHAT_KEYS, ("id", "user"))
        chat.append(
            ChatPrompt(
                id=str(item["id"]),
                user=_text(source, f"{where}.user", item["user"], allow_trailing_space=True),
                system=None
                if item.get("system") is None
                else _text(source, f"{where}.system", item["system"], allow_trailing_space=True),
                prefill=None if item.get("prefill") is None else _text(source, f"{where}.prefill", item["prefill"]),
            )
        )
    _check_unique_ids(source, "chat_prompts", [p.id for p in chat])

    canonical = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)
    return Task(
        id=task_id,
        version=version,
        description=_text(source, "description", raw["description"], allow_trailing_space=True),
        outcomes=outcomes,
        completion_prompts=tuple(completion),
        chat_prompts=tuple(chat),
        case_sensitive=case_sensitive,
        source=source,
        spec_hash=hashlib.sha256(canonical.encode()).hexdigest()[:16],
    )


def builtin_task_ids() -> list[str]:
    """Ids of the built-in tasks, sorted."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_task(name_or_path: str | Path) -> Task:
    """Load a built-in task by id, or a user's task from a YAML file path."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.exists()):
        path = BUILTIN_DIR / f"{text}.yaml"
        if not path.exists():
            ids = builtin_task_ids()
            raise TaskSpecError(
                f"unknown task '{text}'{did_you_mean(text, ids)}: not a built-in task id ({', '.join(ids)}) "
                "and not a path to a YAML file"
            )
    if not path.is_file():
        raise TaskSpecError(f"{path}: task file not found; pass a built-in task id or an existing YAML path")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise TaskSpecError(f"{path}: not a text file (byte {err.start} is not UTF-8); a task is a YAML file "
                            "(docs/tasks.md)") from None  # fmt: skip
    except OSError as err:
        raise TaskSpecError(f"{path}: cannot read the task file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise TaskSpecError(f"{path}: not valid YAML: {err}") from None
    task = parse_task(raw, source=str(path))
    return task


def load_tasks(names: list[str] | tuple[str, ...] | None = None) -> list[Task]:
    """Load tasks by id or path; ``None`` loads every built-in task."""
    if names is not None and not names:
        raise TaskSpecError("no tasks given: name at least one task id or YAML path (or none at all for every "
                            "built-in task)")  # fmt: skip
    return [load_task(n) for n in (builtin_task_ids() if names is None else names)]
