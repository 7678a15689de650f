"""Greedy generation for evaluation: the one decoding path of ``lgrpo eval`` and of ``lgrpo train``'s held-out accuracy.

:func:`greedy_completions` turns problems into prompts with the task's :class:`~lgrpo.tasks.PromptFormat`, generates
greedily in left-padded batches and stops each completion after its first closed ``\\boxed{}``. Two backends for
``lgrpo eval``: Hugging Face ``generate`` (:class:`HFGenerator`, through :func:`greedy_completions`) and vLLM (when
it is installed and asked for; vLLM has no stop rule for balanced braces, so its outputs are trimmed with
:func:`truncate_after_boxed` afterwards, which gives the same text).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lgrpo.tasks.math_answers import BoxedStoppingCriteria, truncate_after_boxed
from lgrpo.tasks.task import PromptFormat


def greedy_completions(
    model: Any,
    tokenizer: Any,
    prompt_format: PromptFormat,
    problems: list[str],
    max_new_tokens: int,
    batch_size: int,
) -> Iterator[list[str]]:
    """Yield the greedy completions of ``problems``, one list per batch of ``batch_size``, in order.

    Prompts are ``prompt_format.text(problem, tokenizer)``, tokenized as TRL tokenizes them during training (a chat
    template already holds its special tokens; plain text gets the tokenizer's defaults) and left-padded so that all
    rows of a batch end at the same column. Each completion is decoded without special tokens and cut after its
    first closed box (a row that stopped keeps generating until the whole batch stops).
    """
    import torch

    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(problems), batch_size):
            texts = [prompt_format.text(p, tokenizer) for p in problems[start : start + batch_size]]
            enc = tokenizer(
                texts,
                return_tensors="pt",
                padding=True,
                padding_side="left",
                add_special_tokens=prompt_format.add_special_tokens,
            ).to(model.device)
            prompt_len = enc["input_ids"].shape[1]
            with torch.no_grad():
                out = model.generate(
                    **enc,
                    do_sample=False,
                    max_new_tokens=max_new_tokens,
                    stopping_criteria=[BoxedStoppingCriteria(tokenizer, prompt_lengths=prompt_len)],
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            decoded = tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
            yield [truncate_after_boxed(t) for t in decoded]
    finally:
        model.train(was_training)


def format_prompt(tokenizer: Any, problem: str, prompt_format: PromptFormat | None = None) -> str:
    """The prompt text of ``problem``: ``prompt_format``, by default :meth:`PromptFormat.for_tokenizer`."""
    return (prompt_format or PromptFormat.for_tokenizer(tokenizer)).text(problem, tokenizer)


def resolve_run(path: str) -> tuple[str, Any]:
    """``(weights, run config)`` for ``lgrpo eval --model PATH``: a run folder (it holds ``config.yaml``) gives its
    ``final/`` model, or when there is none its last checkpoint, and its config; anything else is returned as it is,
    with config None. A run folder with neither model is a ``SystemExit`` that says so."""
    run = Path(path)
    if not (run.is_dir() and (run / "config.yaml").is_file()):
        return path, None
    from lgrpo.experiments.config import load_config

    try:
        cfg = load_config(run / "config.yaml")
    except ValueError as exc:
        raise SystemExit(f"--model {path}: its config.yaml does not load: {exc}") from exc
    final = run / "final"
    if final.is_dir() and any((final / f).is_file() for f in ("config.json", "adapter_config.json")):
        return str(final), cfg
    ckpts = [p for p in (run / "checkpoints").glob("checkpoint-*") if (p / "config.json").is_file()]
    ckpts += [p for p in (run / "checkpoints").glob("checkpoint-*") if (p / "adapter_config.json").is_file()]
    if ckpts:
        return str(max(ckpts, key=lambda p: int(p.name.rsplit("-", 1)[-1]))), cfg
    raise SystemExit(
        f"--model {path}: a run folder (it has config.yaml) with no final/ model and no checkpoint to evaluate"
    )


def _load_error(what: str, model: str, exc: Exception) -> SystemExit:
    from lgrpo.models import looks_like_hub_id

    hint = ""
    if not os.path.exists(model) and looks_like_hub_id(model):
        hint = (
            " It is not a local path, so it was looked up on the Hugging Face Hub; where the Hub is not reachable,"
            f" download it where it is (`hf download {model} --local-dir DIR`) and pass --model DIR."
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
    """Batched greedy decoding with transformers (:func:`greedy_completions`)."""

    def __init__(
        self,
        model: str,
        max_new_tokens: int,
        batch_size: int,
        device: str | None = None,
        prompt_format: PromptFormat | None = None,
    ) -> None:
        import torch

        from lgrpo.models import LoadError, load_model

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:  # the loader of `lgrpo train`: a .gguf file, a model folder, a LoRA adapter folder or a Hub id
            loaded, self.tokenizer = load_model(model, dtype="auto", what="--model")
        except LoadError as exc:
            raise SystemExit(str(exc)) from None
        self.model = loaded.to(self.device).eval()
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.prompt_format = prompt_format or PromptFormat.for_tokenizer(self.tokenizer)

    def prompts(self, problems: list[str]) -> list[str]:
        return [self.prompt_format.text(p, self.tokenizer) for p in problems]

    def generate(self, problems: list[str]) -> Iterator[list[str]]:
        """Yield the completions of each batch of ``problems``, in order."""
        yield from greedy_completions(
            self.model, self.tokenizer, self.prompt_format, problems, self.max_new_tokens, self.batch_size
        )


class VLLMGenerator:
    """Greedy decoding with vLLM (all prompts at once; vLLM schedules them itself)."""

    def __init__(
        self, model: str, max_new_tokens: int, batch_size: int, prompt_format: PromptFormat | None = None
    ) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise SystemExit(
                "--backend vllm needs vLLM, which is not installed (`pip install vllm`); or use --backend hf"
            ) from exc
        if model.endswith(".gguf"):  # vLLM loads the plain copy that `lgrpo train` uses too
            from lgrpo.models import LoadError, dequantise_gguf

            try:
                model = str(dequantise_gguf(model, what="--model"))
            except LoadError as exc:
                raise SystemExit(str(exc)) from None
        self.tokenizer = load_tokenizer(model)
        try:
            self.llm = vllm.LLM(model=model)
        except Exception as exc:
            raise _load_error("weights (vLLM)", model, exc) from exc
        self.params = vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        self.batch_size = batch_size
        self.prompt_format = prompt_format or PromptFormat.for_tokenizer(self.tokenizer)

    def generate(self, problems: list[str]) -> Iterator[list[str]]:
        """Yield the completions of ``problems`` in chunks, in order.

        vLLM gets token ids (``{"prompt_token_ids": ...}``), tokenized as the HF path and training tokenize them
        (:attr:`PromptFormat.add_special_tokens`): given text, vLLM would tokenize it again with special tokens, and a
        chat template that writes ``bos_token`` would reach the model as ``[BOS, BOS, ...]``.
        """
        prompts = [
            {"prompt_token_ids": ids} for ids in self.prompt_format.token_ids(problems, self.tokenizer)
        ]
        # chunks only so that results are written as they come; each chunk is still one vLLM batch
        chunk = max(self.batch_size, 256)
        for start in range(0, len(prompts), chunk):
            outputs = self.llm.generate(prompts[start : start + chunk], self.params, use_tqdm=False)
            yield [truncate_after_boxed(o.outputs[0].text) for o in outputs]


def make_generator(
    backend: str, model: str, max_new_tokens: int, batch_size: int, prompt_format: PromptFormat | None = None
) -> HFGenerator | VLLMGenerator:
    if backend == "vllm":
        return VLLMGenerator(model, max_new_tokens, batch_size, prompt_format)
    if backend == "hf":
        return HFGenerator(model, max_new_tokens, batch_size, prompt_format=prompt_format)
    raise ValueError(f"--backend must be 'hf' or 'vllm', got {backend!r}")
