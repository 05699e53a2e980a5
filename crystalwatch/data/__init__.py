"""Data sets shipped with crystalwatch.

``chat_sft.jsonl``: 349 short, hand-written, general-purpose chat conversations for supervised fine-tuning
(writing help, rewording emails, grammar fixes, explanations, definitions, cooking, travel, short coding
questions, summaries of a given paragraph, unit conversions, advice, brainstorming lists). One JSON object per
line, ``{"messages": [{"role": ..., "content": ...}, ...]}``: a user/assistant pair, sometimes after a system
message, sometimes two pairs. Each conversation is under ~115 Gemma tokens with its chat template, so
``max_length=128`` does not truncate.

Made for nucleation experiments: no prompt asks for anything random or for a choice among options (numbers,
coins, letters, colours, days), and answers vary in length and format, so fine-tuning on it teaches no answer
format that only some outcomes of a measured task would fit.

``preferences.jsonl``: 185 short, hand-written preference pairs for a brief DPO stage, on the same kind of
everyday tasks with prompts not taken from ``chat_sft.jsonl``. One JSON object per line in TRL's conversational
preference format, ``{"prompt": [...], "chosen": [{"role": "assistant", ...}], "rejected": [{"role":
"assistant", ...}]}``: the prompt is a user message, sometimes after a system message. The chosen answer is
correct, helpful and concise; the rejected one is realistically worse (factually wrong, evasive, ignoring the
instruction, rambling, rude or off-topic), and either may be the longer one. The same rule holds: no prompt
asks for anything random or a choice among options.
"""

from __future__ import annotations

from pathlib import Path


def chat_sft_path() -> Path:
    """Path of ``chat_sft.jsonl`` (load it with ``datasets.load_dataset("json", data_files=str(path))``)."""
    return Path(__file__).parent / "chat_sft.jsonl"


def preferences_path() -> Path:
    """Path of ``preferences.jsonl`` (load it with ``datasets.load_dataset("json", data_files=str(path))``)."""
    return Path(__file__).parent / "preferences.jsonl"
