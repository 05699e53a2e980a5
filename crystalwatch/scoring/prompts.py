"""Rendering task prompts for a tokenizer and tokenising every (prompt, surface form) pair.

A :class:`Request` is everything the scorer needs for one prompt variant: the exact prompt text and
token ids, and one :class:`Candidate` per surface form. Prompt and answer are tokenised together and the
prompt's tokens checked to be a prefix (Gemma 3 encodes " 7" as a space token then "7"); when the
tokenizer merges across the boundary the answer is tokenised on its own and the candidate is marked
``canonical=False`` in the audit record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from crystalwatch.errors import CrystalwatchError
from crystalwatch.tasks import ChatPrompt, Task

PromptKind = Literal["completion", "chat"]

# Tokens that end a turn or a document, by their text, when the tokenizer has them.
END_TOKEN_TEXTS = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end|>", "</s>", "<eos>")

# Gemma's turn format, for Gemma tokenizers that ship without a chat template (the gemma-3-270m GGUF).
# Used for rendering only: the tokenizer itself is never modified.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% set sys = '' %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set sys = message['content'] + '\n\n' %}"
    "{% else %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{% if loop.index0 == 1 and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% endif %}"
    "{% if role == 'model' %}{% generation %}{{ message['content'] | trim }}{{ '<end_of_turn>' }}{% endgeneration %}"
    "{{ '\n' }}{% else %}{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

WORD_INNER = "'’"  # apostrophes continue a word ("I'd" is not the letter I)
# Words and signs that turn the answer into a range or a choice ("1 to 10", "7 or 8", "3-5"): not an end.
CONNECTOR_WORDS = frozenset({"to", "through", "or", "and", "out", "x"})
CONNECTOR_SIGNS = "-–—/~"
TERMINATOR_SETS = {
    "eot": "end-of-turn / end-of-text tokens only: the answer is the whole reply",
    "line": "eot, or any token starting with a line break: the answer is the whole line",
    "boundary": "eot, or any token starting with whitespace or punctuation, except apostrophes and range or choice "
    "connectors ('1 to 10', '7 or 8', '3-5'): the answer is the next word",
}
DEFAULT_TERMINATORS = "boundary"


@dataclass(frozen=True)
class Candidate:
    """One surface form of one outcome as the scorer sees it (terminator not included in ``ids``)."""

    outcome: int
    text: str
    ids: tuple[int, ...]
    canonical: bool = True


@dataclass(frozen=True)
class Request:
    """One prompt variant of one task, tokenised, with every candidate continuation."""

    task_id: str
    variant: str
    kind: PromptKind
    prompt: str
    prompt_ids: tuple[int, ...]
    candidates: tuple[Candidate, ...]


def token_texts(tokenizer: Any) -> list[str]:
    """The text every token id adds when it follows a plain letter (keeps leading spaces)."""
    anchor = tokenizer.encode("a", add_special_tokens=False)[-1:]
    size = len(tokenizer)
    head = tokenizer.decode(anchor)
    decoded = tokenizer.batch_decode([anchor + [i] for i in range(size)], clean_up_tokenization_spaces=False)
    return [d[len(head) :] if d.startswith(head) else d for d in decoded]


def end_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the tokens that end a turn or the text (eos plus the known end-of-turn tokens)."""
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in END_TOKEN_TEXTS if t in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


def answer_ends(rest: str, name: str) -> bool:
    """Does text ``rest``, right after an answer, end that answer under terminator set ``name``?

    The one rule behind both the scorer's terminator token sets and the sampler's parser. An empty
    ``rest`` (the generation stopped) ends every set; "eot" accepts nothing else.
    """
    if not rest:
        return True
    if name == "eot" or rest[0] == "\ufffd":  # a partial UTF-8 byte could continue a letter
        return False
    if name == "line":
        return rest[0] in "\r\n"
    if rest[0].isalnum() or rest[0] in WORD_INNER:
        return False
    word = rest.lstrip()
    head = word[:1]
    first = word.split(None, 1)[0].lower() if word else ""
    return not (head and head in CONNECTOR_SIGNS) and first.rstrip(".,;:!?") not in CONNECTOR_WORDS


def terminator_ids(tokenizer: Any, name: str = DEFAULT_TERMINATORS, texts: list[str] | None = None) -> np.ndarray:
    """The token ids of a named terminator set (see ``TERMINATOR_SETS`` and docs/scoring.md)."""
    if name not in TERMINATOR_SETS:
        raise ValueError(f"unknown terminator set '{name}'; choose one of {sorted(TERMINATOR_SETS)}")
    ends = end_token_ids(tokenizer)
    if not ends:
        raise ValueError("the tokenizer has no eos or end-of-turn token; set tokenizer.eos_token")
    if name == "eot":
        return np.array(ends, dtype=np.int64)
    texts = token_texts(tokenizer) if texts is None else texts
    special = set(getattr(tokenizer, "all_special_ids", [])) | {
        i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False)
    }

    ids = {i for i, t in enumerate(texts) if i not in special and t and answer_ends(t, name)}
    return np.array(sorted(ids | set(ends)), dtype=np.int64)


def chat_template_for(tokenizer: Any) -> str | None:
    """The tokenizer's chat template; Gemma's turn format for Gemma tokenizers that lack one; else None."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    vocab = tokenizer.get_vocab()
    return GEMMA_CHAT_TEMPLATE if "<start_of_turn>" in vocab and "<end_of_turn>" in vocab else None


def render_chat(tokenizer: Any, prompt: ChatPrompt) -> str:
    """The exact text a chat model sees: its chat template with the generation prompt, then the prefill."""
    template = chat_template_for(tokenizer)
    if template is None:
        raise ValueError(
            "the tokenizer has no chat template: use completion prompts (kind='completion') "
            "or set tokenizer.chat_template"
        )
    messages = ([{"role": "system", "content": prompt.system}] if prompt.system else []) + [
        {"role": "user", "content": prompt.user}
    ]
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    return text + (prompt.prefill or "")


def _answer_text(context: str, form: str) -> str:
    return form if not context or context[-1].isspace() else " " + form


class AmbiguousCandidatesError(CrystalwatchError):
    """Two outcomes' candidates overlap: one is the other followed by a terminator token."""


def _disjoint(task: Task, variant: str, candidates: list[Candidate], terminators: set[int]) -> list[Candidate]:
    """Drop candidates whose event another candidate of the same outcome already contains.

    Candidate ``a`` contains ``b`` when ``b`` is ``a`` followed by a terminator token (or equal to ``a``):
    every generation that matches ``b`` also matches ``a``. Across outcomes that makes the answer
    ambiguous, which is an error in the task's surface forms.
    """
    kept: dict[tuple[int, ...], Candidate] = {}
    for cand in sorted(candidates, key=lambda c: len(c.ids)):
        ids = cand.ids
        cuts = [n for n in range(1, len(ids)) if ids[n] in terminators] + [len(ids)]
        owner = next((kept[ids[:n]] for n in cuts if ids[:n] in kept), None)
        if owner is None:
            kept[ids] = cand
        elif owner.outcome != cand.outcome:
            names = [o.name for o in task.outcomes]
            raise AmbiguousCandidatesError(
                f"task {task.id} ({task.source}), prompt {variant}: answer {cand.text!r} of outcome "
                f"'{names[cand.outcome]}' starts with {owner.text!r} of outcome '{names[owner.outcome]}' followed "
                "by a terminator, so both would count the same generations; change the surface forms in 'outcomes'"
            )
    order = {id(c): i for i, c in enumerate(candidates)}
    return sorted(kept.values(), key=lambda c: order[id(c)])


def build_requests(task: Task, tokenizer: Any, kind: PromptKind, terminators: np.ndarray) -> list[Request]:
    """Render and tokenise every prompt variant of ``task`` of the given kind.

    Candidates are made disjoint under ``terminators`` (see :func:`_disjoint`), so that summing their
    probabilities never counts a generation twice.
    """
    term = {int(t) for t in terminators}
    variants: list[tuple[str, str, bool]] = []
    if kind == "chat":
        for p in task.chat_prompts:
            variants.append((p.id, render_chat(tokenizer, p), False))
    elif kind == "completion":
        for c in task.completion_prompts:
            variants.append((c.id, c.text, True))
    else:
        raise ValueError(f"unknown prompt kind '{kind}'; use 'chat' or 'completion'")

    requests = []
    for variant, prompt, add_special in variants:
        prompt_ids = tokenizer.encode(prompt, add_special_tokens=add_special)
        candidates = []
        for index, outcome in enumerate(task.outcomes):
            for form in outcome.forms:
                text = _answer_text(prompt, form)
                whole = tokenizer.encode(prompt + text, add_special_tokens=add_special)
                if whole[: len(prompt_ids)] == prompt_ids and len(whole) > len(prompt_ids):
                    ids, canonical = whole[len(prompt_ids) :], True
                else:
                    ids, canonical = tokenizer.encode(text, add_special_tokens=False), False
                candidates.append(Candidate(index, text, tuple(ids), canonical))
        candidates = _disjoint(task, variant, candidates, term)
        requests.append(Request(task.id, variant, kind, prompt, tuple(prompt_ids), tuple(candidates)))
    return requests


def prompt_kind_for(tokenizer: Any) -> PromptKind:
    """Chat prompts when the tokenizer has a chat template, completion prompts otherwise."""
    return "chat" if getattr(tokenizer, "chat_template", None) else "completion"
