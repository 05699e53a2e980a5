"""Tiny models and tokenizers built locally (no download): Llama, GPT-2 and Gemma 3 shapes.

Used by the tests, the benchmarks and ``crystalwatch demo --tiny``: a byte-level BPE trained in memory
on the built-in tasks' text, with a ChatML chat template whose assistant turns are marked for TRL's
``assistant_only_loss``, and randomly initialised models of a few hundred thousand parameters.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from crystalwatch.tasks import load_tasks

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


def corpus() -> list[str]:
    """Text from the built-in tasks' prompts and answers, so that merges look like a real tokenizer's."""
    lines = []
    for task in load_tasks():
        lines += [p.text for p in task.completion_prompts]
        lines += [p.user + " " + (p.prefill or "") for p in task.chat_prompts]
        lines += [" ".join(form for o in task.outcomes for form in o.forms)]
    return lines * 3


def build_tokenizer(vocab_size: int = 800) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|pad|>"
    )
    fast.chat_template = CHATML
    return fast


def build_model(arch: str, vocab_size: int, seed: int = 0, context: int = 1024) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, GPT2Config, LlamaConfig

    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
        )  # fmt: skip
    elif arch == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size, n_embd=64, n_layer=2, n_head=4, n_positions=context, bos_token_id=0, eos_token_id=2
        )
    elif arch == "gemma3":
        # A sliding window shorter than the prompts, so the scorer's windowed tree mask is exercised.
        config = Gemma3TextConfig(
            vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=24,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            max_position_embeddings=context, final_logit_softcapping=30.0,
        )  # fmt: skip
    else:
        raise ValueError(arch)
    model = AutoModelForCausalLM.from_config(config)
    # Random init is near-uniform; sharpen it so probabilities differ by orders of magnitude.
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20.0)
    return model.eval()


def save(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
