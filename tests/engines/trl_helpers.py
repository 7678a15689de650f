"""Tiny, Hub-free fixtures for the TRL engine tests and benchmark: a char-level tokenizer, a tiny Qwen2 model,
a prompt dataset and a reward function. A tiny vocabulary makes sampled completions share prefixes often, so the
process trees are not flat and λ weights differ from 1."""

from __future__ import annotations

import os
from typing import Any

import torch
from datasets import Dataset
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, TrainerCallback

SPECIALS = ["<pad>", "<eos>", "<unk>"]
CHARS = list("0123456789+=ab")


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", padding_side="left"
    )
    fast.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    return fast


def build_model(
    tokenizer: PreTrainedTokenizerFast, hidden: int = 32, layers: int = 1, seed: int = 0, **kw: Any
):
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=kw.pop("heads", 2),
        num_key_value_heads=kw.pop("heads_kv", 2),
        intermediate_size=kw.pop("intermediate", 4 * hidden),
        max_position_embeddings=kw.pop("max_positions", 64),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        **kw,
    )
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def build_dataset(n: int = 16, seed: int = 0) -> Dataset:
    """``n`` prompts ``"a+b="`` with ``a, b`` of 1 to 3 digits: prompt lengths vary, so batches are left-padded."""
    g = torch.Generator().manual_seed(seed)
    digits = torch.tensor([[1 + i % 3, 1 + i % 2] for i in range(n)])
    low = torch.where(digits > 1, 10 ** (digits - 1), 0)
    xs = (low + torch.rand(n, 2, generator=g) * (10**digits - low)).long().tolist()
    return Dataset.from_dict({"prompt": [f"{a}+{b}=" for a, b in xs], "answer": [str(a + b) for a, b in xs]})


def reward_digits(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    """Share of digits and '=' in the completion: a dense reward that makes groups' rewards differ."""
    return [sum(c.isdigit() or c == "=" for c in s) / max(len(s), 1) for s in completions]


def build_trainer(tok: PreTrainedTokenizerFast, args: Any, **kwargs: Any) -> Any:
    """A ``LambdaGRPOTrainer`` on the tiny model, the digit reward and the prompt dataset of this module."""
    from lgrpo.engines.trl import LambdaGRPOTrainer

    return LambdaGRPOTrainer(
        model=build_model(tok),
        reward_funcs=reward_digits,
        args=args,
        train_dataset=build_dataset(),
        processing_class=tok,
        **kwargs,
    )


def base_args(output_dir: str, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        output_dir=output_dir,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=0,
        temperature=1.0,
        disable_tqdm=True,
    )
    args.update(overrides)
    return args


class SaveGrads(TrainerCallback):
    """Saves the gradients of the trainable parameters before every optimizer step to
    ``<prefix>-rank<R>-step<S>.pt`` (multi-process tests: DDP has averaged them across the ranks by then)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        rank = int(os.environ.get("RANK", "0"))
        torch.save(grads, f"{self.prefix}-rank{rank}-step{state.global_step + 1}.pt")
