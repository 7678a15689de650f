"""``LambdaGRPOConfig(stop_after_boxed=True)``: every completion is cut after its first closed box and closed with EOS
in TRL's generation step, whatever generated it, with SmolLM2's real tokenizer (pad == EOS, merged closing braces).

A generator that runs on past the box (as vLLM does, having no stop rule for balanced braces) is replaced by a fake;
for transformers generation the real ``generate`` runs with the stopping criterion, its tokens scripted.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import LogitsProcessor, LogitsProcessorList
from trl import GRPOTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trl_helpers import base_args

from lgrpo.engines.trl import LambdaGRPOConfig, LambdaGRPOTrainer
from lgrpo.models import tiny_causal_lm

# (generated text, the text kept by the cut, written by hand); None: no box closes, nothing is cut
RUN_ON = [
    ("12+56=68\n\\boxed{68}\nThe answer is 68, and more run-on text", "12+56=68\n\\boxed{68}"),
    ("x \\boxed{\\frac{1}{2}}$ and it goes on", "x \\boxed{\\frac{1}{2}}"),  # '}}' is one token, kept whole
    ("no box at all, it runs to the length limit", None),
    ("so \\boxed{5}. Then", "so \\boxed{5}."),  # '}.' is one token, kept whole
]


def _encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _tiny_llama(tok):
    """A tiny random Llama over SmolLM2's vocabulary: only its vocabulary matters here, generation is scripted."""
    return tiny_causal_lm(tok, "llama", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)


def _trainer(tok, tmp_path, **overrides) -> LambdaGRPOTrainer:
    tok.padding_side = "left"
    data = Dataset.from_dict({"prompt": ["Q: 12+56?", "Q: what is one half, as a fraction?"] * 4})
    args = base_args(
        str(tmp_path),
        stop_after_boxed=True,
        max_completion_length=24,
        per_device_train_batch_size=4,
        **overrides,
    )
    seen: list[str] = []

    def reward(prompts, completions, **_):
        seen.extend(completions)
        return [float(i % 2) for i in range(len(completions))]

    trainer = LambdaGRPOTrainer(
        model=_tiny_llama(tok),
        reward_funcs=reward,
        args=LambdaGRPOConfig(**args),
        train_dataset=data,
        processing_class=tok,
    )
    trainer.seen_completions = seen
    return trainer


def test_run_on_completions_are_cut_and_count_as_terminated(smollm2_tokenizer, tmp_path, monkeypatch):
    tok = smollm2_tokenizer
    eos = tok.eos_token_id
    scripted = [_encode(tok, text) for text, _ in RUN_ON]

    def fake_generate(self, prompt_ids, *args, **kwargs):  # vLLM-like: ids and sampling log-probs, no EOS
        ids = [scripted[i % len(scripted)] for i in range(len(prompt_ids))]
        return ids, [[-0.5] * len(r) for r in ids]

    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", fake_generate)
    trainer = _trainer(tok, tmp_path, mask_truncated_completions=True)
    trainer.model.train()
    inputs = [{"prompt": "Q: 12+56?"}] * 4
    _, completion_ids, _, completions, logprobs, *_ = trainer._generate([x["prompt"] for x in inputs])
    for row, lp, text, (raw, kept) in zip(completion_ids, logprobs, completions, RUN_ON):
        if kept is None:
            assert row == _encode(tok, raw) and lp == [-0.5] * len(row) and text == raw
            continue
        n = len(row) - 1
        assert row[-1] == eos and tok.decode(row[:n]) == kept and row[:n] == _encode(tok, raw)[:n]
        assert text == kept  # rewards and the rollout log see the cut text
        assert lp[:n] == [-0.5] * n and math.isnan(lp[n])  # the added EOS was not sampled
    # only the row without a box is truncated
    assert trainer._metrics["train"]["completions/clipped_ratio"][-1] == pytest.approx(0.25)

    batch = trainer._generate_and_score_completions(inputs)
    lengths = batch["completion_mask"].sum(1).tolist()
    expected = [len(_encode(tok, kept)) + 1 if kept is not None else 0 for _, kept in RUN_ON]
    assert (
        lengths == expected
    )  # mask_truncated_completions drops the run-on row only; cut rows keep their EOS
    assert trainer.seen_completions[-4:] == [kept if kept is not None else raw for raw, kept in RUN_ON]


class _Script(LogitsProcessor):
    """Row i generates the tokens of scripts[i % len(scripts)] (then EOS); counts the generation steps."""

    def __init__(self, scripts: list[list[int]], eos: int) -> None:
        self.scripts, self.eos, self.steps, self.start = scripts, eos, 0, None

    def __call__(self, input_ids, scores):
        if self.start is None:
            self.start = input_ids.shape[1]
        step = input_ids.shape[1] - self.start
        self.steps = step + 1
        forced = torch.full_like(scores, -float("inf"))
        for i in range(scores.shape[0]):
            script = self.scripts[i % len(self.scripts)]
            forced[i, script[step] if step < len(script) else self.eos] = 0.0
        return forced


def test_transformers_generation_stops_at_the_box(smollm2_tokenizer, tmp_path):
    # the real generate and stopping criterion: rows whose scripts run on past their box stop at the box
    tok = smollm2_tokenizer
    eos = tok.eos_token_id
    run_on = " and then it goes on and on, and on and on, and on"
    texts = ["so \\boxed{5}. Then" + run_on, "12+56=68\n\\boxed{68} The answer is 68" + run_on]
    scripts = [_encode(tok, t) for t in texts]
    kept = ["so \\boxed{5}.", "12+56=68\n\\boxed{68}"]
    assert all(s[: len(_encode(tok, k))] == _encode(tok, k) for s, k in zip(scripts, kept))
    trainer = _trainer(tok, tmp_path)
    trainer.model.train()
    script = _Script(scripts, eos)
    model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
    model.generate = functools.partial(model.generate, logits_processor=LogitsProcessorList([script]))
    _, completion_ids, _, completions, logprobs, *_ = trainer._generate(["Q: 12+56?", "Q: one half?"] * 2)
    assert completions == [kept[i % 2] for i in range(4)]
    assert completion_ids == [[*_encode(tok, kept[i % 2]), eos] for i in range(4)]
    assert logprobs is None
    # generation stopped once the later box closed, well before the scripts (and max_completion_length) end
    assert script.steps == max(len(_encode(tok, k)) for k in kept)
    assert script.steps < min(min(map(len, scripts)), trainer.max_completion_length)
    assert trainer._metrics["train"]["completions/clipped_ratio"][-1] == 0.0
    assert isinstance(vars(model)["generate"], functools.partial)  # the criterion's wrapper was removed again
