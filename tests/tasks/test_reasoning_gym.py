"""The reasoning-gym adapter: prompts in the training format and the dataset's own scorer as a TRL reward."""

from __future__ import annotations

import datasets
import pytest

from lgrpo.tasks.math_answers import SYSTEM_PROMPT
from lgrpo.tasks.reasoning_gym import ReasoningGymReward, drop_entries, extract_answer, reasoning_gym_dataset


@pytest.mark.parametrize("name", ["basic_arithmetic", "chain_sum"])
def test_rows_and_reward(name):
    rows, reward = reasoning_gym_dataset(name, size=6, seed=3)
    assert len(rows) == 6
    assert reward.__name__ == f"reasoning_gym_{name}"
    for i, row in enumerate(rows):
        assert row["prompt"][0] == {"role": "system", "content": SYSTEM_PROMPT}
        assert row["prompt"][1]["role"] == "user" and row["prompt"][1]["content"] == row["entry"]["question"]
        assert row["answer"] == str(row["entry"]["answer"]) and row["rg_index"] == i
    right = [f"work... \\boxed{{{r['answer']}}}" for r in rows]
    wrong = [f"\\boxed{{{int(r['answer']) + 1}}}" for r in rows]  # both datasets have integer answers
    index = [r["rg_index"] for r in rows]
    assert reward(None, right, rg_index=index) == [1.0] * 6
    assert reward(None, wrong, rg_index=index) == [0.0] * 6
    assert reward(None, ["no answer"] * 6, rg_index=index) == [0.0] * 6
    # the `entry` column works as well, and so does reasoning-gym's own <answer> format
    tagged = [[{"role": "assistant", "content": f"<answer>{r['answer']}</answer>"}] for r in rows]
    assert reward(None, tagged, entry=[r["entry"] for r in rows]) == [1.0] * 6
    assert reward.metrics() == {"reward/score_errors": 0}


def test_same_seed_same_problems_and_config_passes_through():
    a, _ = reasoning_gym_dataset(
        "chain_sum", size=5, seed=7, min_terms=2, max_terms=2, min_digits=1, max_digits=1
    )
    b, _ = reasoning_gym_dataset(
        "chain_sum", size=5, seed=7, min_terms=2, max_terms=2, min_digits=1, max_digits=1
    )
    c, _ = reasoning_gym_dataset(
        "chain_sum", size=5, seed=8, min_terms=2, max_terms=2, min_digits=1, max_digits=1
    )
    assert [r["answer"] for r in a] == [r["answer"] for r in b]
    assert [r["prompt"] for r in a] != [r["prompt"] for r in c]
    assert all(r["entry"]["metadata"]["num_terms"] == 2 for r in a)


def test_drop_entries_makes_an_arrow_dataset():
    rows, _ = reasoning_gym_dataset("basic_arithmetic", size=4, seed=0, system_prompt=None)
    assert len(rows[0]["prompt"]) == 1  # no system message
    ds = datasets.Dataset.from_list(drop_entries(rows))
    assert set(ds.column_names) == {"prompt", "answer", "rg_index"} and len(ds) == 4


def test_scorer_errors_are_counted_not_raised():
    class Broken:
        def __getitem__(self, i):
            return {"question": "?", "answer": "1"}

        def score_answer(self, answer, entry):
            raise KeyError("metadata")

    reward = ReasoningGymReward(Broken(), "broken")
    assert reward(None, ["\\boxed{1}", "no answer", "\\boxed{2}"], rg_index=[0, 1, 2]) == [0.0, 0.0, 0.0]
    assert reward.metrics() == {"reward/score_errors": 2}  # the unanswered one is not sent to the scorer


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown reasoning-gym dataset 'no_such_task'"):
        reasoning_gym_dataset("no_such_task", size=2)
    with pytest.raises(ValueError, match="rejected its config"):
        reasoning_gym_dataset("chain_sum", size=2, not_an_option=1)
    with pytest.raises(ValueError, match="size"):
        reasoning_gym_dataset("chain_sum", size=0)
    _, reward = reasoning_gym_dataset("chain_sum", size=2)
    with pytest.raises(ValueError, match="rg_index"):
        reward(None, ["\\boxed{1}"])


def test_extract_answer_prefers_the_box():
    assert extract_answer("<answer>3</answer> \\boxed{4}") == "4"
    assert extract_answer("<answer> 3 </answer>") == "3"
    assert extract_answer("nothing") is None


def test_dataset_options_come_from_the_config():
    import re

    from lgrpo.experiments.config import load_config
    from lgrpo.tasks import build_task

    options = "data.options={min_terms: 2, max_terms: 3, min_digits: 1, max_digits: 2}"
    cfg = load_config(
        None, ["data.task=reasoning_gym:chain_sum", "data.train_size=40", "data.eval_size=10", options]
    )
    task = build_task(cfg)
    numbers = [re.findall(r"\d+", row["problem"].rsplit(":", 1)[-1]) for row in task.train]
    # reasoning-gym's defaults give up to 6 terms of up to 4 digits
    assert {len(n) for n in numbers} == {2, 3}
    assert all(int(x) < 100 for n in numbers for x in n)
    with pytest.raises(ValueError, match=r"data\.options.*chain_sum"):
        build_task(load_config(None, ["data.task=reasoning_gym:chain_sum", "data.options={max_term: 3}"]))
    with pytest.raises(ValueError, match=r"data\.options.*only reasoning_gym"):
        load_config(None, ["data.options={min_terms: 2}"])
