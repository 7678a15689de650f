"""``lgrpo eval --backend vllm`` gives vLLM the prompt token ids that training and the HF path use (one BOS).

vLLM is not installed here. A stand-in ``vllm`` module takes prompts the way ``vllm.LLM.generate`` does: a string is
tokenized again with the tokenizer's special tokens (vLLM's ``tokenizer.encode(text)``), a
``{"prompt_token_ids": ids}`` prompt is used as it is; it records what would reach the model. The tokenizer is
SmolLM2's real one made Llama-3-like (Llama-3.2-1B-Instruct, ``configs/paper/llama1b-*``): its post-processor adds
BOS and its chat template writes ``bos_token``. The expected ids come from transformers itself
(``apply_chat_template(..., tokenize=True)``, which is how TRL tokenizes a chat prompt in training, and the
tokenizer's own call for a plain prompt, as TRL tokenizes a string prompt).
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch

from lgrpo.evaluation import generate
from lgrpo.tasks.task import PromptFormat

BOS = "<|endoftext|>"  # the BOS of the bos_tokenizer fixture (tests/conftest.py)
PROBLEMS = ["What is 2+3?", "Compute $\\frac{1}{2}+\\frac{1}{3}$.", "x"]


class _StandInLLM:
    """``vllm.LLM`` as far as lgrpo uses it: tokenizes text prompts as vLLM does, records the ids."""

    received: ClassVar[list[list[int]]] = []

    def __init__(self, model: str, **_: object) -> None:
        from lgrpo.models import load_tokenizer

        self.tokenizer = load_tokenizer(model)  # vLLM reads the model folder's tokenizer

    def generate(self, prompts, params, use_tqdm=False):
        outputs = []
        for p in prompts:
            ids = self.tokenizer.encode(p) if isinstance(p, str) else list(p["prompt_token_ids"])
            _StandInLLM.received.append(ids)
            outputs.append(SimpleNamespace(outputs=[SimpleNamespace(text="so \\boxed{5} and more")]))
        return outputs


@pytest.fixture
def llama_like(bos_tokenizer, tmp_path, monkeypatch):
    tok = bos_tokenizer
    folder = tmp_path / "model"
    tok.save_pretrained(folder)
    stand_in = types.ModuleType("vllm")
    stand_in.LLM = _StandInLLM
    stand_in.SamplingParams = lambda **kw: SimpleNamespace(**kw)
    monkeypatch.setitem(sys.modules, "vllm", stand_in)
    _StandInLLM.received = []
    reloaded = generate.load_tokenizer(str(folder))
    bos_id = reloaded.convert_tokens_to_ids(BOS)
    assert reloaded("x")["input_ids"][0] == bos_id, "the stand-in tokenizer adds BOS, as Llama-3's does"
    return reloaded, str(folder), bos_id


class _RecordingModel:
    """Enough of a transformers model for :func:`greedy_completions`: records the prompt ids it is given."""

    training = False
    device = torch.device("cpu")

    def __init__(self, eos: int) -> None:
        self.eos, self.prompts = eos, []

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def generate(self, input_ids, attention_mask, **_):
        self.prompts += [row[m.bool()].tolist() for row, m in zip(input_ids, attention_mask)]
        return torch.cat([input_ids, torch.full((input_ids.shape[0], 1), self.eos)], 1)


@pytest.mark.parametrize("chat", [True, False])
def test_vllm_backend_sends_the_training_token_ids_with_one_bos(llama_like, chat):
    tok, folder, bos_id = llama_like
    fmt = PromptFormat("Let's think step by step.", chat=chat)
    gen = generate.make_generator("vllm", folder, max_new_tokens=8, batch_size=2, prompt_format=fmt)
    completions = [c for batch in gen.generate(PROBLEMS) for c in batch]
    assert completions == ["so \\boxed{5}"] * len(PROBLEMS)
    got = _StandInLLM.received
    if chat:  # transformers' own chat tokenization, as TRL's training tokenizes a conversational prompt
        expected = [
            tok.apply_chat_template(
                fmt.prompt(p), tokenize=True, add_generation_prompt=True, return_dict=True
            )["input_ids"]
            for p in PROBLEMS
        ]
    else:  # a string prompt: the tokenizer's defaults, as TRL tokenizes it
        expected = [tok(fmt.prompt(p))["input_ids"] for p in PROBLEMS]
    assert got == expected
    for ids in got:
        assert ids[0] == bos_id and ids[1] != bos_id and ids.count(bos_id) == 1, ids[:4]

    # the HF backend's prompts are the same ids (what model.generate gets, padding removed)
    model = _RecordingModel(tok.eos_token_id)
    list(generate.greedy_completions(model, tok, fmt, PROBLEMS, max_new_tokens=8, batch_size=2))
    assert model.prompts == got
