"""Math answers: boxed extraction, verification against known verdicts, time bounds, the reward, stopping."""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessor, LogitsProcessorList

from lgrpo.models import char_tokenizer, tiny_causal_lm
from lgrpo.tasks.math_answers import (
    SYSTEM_PROMPT,
    BoxedStoppingCriteria,
    MathReward,
    boxed_closed,
    extract_boxed,
    gold_problem,
    normalize_upright,
    truncate_after_boxed,
    verify,
)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "answers.jsonl"
CASES = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
# Answers whose exact evaluation would take sympy minutes or exhaust memory.
PATHOLOGICAL = ["9^{9^{9^{9}}}", "(10^{10^{10}})!", "10^{10^{100}}"]


def test_system_prompt_is_the_papers():
    assert SYSTEM_PROMPT == "Let's think step by step and output the final answer within \\boxed{}."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{\\frac{1}{2}} then \\boxed{3}", "\\frac{1}{2}"),
        ("\\boxed{ {a}{b} }", "{a}{b}"),
        ("\\boxed {7}", "7"),
        ("\\fbox{7}", "7"),
        ("no box here", None),
        ("\\boxed{unclosed {x}", None),
        # escaped braces never open or close the box
        ("\\boxed{\\left\\{ x \\right.} done", "\\left\\{ x \\right."),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{a \\} b", None),
        # a box without braces boxes one bare argument, as in LaTeX and math-verify
        ("so \\boxed 5 and more", "5"),
        ("\\boxed 50 apples", "50"),
        ("\\boxed -3. Done", "-3"),
        ("\\boxed \\pi here", "\\pi"),
        ("$\\boxed 7$", "7"),
        ("\\boxed 5 then \\boxed{6}", "5"),  # the first box counts, braced or not
        ("\\boxedfoo{3}", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected
    assert boxed_closed(text) == (expected is not None)


@pytest.mark.parametrize(
    "text",
    [
        "\\boxed{}",
        "so \\boxed{ } and \\boxed{3}",
        "\\fbox{}",
        "\\boxed{\\,}",
        "\\boxed{\\quad}",
        "\\boxed{~\\; }",
        "\\boxed{\\text{}}",
        "\\boxed{\\text{ }}",
        "\\boxed{{}}",
        "\\boxed{{ }{}}",
    ],
)
def test_an_empty_box_is_no_answer(text):
    # the box has closed (generation stops there) but it holds no answer; later boxes do not count
    assert boxed_closed(text)
    assert extract_boxed(text) is None
    assert verify(text, "0") == (0.0, "no_answer")


@pytest.mark.parametrize(
    ("text", "content"),
    [
        ("\\boxed{\\{\\}}", "\\{\\}"),
        ("\\boxed{\\quadrilateral}", "\\quadrilateral"),
        ("\\boxed{\\text{x}}", "\\text{x}"),
    ],
)
def test_a_box_that_looks_blank_but_is_not(text, content):
    assert extract_boxed(text) == content  # the empty set \{\} is an answer


def test_a_bare_box_at_the_end_of_a_text():
    # a finished text: its bare argument is complete; a text still being generated: it may grow (5 → 50)
    assert extract_boxed("so \\boxed 5") == "5"
    assert not boxed_closed("so \\boxed 5")
    assert boxed_closed("so \\boxed 50 ")
    assert truncate_after_boxed("so \\boxed 50. Then more") == "so \\boxed 50"
    assert truncate_after_boxed("\\boxed") == "\\boxed"


def test_verify_scores_a_bare_box():
    assert verify("the answer is \\boxed 5.", "5") == (1.0, None)


def test_truncate_after_boxed():
    assert truncate_after_boxed("a \\boxed{x^{2}} tail \\boxed{y}") == "a \\boxed{x^{2}}"
    assert truncate_after_boxed("still going \\boxed{x") == "still going \\boxed{x"
    assert truncate_after_boxed("") == ""


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab{}\\boxed ", max_size=40))
def test_truncation_keeps_the_answer(text):
    cut = truncate_after_boxed(text)
    assert text.startswith(cut)
    assert extract_boxed(cut) == extract_boxed(text)
    if boxed_closed(text):
        if cut.endswith("}"):
            assert boxed_closed(cut)
        else:  # a box without braces ends with its bare argument
            assert cut.endswith(extract_boxed(text))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab5.{}\\boxedf $", max_size=30))
def test_a_closed_box_stays_closed_as_the_text_grows(text):
    # what generation stops on (a prefix whose box has closed) is what scoring reads from the whole text
    for i in range(len(text) + 1):
        if boxed_closed(text[:i]):
            assert boxed_closed(text) and extract_boxed(text[:i]) == extract_boxed(text)
            break


def test_fixture_is_large_and_mixed():
    assert len(CASES) >= 25
    assert {c["correct"] for c in CASES} == {True, False, None}


@pytest.mark.parametrize("case", CASES, ids=[c["kind"] for c in CASES])
def test_verify_known_verdicts(case):
    # correct: true/false is the verdict; null marks a gold that cannot be scored (reward NaN, whatever the answer)
    score, tag = verify(case["completion"], case["gold"])
    if case["correct"] is None:
        assert math.isnan(score) and tag.startswith("unscorable: ")
        assert gold_problem(case["gold"]) is not None
        return
    assert gold_problem(case["gold"]) is None
    assert tag == (None if extract_boxed(case["completion"]) is not None else "no_answer")
    assert score == (1.0 if case["correct"] else 0.0)


def test_verify_takes_the_gold_second():
    # math-verify's verify(gold, target) is asymmetric: a gold inequality accepts an interval, not the reverse
    assert verify("\\boxed{(1, 2)}", "1 < x < 2").score == 1.0
    assert verify("\\boxed{1 < x < 2}", "(1, 2)").score == 0.0


def test_normalize_upright():
    assert normalize_upright("1 - \\frac{1}{\\mathrm{e}}") == "1 - \\frac{1}{e}"
    assert normalize_upright("3+4\\mathrm{i} + {\\rm e} + \\operatorname{d}x") == "3+4i + e + dx"
    assert normalize_upright("\\operatorname{sin} x + \\mathrm{lcm}(2,3)") == "\\sin x + \\lcm(2,3)"
    assert normalize_upright("\\mathrm{kg} + \\operatorname{sgn}(x) + \\text{(E)}") == (
        "\\mathrm{kg} + \\operatorname{sgn}(x) + \\text{(E)}"
    )


@pytest.mark.parametrize(
    ("gold", "why"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("see the figure", "not mathematics"),
        ("The answer is in the table", "not mathematics"),
        ("\\operatorname{sgn}(x)", "cannot parse"),
    ],
)
def test_gold_problem_names_the_reason(gold, why):
    assert why in gold_problem(gold)


@pytest.mark.parametrize(
    "gold",
    ["abc", "2xyz", "xy + yz + zx", "ABC", "\\triangle ABCD", "\\text{no solution}", "5\\text{ inches}"],
)
def test_products_of_variables_and_point_names_are_not_prose(gold):
    assert gold_problem(gold) is None


@pytest.mark.parametrize("answer", PATHOLOGICAL)
def test_pathological_answers_are_bounded_and_score_zero(answer):
    verify("\\boxed{1}", "1")  # the worker is up, so only the answer itself is timed
    t0 = time.monotonic()
    score, err = verify(f"\\boxed{{{answer}}}", "3", timeout=1.0)
    elapsed = time.monotonic() - t0
    assert score == 0.0
    assert err in (None, "timeout")  # math-verify may also give up on its own
    assert elapsed < 1.0 + 5.0  # the limit, plus slack for a loaded CPU
    assert verify("\\boxed{2}", "2") == (1.0, None)  # the worker was restarted after a kill


def test_verify_never_raises_on_junk():
    for completion, gold in [
        ("\\boxed{" + "{" * 5000 + "}" * 5000 + "}", "1"),
        ("\\boxed{\\frac{}{}}", "}{"),
        ("", ""),
    ]:
        score, _ = verify(completion, gold, timeout=1.0)
        assert score == 0.0 or math.isnan(score)  # junk golds ("}{", "") are unscorable


def test_verify_from_threads():
    jobs = [(f"\\boxed{{{i}}}", str(i if i % 2 else i + 1)) for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda j: verify(*j), jobs))
    assert [s for s, _ in results] == [float(i % 2) for i in range(16)]


def test_math_reward_scores_and_logs_shares():
    reward = MathReward(timeout=1.0)
    assert reward.__name__ == "math_reward"
    completions = [
        "\\boxed{4}",
        [{"role": "assistant", "content": "so \\boxed{\\frac{1}{2}}"}],  # conversational TRL completions
        "\\boxed{5}",
        f"\\boxed{{{PATHOLOGICAL[0]}}}",
        "\\boxed{}",
        "\\boxed{1}",
        "no box at all",
        "\\boxed{2}",
    ]
    golds = ["4", "0.5", "6", "7", "1", "see the figure", "2", "2"]
    logged: dict[str, list[float]] = {}
    scores = reward(
        prompts=["p"] * 8,
        completions=completions,
        answer=golds,
        log_metric=lambda name, value: logged.setdefault(name, []).append(value),  # as TRL passes it
    )
    assert scores[:5] == [1.0, 1.0, 0.0, 0.0, 0.0] and math.isnan(scores[5]) and scores[6:] == [0.0, 1.0]
    assert logged == {
        "reward/unscorable": [1 / 8],
        "reward/no_answer": [2 / 8],
        "reward/verify_timeouts": [1 / 8],
        "reward/verify_errors": [0.0],
    }
    # called outside TRL: no log_metric
    assert reward(prompts=None, completions=["\\boxed{3}"], answer=["3"]) == [1.0]
    with pytest.raises(ValueError, match="timeout"):
        MathReward(timeout=0)


class _Force(LogitsProcessor):
    """Make row i of a batch generate the token ids of targets[i], then padding."""

    def __init__(self, targets: list[list[int]], prompt_len: int, pad_id: int) -> None:
        self.targets, self.prompt_len, self.pad_id = targets, prompt_len, pad_id

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        forced = torch.full_like(scores, -float("inf"))
        for i, target in enumerate(self.targets):
            forced[i, target[step] if step < len(target) else self.pad_id] = 0.0
        return forced


@pytest.fixture(scope="module")
def tokenizer():
    return char_tokenizer()


def test_stopping_criteria_on_tensors(tokenizer):
    prompt = tokenizer(["P:", "Q:"], return_tensors="pt")["input_ids"]
    crit = BoxedStoppingCriteria(tokenizer, prompt_lengths=prompt.shape[1])
    texts = ["x \\boxed{1", "y"]
    done = []
    for n in range(1, 4):
        gen = [t + "}" * (n - 1) for t in texts]  # row 0 closes its box at n = 2; row 1 never has a box
        ids = [tokenizer(g, add_special_tokens=False)["input_ids"] for g in gen]
        width = max(map(len, ids))
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in ids])
        done.append(crit(torch.cat([prompt, ids], dim=1), None).tolist())
    assert done == [[False, False], [True, False], [True, False]]
    # the same object in a new generate call (a longer prompt, one new token) starts afresh
    batch = tokenizer(["a much longer prompt \\boxed{1}", "b"], return_tensors="pt", padding=True)
    fresh = batch["input_ids"]
    assert crit.prompt_lengths is not None
    crit.prompt_lengths = None
    assert crit(fresh, None).tolist() == [False, False]


def test_stopping_criteria_new_call_as_long_as_the_last_text(tokenizer):
    # call 1 ends with its row done at length L; call 2's first input (a new prompt of L tokens plus one new token)
    # has grown by exactly one token, yet it is a new call and nothing in it has closed a box
    crit = BoxedStoppingCriteria(tokenizer)
    ids = tokenizer(["Q: \\boxed{1}"], return_tensors="pt")["input_ids"]
    prompt_len = ids.shape[1] - len("\\boxed{1}")
    done = [crit(ids[:, :n], None).tolist() for n in range(prompt_len + 1, ids.shape[1] + 1)]
    assert done[-2:] == [[False], [True]]
    second = tokenizer(["a new and longer prompt, no box"], return_tensors="pt")["input_ids"][
        :, : ids.shape[1] + 1
    ]
    assert second.shape[1] == ids.shape[1] + 1
    assert crit(second, None).tolist() == [False]


def test_stopping_criteria_ignores_boxes_in_the_prompt(tokenizer):
    prompt = tokenizer(["\\boxed{9}"], return_tensors="pt")["input_ids"]
    new = torch.tensor([tokenizer("}", add_special_tokens=False)["input_ids"]])
    assert BoxedStoppingCriteria(tokenizer)(torch.cat([prompt, new], dim=1), None).tolist() == [False]


def test_stopping_criteria_in_generate(tokenizer):
    model = tiny_causal_lm(tokenizer, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, seed=0)
    enc = tokenizer(["Q: 1+1?", "Q: 2"], return_tensors="pt", padding=True)
    targets = ["ok \\boxed{2} and then more text", "\\boxed{{x}} rest"]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in targets]
    prompt_len = enc["input_ids"].shape[1]
    crit = BoxedStoppingCriteria(tokenizer)
    out = model.generate(
        **enc,
        do_sample=False,
        max_new_tokens=40,
        logits_processor=LogitsProcessorList([_Force(ids, prompt_len, tokenizer.pad_token_id)]),
        stopping_criteria=[crit],
        pad_token_id=tokenizer.pad_token_id,
    )
    texts = tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
    assert texts == ["ok \\boxed{2}", "\\boxed{{x}}"]
    assert out.shape[1] - prompt_len == len("ok \\boxed{2}")  # the batch stopped once both boxes closed


def test_a_worked_solution_as_the_gold_is_read_at_its_last_box():
    # OpenRS rows without an `answer` give their `solution`: prose around a boxed answer is not a prose gold
    solution = "First we halve the whole, so the share is one half: \\boxed{\\frac{1}{2}}."
    assert gold_problem(solution) is None
    assert verify("\\boxed{0.5}", solution).score == 1.0


def test_missing_math_verify_is_an_error_not_a_silent_zero(monkeypatch):
    """Without math-verify the worker cannot start; every answer would score 0, so this must raise."""
    import importlib.util
    import types

    from lgrpo.tasks import math_answers as ma

    class NeverReady:
        ready = False
        popen = types.SimpleNamespace(stdin=object())

        def alive(self):
            return True

        def readline(self, timeout):
            return None

        def kill(self):
            pass

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(ma, "_Proc", NeverReady)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "math_verify" else real_find_spec(name, *a),
    )
    with pytest.raises(ImportError, match="math-verify"):
        ma._Worker().request("1", "1", timeout=1.0)
