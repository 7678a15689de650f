"""Greedy generation for evaluation: the training prompt format, stopping after the first closed ``\\boxed{}``.

Two backends: Hugging Face ``generate`` (batched, left padding, :class:`BoxedStoppingCriteria`) and vLLM (when it is
installed and asked for; vLLM has no stop rule for balanced braces, so its outputs are trimmed with
:func:`truncate_after_boxed` afterwards, which gives the same text).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from lgrpo.tasks.math_answers import SYSTEM_PROMPT, BoxedStoppingCriteria, truncate_after_boxed


def format_prompt(tokenizer: Any, problem: str, system_prompt: str = SYSTEM_PROMPT) -> str:
    """The training prompt: system prompt and problem through the chat template, or plain text without one."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": problem}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{system_prompt}\n\n{problem}\n"


def _load_error(what: str, model: str, exc: Exception) -> SystemExit:
    hint = (
        ""
        if os.path.exists(model)
        else (
            " It is not a local directory, so it was looked up on the Hugging Face Hub, which is not reachable here;"
            " download it where the Hub is reachable (e.g. `huggingface-cli download ID --local-dir DIR`) and pass"
            " --model DIR."
        )
    )
    return SystemExit(
        f"cannot load the {what} of --model {model!r}: {type(exc).__name__}: {str(exc)[:300]}.{hint}"
    )


def load_tokenizer(model: str) -> Any:
    from lgrpo.models import load_tokenizer

    try:
        tokenizer = load_tokenizer(model)
    except Exception as exc:
        raise _load_error("tokenizer", model, exc) from exc
    tokenizer.padding_side = "left"  # generation appends on the right, so prompts must end at the same column
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class HFGenerator:
    """Batched greedy decoding with transformers."""

    def __init__(self, model: str, max_new_tokens: int, batch_size: int, device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.tokenizer = load_tokenizer(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.model = AutoModelForCausalLM.from_pretrained(model, dtype="auto").to(self.device).eval()
        except Exception as exc:
            raise _load_error("weights", model, exc) from exc
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.plain = not getattr(self.tokenizer, "chat_template", None)

    def prompts(self, problems: list[str]) -> list[str]:
        return [format_prompt(self.tokenizer, p) for p in problems]

    def generate(self, problems: list[str]) -> Iterator[list[str]]:
        """Yield the completions of each batch of ``problems``, in order."""
        import torch

        prompts = self.prompts(problems)
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            # a chat template already writes the special tokens the model expects; plain prompts get the defaults
            enc = self.tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=self.plain)
            enc = enc.to(self.device)
            prompt_len = enc["input_ids"].shape[1]
            with torch.no_grad():
                out = self.model.generate(
                    **enc,
                    do_sample=False,
                    max_new_tokens=self.max_new_tokens,
                    stopping_criteria=[BoxedStoppingCriteria(self.tokenizer, prompt_lengths=prompt_len)],
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            texts = self.tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
            # a row that stopped early keeps generating until the whole batch stops; cut it at its box
            yield [truncate_after_boxed(t) for t in texts]


class VLLMGenerator:
    """Greedy decoding with vLLM (all prompts at once; vLLM schedules them itself)."""

    def __init__(self, model: str, max_new_tokens: int, batch_size: int) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise SystemExit(
                "--backend vllm needs vLLM, which is not installed (`pip install vllm`); or use --backend hf"
            ) from exc
        self.tokenizer = load_tokenizer(model)
        try:
            self.llm = vllm.LLM(model=model)
        except Exception as exc:
            raise _load_error("weights (vLLM)", model, exc) from exc
        self.params = vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        self.batch_size = batch_size

    def generate(self, problems: list[str]) -> Iterator[list[str]]:
        prompts = [format_prompt(self.tokenizer, p) for p in problems]
        # chunks only so that results are written as they come; each chunk is still one vLLM batch
        chunk = max(self.batch_size, 256)
        for start in range(0, len(prompts), chunk):
            outputs = self.llm.generate(prompts[start : start + chunk], self.params, use_tqdm=False)
            yield [truncate_after_boxed(o.outputs[0].text) for o in outputs]


def make_generator(
    backend: str, model: str, max_new_tokens: int, batch_size: int
) -> HFGenerator | VLLMGenerator:
    if backend == "vllm":
        return VLLMGenerator(model, max_new_tokens, batch_size)
    if backend == "hf":
        return HFGenerator(model, max_new_tokens, batch_size)
    raise ValueError(f"--backend must be 'hf' or 'vllm', got {backend!r}")
