"""The toy tree task's reward table (METHOD.md §9)."""

from __future__ import annotations

import pytest
import torch

from lgrpo.tasks.toy_tree import LEAVES, ToyTree, leaf_index, leaf_name, parse_leaf


def test_leaves_in_binary_order():
    assert len(LEAVES) == 16
    assert LEAVES[0] == "LLLL" and LEAVES[6] == "LRRL" and LEAVES[15] == "RRRR"
    assert parse_leaf("lrrl") == 6 and leaf_name(6) == "LRRL"


def test_reward_table_n1_exact():
    table = ToyTree(target="LRRL", n=1, r_neg=-0.5).reward_table()
    assert table == {
        "LLLL": -0.5, "LLLR": -0.5, "LLRL": -0.5, "LLRR": -0.5,
        "LRLL": -0.5, "LRLR": -0.5, "LRRL": 1.0, "LRRR": -0.5,
        "RLLL": 0.7, "RLLR": 0.7, "RLRL": 0.7, "RLRR": 0.7,
        "RRLL": 0.7, "RRLR": 0.7, "RRRL": 0.7, "RRRR": 0.7,
    }  # fmt: skip


def test_reward_table_n2_exact():
    table = ToyTree(target="RRLR", n=2, r_neg=-1.5).reward_table()
    expected = dict.fromkeys(LEAVES, 0.7)
    expected.update({"RRLL": -1.5, "RRRL": -1.5, "RRRR": -1.5, "RRLR": 1.0})
    assert table == expected


def test_reward_table_n3_exact():
    table = ToyTree(target="LLLL", n=3, r_neg=-1.0).reward_table()
    assert table["LLLL"] == 1.0 and table["LLLR"] == -1.0
    assert all(table[leaf] == 0.7 for leaf in LEAVES if not leaf.startswith("LLL"))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_counts(n):
    table = ToyTree(target="RLRL", n=n, r_neg=-1.0).reward_table()
    values = list(table.values())
    assert values.count(1.0) == 1
    assert values.count(-1.0) == 2 ** (4 - n) - 1
    assert values.count(0.7) == 16 - 2 ** (4 - n)


def test_rewards_of_token_ids():
    task = ToyTree(target="LRRL", n=2, r_neg=-1.0)
    ids = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1]])  # LRRL, LRLL, RRRR, LLRR
    assert leaf_index(ids).tolist() == [6, 4, 15, 3]
    assert task.rewards(ids).tolist() == pytest.approx([1.0, -1.0, 0.7, 0.7])
    assert task.rewards(ids[None]).shape == (1, 4)  # any leading shape
    assert task.reward_vector().tolist() == pytest.approx(list(task.reward_table().values()))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 0}, "n"),
        ({"n": 4}, "n"),
        ({"r_neg": 0.0}, "r_neg"),
        ({"r_neg": 0.3}, "r_neg"),
        ({"r_neg": float("nan")}, "r_neg"),
        ({"r_neg": float("-inf")}, "r_neg"),
        ({"target": "LRX"}, "target"),
        ({"target": "LRRLR"}, "target"),
    ],
)
def test_bad_settings(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        ToyTree(**kwargs)
