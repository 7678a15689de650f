"""lgrpo.process against the definitions of METHOD.md §2, §3, §8 and the worked example of §7."""

from __future__ import annotations

import math

import pytest
import torch

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # the GPU image has no hypothesis (benchmarks/gpu_suite.sh): the property tests skip

    class _Absent:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    st = _Absent()

    def settings(*args, **kwargs):
        return lambda fn: fn

    def given(*args, **kwargs):
        return pytest.mark.skip(reason="hypothesis is not installed")


from lgrpo.examples import PAPER_INTERMEDIATE, PAPER_PATH_DEPTHS, PAPER_SET_SIZES, paper_example
from lgrpo.objectives import group_advantages
from lgrpo.process import (
    ProcessTree,
    prm_advantages,
    process_set_sizes,
    step_rewards,
    tree_stats,
)

# ---------------------------------------------------------------------------------------------------------------
# brute force, straight from the definitions


def brute_sets(seqs: list[list[int]], groups: list[int]) -> list[list[list[int]]]:
    """sets[i][t] = rows j of i's group with seqs[j][:t+1] == seqs[i][:t+1]."""
    out = []
    for i, si in enumerate(seqs):
        row = []
        for t in range(len(si)):
            row.append(
                [
                    j
                    for j, sj in enumerate(seqs)
                    if groups[j] == groups[i] and len(sj) > t and sj[: t + 1] == si[: t + 1]
                ]
            )
        out.append(row)
    return out


def brute_stats(seqs: list[list[int]], groups: list[int]) -> tuple[list[int], list[float], list[bool]]:
    sets = brute_sets(seqs, groups)
    depth, inter, flat = [], [], []
    for i, si in enumerate(seqs):
        # a step changes exactly where the member set changes
        d = sum(1 for t in range(len(si)) if t == 0 or set(sets[i][t]) != set(sets[i][t - 1]))
        depth.append(d)
        shared = sum(1 for t in range(len(si)) if any(seqs[j] != si for j in sets[i][t]))
        inter.append(shared / len(si) if si else 0.0)
    for i in range(len(seqs)):
        members = [j for j in range(len(seqs)) if groups[j] == groups[i]]
        flat.append(all(len(sets[j][t]) == 1 for j in members for t in range(len(seqs[j]))))
    return depth, inter, flat


def to_batch(seqs: list[list[int]], groups: list[int], device: str = "cpu", pad: int = 0, extra: int = 0):
    B = len(seqs)
    T = max([len(s) for s in seqs] + [0]) + extra
    ids = torch.full((B, T), pad, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = True
    return ids.to(device), mask.to(device), torch.tensor(groups, dtype=torch.long, device=device)


# groups of completions over a tiny vocabulary so that prefixes are often shared; duplicates, strict prefixes,
# empty and length-1 rows, singleton groups and interleaved, unsorted group ids all occur
seq_strategy = st.lists(st.integers(0, 2), min_size=0, max_size=7)
batch_strategy = st.lists(
    st.tuples(seq_strategy, st.sampled_from([-7, 3, 11, 1000])), min_size=1, max_size=12
)


@settings(max_examples=150, deadline=None)
@given(batch=batch_strategy, pad=st.sampled_from([0, 1, -1]), extra=st.integers(0, 2))
def test_sizes_step_rewards_and_advantages_match_brute_force(batch, pad, extra):
    seqs = [s for s, _ in batch]
    groups = [g for _, g in batch]
    ids, mask, group = to_batch(seqs, groups, pad=pad, extra=extra)
    rewards = torch.tensor([float((sum(s) * 7 + len(s)) % 5) / 4 for s in seqs])
    sizes = process_set_sizes(ids, mask, group)
    R = step_rewards(ids, mask, group, rewards)
    A = prm_advantages(ids, mask, group, rewards)
    adv = group_advantages(rewards, group)
    sets = brute_sets(seqs, groups)
    for i, s in enumerate(seqs):
        for t in range(ids.shape[1]):
            if t < len(s):
                members = sets[i][t]
                assert sizes[i, t] == len(members)
                assert R[i, t].item() == pytest.approx(
                    sum(rewards[j].item() for j in members) / len(members), abs=1e-6
                )
                assert A[i, t].item() == pytest.approx(
                    sum(adv[j].item() for j in members) / len(members), abs=1e-5
                )
            else:
                assert sizes[i, t] == 0 and R[i, t] == 0 and A[i, t] == 0


@settings(max_examples=150, deadline=None)
@given(batch=batch_strategy)
def test_tree_stats_match_brute_force(batch):
    seqs = [s for s, _ in batch]
    groups = [g for _, g in batch]
    ids, mask, group = to_batch(seqs, groups)
    stats = tree_stats(ids, mask, group)
    depth, inter, flat = brute_stats(seqs, groups)
    assert stats.path_depth.tolist() == depth
    assert stats.intermediate_proportion.tolist() == pytest.approx(inter, abs=1e-6)
    assert stats.flat.tolist() == flat


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(seq_strategy, min_size=1, max_size=10))
def test_process_tree_nodes_partition_tokens_and_agree_with_sizes(batch):
    ids, mask, group = to_batch(batch, [0] * len(batch))
    rewards = torch.arange(len(batch), dtype=torch.float32)
    tree = ProcessTree(ids, mask, rewards)
    sizes = process_set_sizes(ids, mask, group)
    R = step_rewards(ids, mask, group, rewards)
    covered = torch.zeros_like(sizes)
    for node in tree.nodes():
        assert node.end > node.start
        for r in node.members:
            for t in range(node.start, node.end):
                covered[r, t] += 1
                assert sizes[r, t] == node.size
                assert R[r, t].item() == pytest.approx(node.step_reward, abs=1e-5)
    assert torch.equal(covered, mask.long())  # every token lies in exactly one node of its path
    stats = tree_stats(ids, mask, group)
    for r in range(len(batch)):
        assert len(tree.path(r)) == stats.path_depth[r]


def test_paper_example_number_for_number():
    ex = paper_example()
    sizes = process_set_sizes(ex.ids, ex.mask, ex.group)
    for i, row in enumerate(PAPER_SET_SIZES):
        assert sizes[i, : len(row)].tolist() == list(row)
        assert sizes[i, len(row) :].eq(0).all()

    r = ex.rewards
    assert r.mean().item() == pytest.approx(0.41667, abs=1e-5)
    assert r.std().item() == pytest.approx(0.37639, abs=1e-5)
    adv = group_advantages(r, ex.group)
    assert adv.tolist() == pytest.approx([0.2213, 0.2213, 1.5494, -1.1067, -1.1067, 0.2213], abs=1e-4)

    steps = {
        "AB": 0.2213, "CD": 0.2213, "EFHI": 0.2213, "JKL": -0.2213, "M": 1.5494,
        "NQ": -1.1067, "ST": -1.1067, "U": -1.1067, "VWYZ": 0.2213,
    }  # fmt: skip
    tree = ProcessTree(ex.ids, ex.mask, r, decode=ex.decode)
    assert {n.text: round(n.advantage, 4) for n in tree.nodes()} == steps
    A = prm_advantages(ex.ids, ex.mask, ex.group, r)
    for node in tree.nodes():
        for row in node.members:
            assert A[row, node.start : node.end].tolist() == pytest.approx(
                [steps[node.text]] * len(node.text), abs=1e-4
            )

    stats = tree_stats(ex.ids, ex.mask, ex.group)
    assert stats.path_depth.tolist() == list(PAPER_PATH_DEPTHS)
    assert stats.intermediate_proportion.tolist() == pytest.approx(PAPER_INTERMEDIATE)
    assert not stats.flat.any()
    assert tree.to_dict()["children"][0]["size"] == 2


def test_device_and_dtype(device):
    seqs = [[1, 2, 3], [1, 2], [1, 2, 3], [4], [], [1, 5]]
    groups = [5, 9, 5, 9, 5, 9]
    ids, mask, group = to_batch(seqs, groups, device=device)
    sizes = process_set_sizes(ids, mask.int(), group)
    assert sizes.device.type == torch.device(device).type and sizes.dtype == torch.long
    assert sizes.cpu().tolist() == [[2, 2, 2], [2, 1, 0], [2, 2, 2], [1, 0, 0], [0, 0, 0], [2, 1, 0]]
    stats = tree_stats(ids, mask, group)
    assert stats.path_depth.cpu().tolist() == [1, 2, 1, 1, 0, 2]
    # identical completions are leaves, not intermediate; a strict prefix is shared with a different completion
    assert stats.intermediate_proportion.cpu().tolist() == pytest.approx([0, 0.5, 0, 0, 0, 0.5])
    assert stats.flat.cpu().tolist() == [False] * 6


def test_flat_groups_and_summary():
    ids, mask, group = to_batch([[1, 2], [2, 2], [3], [1, 1], [1, 2]], [0, 0, 0, 1, 1])
    stats = tree_stats(ids, mask, group)
    assert stats.flat.tolist() == [True, True, True, False, False]
    s = stats.summary()
    assert s["prm/flat_fraction"] == pytest.approx(1 / 2)  # counts groups, not rows
    assert stats.group_flat.tolist() == [True, False]
    assert set(s) == {
        "prm/flat_fraction",
        "prm/path_depth_mean",
        "prm/intermediate_proportion_mean",
        "prm/process_set_size_mean",
        "prm/shared_token_fraction",
    }
    # group 0 is flat (|λ| = 1 on its 5 tokens); group 1: [1,1] and [1,2] share token 1 → 2 of 9 tokens shared
    assert s["prm/shared_token_fraction"] == pytest.approx(2 / 9)


def test_nan_rewards_are_left_out_of_step_rewards():
    ids, mask, group = to_batch([[1, 2], [1, 3], [1, 2]], [0, 0, 0])
    R = step_rewards(ids, mask, group, torch.tensor([1.0, float("nan"), 0.0]))
    assert R[0, 0].item() == pytest.approx(0.5)  # mean of the two scorable members
    assert math.isnan(R[1, 1].item())  # no scorable member
    assert R[0, 1].item() == pytest.approx(0.5)


def test_long_sequences_and_non_power_of_two_lengths():
    g = torch.Generator().manual_seed(0)
    B, T = 24, 1000
    base = torch.randint(0, 3, (1, T), generator=g).expand(B, T).clone()
    cut = torch.randint(0, T, (B,), generator=g)
    noise = torch.randint(0, 3, (B, T), generator=g)
    ids = torch.where(torch.arange(T)[None] >= cut[:, None], noise, base)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None] < lengths[:, None]
    group = torch.arange(B) % 3
    sizes = process_set_sizes(ids, mask, group)
    seqs = [ids[i, : lengths[i]].tolist() for i in range(B)]
    for i in range(B):
        for t in [0, 1, 7, 500, 999]:
            if t < lengths[i]:
                n = sum(
                    1
                    for j in range(B)
                    if group[j] == group[i] and lengths[j] > t and seqs[j][: t + 1] == seqs[i][: t + 1]
                )
                assert sizes[i, t] == n


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ids": torch.zeros(2, 3)}, "ids"),
        ({"ids": torch.zeros(2, dtype=torch.long)}, "ids"),
        ({"mask": torch.ones(2, 4, dtype=torch.bool)}, "mask"),
        ({"mask": torch.tensor([[1, 0, 1], [1, 1, 1]])}, "mask"),
        ({"mask": torch.tensor([[2, 0, 0], [1, 1, 1]])}, "mask"),
        ({"group": torch.zeros(3, dtype=torch.long)}, "group"),
        ({"group": torch.zeros(2)}, "group"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = {"ids": torch.zeros(2, 3, dtype=torch.long), "mask": torch.ones(2, 3, dtype=torch.bool),
            "group": torch.zeros(2, dtype=torch.long)}  # fmt: skip
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        process_set_sizes(**args)


def test_empty_batch_and_zero_length():
    sizes = process_set_sizes(torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, 5, dtype=torch.bool),
                              torch.zeros(0, dtype=torch.long))  # fmt: skip
    assert sizes.shape == (0, 5)
    sizes = process_set_sizes(torch.zeros(3, 0, dtype=torch.long), torch.zeros(3, 0, dtype=torch.bool),
                              torch.zeros(3, dtype=torch.long))  # fmt: skip
    assert sizes.shape == (3, 0)
    stats = tree_stats(
        torch.zeros(3, 0, dtype=torch.long),
        torch.zeros(3, 0, dtype=torch.bool),
        torch.zeros(3, dtype=torch.long),
    )
    assert stats.path_depth.tolist() == [0, 0, 0] and stats.flat.all()


def test_hash_collisions_fall_back_to_the_exact_sort(monkeypatch):
    """Hashes only propose an order: with every prefix colliding the result must still be exact."""
    import lgrpo.process as P

    seqs = [[2, 1, 0], [1, 2], [2, 0], [1, 2, 2], [0], [2, 1, 0], [1]]
    groups = [0, 0, 0, 0, 1, 0, 1]
    ids, mask, group = to_batch(seqs, groups)
    monkeypatch.setattr(P, "_prefix_hashes", lambda tok: torch.zeros_like(tok))
    blocks = P.process_blocks(ids, mask, group)
    assert not blocks.verified_sort
    sets = brute_sets(seqs, groups)
    for i, s in enumerate(seqs):
        assert blocks.sizes[i, : len(s)].tolist() == [len(m) for m in sets[i]]
    assert blocks.duplicates.tolist() == [2, 1, 1, 1, 1, 2, 1]
