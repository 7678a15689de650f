"""The supervised warm start reads each prompt as the same token ids as RL (TRL's own tokenization) reads it.

With a tokenizer that adds BOS (Llama-3's, here SmolLM2's real tokenizer made Llama-3-like: the ``bos_tokenizer``
fixture) and a plain-text prompt, the warm start used to tokenize without special tokens while TRL adds BOS, so the
two trained on different sequences. The reference is TRL's ``GRPOTrainer._tokenize_prompts`` itself.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from lgrpo.experiments import train as train_mod
from lgrpo.experiments.config import load_config
from lgrpo.tasks import build_task
from lgrpo.tasks.math_answers import SYSTEM_PROMPT
from lgrpo.tasks.task import PromptFormat


class _Recorder(torch.nn.Module):
    """Enough of a causal LM for the warm start: records each row's prompt (label −100, attended), loss 0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.prompts: list[list[int]] = []

    def forward(self, input_ids, attention_mask, labels):
        for ids, att, lab in zip(input_ids, attention_mask, labels):
            self.prompts.append(ids[att.bool() & (lab == -100)].tolist())
        return SimpleNamespace(loss=(self.w * 0).sum())


def _trl_prompt_ids(tok, prompts: list) -> list[list[int]]:
    """TRL 1.16's own prompt tokenization for generation (``GRPOTrainer._tokenize_prompts``), on a stand-in trainer."""
    trl = pytest.importorskip("trl")
    trainer = SimpleNamespace(
        processing_class=tok, _is_vlm=False, environment_factories=None, chat_template=None, tools=None,
        chat_template_kwargs={},
    )  # fmt: skip
    ids, _, _ = trl.GRPOTrainer._tokenize_prompts(trainer, prompts)
    return [list(x) for x in ids]


@pytest.mark.parametrize("chat", [False, True])
def test_warm_start_reads_the_prompt_ids_rl_reads(bos_tokenizer, chat):
    tok = bos_tokenizer
    bos = tok.bos_token_id
    cfg = load_config(None, ["data.train_size=6", "sft.steps=2", "sft.batch_size=6", "sft.warmup_steps=1"])
    fmt = PromptFormat(SYSTEM_PROMPT, chat=True) if chat else PromptFormat()
    task = dataclasses.replace(build_task(cfg), prompt_format=fmt)
    assert task.solutions, "the arithmetic task has worked solutions"
    model = _Recorder()
    train_mod.sft(model, tok, task, cfg, out=None)
    rl = _trl_prompt_ids(tok, [fmt.prompt(row["problem"]) for row in task.train])
    assert len(model.prompts) == 12
    assert sorted(map(tuple, model.prompts)) == sorted(map(tuple, rl * 2))  # every row, in both steps
    for ids in model.prompts:
        assert ids[0] == bos and ids.count(bos) == 1
