"""SmolLM2's real BPE tokenizer and chat template (a saved fixture, no weights): boxed stopping and cutting where
``\\boxed{`` spans several tokens and the closing brace is merged with other characters, EOS equal to pad, the chat
template, process sets over real BPE ids, and left padding in batched generation."""

from __future__ import annotations

import math

import pytest
import torch

from lgrpo.objectives import lambda_weights
from lgrpo.process import process_set_sizes
from lgrpo.tasks.math_answers import (
    SYSTEM_PROMPT,
    BoxedStoppingCriteria,
    boxed_cut_length,
    cut_after_boxed,
)


def _encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _pieces(tok, ids: list[int]) -> list[str]:
    return [tok.decode([i]) for i in ids]


def test_eos_is_pad(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert tok.eos_token == tok.pad_token == "<|im_end|>"
    assert tok.eos_token_id == tok.pad_token_id == 2


def test_the_box_spans_several_tokens_and_the_closing_brace_is_merged(smollm2_tokenizer):
    # the tokenizations the cut must handle (issue 8): if the tokenizer changed, the cases below would test less
    tok = smollm2_tokenizer
    frac = _pieces(tok, _encode(tok, "x \\boxed{\\frac{1}{2}}$ more"))
    assert frac == ["x", " \\", "box", "ed", "{\\", "frac", "{", "1", "}{", "2", "}}", "$", " more"]
    assert _pieces(tok, _encode(tok, "so \\boxed{5}. Then")) == [
        "so",
        " \\",
        "box",
        "ed",
        "{",
        "5",
        "}.",
        " Then",
    ]


# (completion, the text kept by the cut, written by hand): the closing token stays whole
CUTS = [
    ("x \\boxed{\\frac{1}{2}}$ more text", "x \\boxed{\\frac{1}{2}}$"[:-1]),  # '}}' closes; '$' goes
    ("so \\boxed{5}. Then again \\boxed{6}", "so \\boxed{5}."),  # '}.' is one token: kept whole
    ("12+56=68\n\\boxed{68}\nThe answer is 68.", "12+56=68\n\\boxed{68}"),
    ("\\boxed{\\left\\{ x \\right.} and on", "\\boxed{\\left\\{ x \\right.}"),  # escaped braces do not close
    ("so \\boxed 7 and then more", "so \\boxed 7 "),  # a bare box closes at the token after its argument
]


@pytest.mark.parametrize(("text", "kept"), CUTS)
def test_cut_after_boxed_keeps_the_closing_token_whole(smollm2_tokenizer, text, kept):
    tok = smollm2_tokenizer
    ids = _encode(tok, text)
    n = boxed_cut_length(ids, tok)
    assert n is not None
    assert tok.decode(ids[:n]).startswith(kept)
    # the last kept token is the one that completes `kept`: one token fewer no longer reaches its end
    assert not tok.decode(ids[: n - 1]).startswith(kept)
    cut, _, was_cut = cut_after_boxed([ids], tok, tok.eos_token_id)
    assert was_cut == [True]
    assert cut[0] == [*ids[:n], tok.eos_token_id]


def test_cut_rows_without_a_closed_box_or_boxed_after_eos_are_unchanged(smollm2_tokenizer):
    tok = smollm2_tokenizer
    eos = tok.eos_token_id
    rows = [
        _encode(tok, "no box here at all"),
        _encode(tok, "an open \\boxed{12"),
        [*_encode(tok, "done"), eos, *_encode(tok, " \\boxed{1}")],  # the box comes after EOS
        [],
    ]
    out, lp, cut = cut_after_boxed(rows, tok, eos)
    assert out == rows and lp is None and cut == [False] * 4


def test_cut_is_idempotent_and_trims_logprobs(smollm2_tokenizer):
    tok = smollm2_tokenizer
    eos = tok.eos_token_id
    rows = [
        _encode(tok, "so \\boxed{5}. Then \\boxed{6}"),
        _encode(tok, "so \\boxed{42}"),
        _encode(tok, "none"),
    ]
    logprobs = [[-0.1 * (j + 1) for j in range(len(r))] for r in rows]
    out, lp, cut = cut_after_boxed(rows, tok, eos, logprobs)
    assert cut == [True, True, False]
    n0 = len(_encode(tok, "so \\boxed{5}."))
    assert out[0] == [*rows[0][:n0], eos] and lp[0][:n0] == logprobs[0][:n0] and math.isnan(lp[0][n0])
    assert out[1] == [*rows[1], eos] and len(lp[1]) == len(out[1])
    assert out[2] == rows[2] and lp[2] == logprobs[2]
    again, _, cut2 = cut_after_boxed(out, tok, eos, lp)
    assert again == out and cut2 == [True, True, False]  # a cut row ends with EOS right after its box
    with pytest.raises(ValueError, match="logprobs"):
        cut_after_boxed(rows, tok, eos, logprobs[:1])


def test_stopping_criteria_stops_on_a_merged_closing_token(smollm2_tokenizer):
    tok = smollm2_tokenizer
    prompt = torch.tensor([_encode(tok, "Q: one half?")])
    gen = _encode(tok, "x \\boxed{\\frac{1}{2}}$ more")
    crit = BoxedStoppingCriteria(tok)
    done = [
        bool(crit(torch.cat([prompt, torch.tensor([gen[:k]])], dim=1), None)[0])
        for k in range(1, len(gen) + 1)
    ]
    closing = _pieces(tok, gen).index("}}")
    assert done == [k >= closing for k in range(len(gen))]


def test_chat_template_with_and_without_a_system_prompt(smollm2_tokenizer):
    tok = smollm2_tokenizer
    user = {"role": "user", "content": "What is 12+56?"}
    with_system = tok.apply_chat_template(
        [{"role": "system", "content": SYSTEM_PROMPT}, user], tokenize=False, add_generation_prompt=True
    )
    assert with_system == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\nWhat is 12+56?<|im_end|>\n<|im_start|>assistant\n"
    )
    without = tok.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
    assert without == (  # SmolLM2's template adds its own default system prompt
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 12+56?<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = _encode(tok, with_system)
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(tok.eos_token_id) == 2  # <|im_end|> is one special token, and it is EOS


def test_process_sets_over_real_bpe_ids_match_brute_force(smollm2_tokenizer):
    tok = smollm2_tokenizer
    groups = [
        [
            "12+56=68\n\\boxed{68}",
            "12+56=68\n\\boxed{68}",
            "12+56=67\n\\boxed{67}",
            "12+5=17, so \\boxed{17}",
        ],
        ["Let's add: 30+4=34", "Let's add: 30+4 is \\boxed{34}", "Let's think", "\\boxed{34}.\n"],
    ]
    texts = [t for g in groups for t in g]
    rows = [_encode(tok, t) for t in texts]
    width = max(map(len, rows)) + 2
    ids = torch.full((len(rows), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):  # right padding, different lengths
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    # brute force (METHOD.md §2): |λ(i,t)| = members of i's group whose first t+1 tokens equal i's
    expected = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        for t in range(len(r)):
            expected[i, t] = sum(
                group[j] == group[i] and len(s) > t and s[: t + 1] == r[: t + 1] for j, s in enumerate(rows)
            )
    sizes = process_set_sizes(ids, mask, group)
    assert torch.equal(sizes, expected)
    assert expected.max() == 4 and (expected[mask.bool()] == 1).any()  # shared and unique prefixes both occur
    w = lambda_weights(ids, mask, group)
    assert torch.allclose(w[mask.bool()], 1.0 / expected[mask.bool()].float())


def test_left_padding_batched_greedy_equals_one_by_one(smollm2_tokenizer):
    from lgrpo.models import tiny_causal_lm

    tok = smollm2_tokenizer
    tok.padding_side = "left"
    model = tiny_causal_lm(
        tok, "llama", hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64
    ).eval()
    problems = ["1+1?", "What is 12+56? Show your steps.", "Add 3, 40 and 500, then add 7 to the result."]
    prompts = [
        tok.apply_chat_template(
            [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": p}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for p in problems
    ]
    lengths = {len(_encode(tok, p)) for p in prompts}
    assert len(lengths) == len(prompts)  # different token lengths, so the batch is padded
    kw = dict(do_sample=False, max_new_tokens=12, min_new_tokens=12, pad_token_id=tok.pad_token_id)
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert (enc["attention_mask"][:, 0] == 0).any() and (
        enc["attention_mask"][:, -1] == 1
    ).all()  # left padding
    with torch.no_grad():
        batched = model.generate(**enc, **kw)[:, enc["input_ids"].shape[1] :]
        for i, p in enumerate(prompts):
            one = tok([p], return_tensors="pt", add_special_tokens=False)
            alone = model.generate(**one, **kw)[0, one["input_ids"].shape[1] :]
            assert batched[i].tolist() == alone.tolist(), f"prompt {i}"
