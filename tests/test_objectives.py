"""lgrpo.objectives: advantages, λ weights, the loss, Theorem 1 (METHOD.md §4) and λ-GRPO's step counting (§6)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lgrpo.examples import paper_example
from lgrpo.objectives import LOSS_TYPES, group_advantages, lambda_weights, policy_loss
from lgrpo.process import ProcessTree, prm_advantages, process_set_sizes

# ---------------------------------------------------------------------------------------------------------------
# group advantages


def test_group_advantages_unbiased_std_and_interleaved_groups():
    r = torch.tensor([1.0, 5.0, 0.0, 3.0, 1.0, 2.0])
    g = torch.tensor([7, 2, 7, 2, 7, 9])
    adv = group_advantages(r, g)
    for gid in (7, 2):
        sel = g == gid
        expect = (r[sel] - r[sel].mean()) / (r[sel].std(unbiased=True) + 1e-4)
        assert torch.allclose(adv[sel], expect)
    assert adv[5] == 0  # a group of one


def test_group_advantages_scales():
    r = torch.tensor([1.0, 0.0, 3.0, 1.0])
    g = torch.tensor([0, 0, 1, 1])
    centred = torch.tensor([0.5, -0.5, 1.0, -1.0])
    assert torch.allclose(group_advantages(r, g, scale="none"), centred)
    assert torch.allclose(group_advantages(r, g, scale="batch"), centred / (r.std() + 1e-4))
    with pytest.raises(ValueError, match="scale"):
        group_advantages(r, g, scale="token")


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_a_group_of_equal_rewards_gets_exactly_zero(dtype, scale):
    """8 × 0.2 carries no signal; old main gave −1.49e-4 (float32), −0.852 (bfloat16), −1.221 (float16)."""
    for value in (0.2, 0.7, 1 / 3, -0.1):
        adv = group_advantages(torch.full((8,), value, dtype=dtype), torch.zeros(8, dtype=torch.long), scale)
        assert torch.equal(adv, torch.zeros(8, dtype=adv.dtype)), (value, adv)
    # a constant group beside one with spread, interleaved, with a NaN in the constant group
    r = torch.tensor([0.2, 1.0, 0.2, 0.0, float("nan"), 0.5, 0.2, 0.25], dtype=dtype)
    g = torch.tensor([3, 8, 3, 8, 3, 8, 3, 8])
    adv = group_advantages(r, g, scale)
    assert torch.equal(adv[g == 3], torch.zeros(4, dtype=adv.dtype))
    # the spread group by hand, in float64 from the rewards as stored in `dtype` (statistics module, not torch)
    import statistics

    spread = [float(x) for x in r[g == 8].tolist()]
    mean = statistics.fmean(spread)
    finite = [float(x) for x in r.tolist() if not math.isnan(x)]
    std = {"group": statistics.stdev(spread), "batch": statistics.stdev(finite), "none": None}[scale]
    expect = [(x - mean) / (std + 1e-4) if std is not None else x - mean for x in spread]
    assert adv.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(
        adv[g == 8].double(), torch.tensor(expect, dtype=torch.float64), rtol=1e-6, atol=1e-6
    )


def test_prm_advantages_of_a_group_of_equal_rewards_are_zero():
    ex = paper_example()
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        A = prm_advantages(ex.ids, ex.mask, ex.group, torch.full((ex.ids.shape[0],), 0.2, dtype=dtype))
        assert torch.equal(A, torch.zeros_like(A)), dtype


def test_nan_rewards_are_unscorable():
    r = torch.tensor([1.0, float("nan"), 0.0, float("nan"), float("nan"), 2.0])
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    adv = group_advantages(r, g)
    assert adv[1] == 0 and adv[3] == 0 and adv[4] == 0
    expect = (torch.tensor([1.0, 0.0]) - 0.5) / (torch.tensor([1.0, 0.0]).std() + 1e-4)
    assert torch.allclose(adv[[0, 2]], expect)
    assert adv[5] == 0  # only one scorable reward left in group 1
    assert not torch.isnan(adv).any()


# ---------------------------------------------------------------------------------------------------------------
# λ weights


def test_lambda_weights_paper_example():
    ex = paper_example()
    sizes = process_set_sizes(ex.ids, ex.mask, ex.group).float()
    w1 = lambda_weights(ex.ids, ex.mask, ex.group)
    assert torch.allclose(w1[ex.mask], 1 / sizes[ex.mask]) and (w1[~ex.mask] == 0).all()
    w0 = lambda_weights(ex.ids, ex.mask, ex.group, power=0)
    assert torch.equal(w0, ex.mask.float())
    wh = lambda_weights(ex.ids, ex.mask, ex.group, power=0.5)
    assert torch.allclose(wh[ex.mask], sizes[ex.mask].rsqrt())
    with pytest.raises(ValueError, match="power"):
        lambda_weights(ex.ids, ex.mask, ex.group, power=-1)


# ---------------------------------------------------------------------------------------------------------------
# a small random causal model: logp of a token depends only on the prompt and the completion prefix, as in any LM


class TinyCausalLM(nn.Module):
    def __init__(self, vocab: int = 4, dim: int = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(vocab + 1, dim)
        self.rnn = nn.GRU(dim, dim, batch_first=True)
        self.out = nn.Linear(dim, vocab)
        self.bos = vocab

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Log-probs ``[B, T]`` of ``ids`` given their prefixes."""
        inp = torch.cat([torch.full_like(ids[:, :1], self.bos), ids[:, :-1]], dim=1)
        h, _ = self.rnn(self.emb(inp))
        return torch.log_softmax(self.out(h), -1).gather(-1, ids[:, :, None]).squeeze(-1)


def random_groups(seed: int, groups: int = 3, k: int = 6, T: int = 7, vocab: int = 3):
    """Completions over a small vocabulary (lots of shared prefixes), random lengths, interleaved group ids."""
    g = torch.Generator().manual_seed(seed)
    B = groups * k
    ids = torch.randint(0, vocab, (B, T), generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = 0  # an empty completion
    mask = torch.arange(T)[None] < lengths[:, None]
    ids = ids.masked_fill(~mask, 0)
    group = torch.randperm(B, generator=g) % groups
    rewards = torch.randint(0, 2, (B,), generator=g).float()
    return ids, mask, group, rewards


@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_theorem_1_grpo_equals_prm_aware_loss_in_value_and_gradient(seed, beta):
    ids, mask, group, rewards = random_groups(seed)
    policy, ref = TinyCausalLM(seed=seed), TinyCausalLM(seed=seed + 100)
    with torch.no_grad():
        ref_logp = ref(ids)

    def loss_and_grads(advantages):
        policy.zero_grad()
        loss = policy_loss(policy(ids), advantages, mask, ref_logp=ref_logp, beta=beta, loss_type="dapo")
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in policy.parameters()]

    l_grpo, g_grpo = loss_and_grads(group_advantages(rewards, group))
    l_prm, g_prm = loss_and_grads(prm_advantages(ids, mask, group, rewards))
    assert torch.allclose(l_grpo, l_prm, atol=1e-6)
    for a, b in zip(g_grpo, g_prm):
        assert torch.allclose(a, b, atol=1e-6)
    # and the theorem is not vacuous: the PRM advantages differ from the outcome advantages somewhere
    assert not torch.allclose(
        prm_advantages(ids, mask, group, rewards)[mask],
        group_advantages(rewards, group)[:, None].expand_as(mask)[mask],
    )


@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("seed", [0, 3])
def test_lambda_grpo_counts_each_process_step_once(seed, beta):
    ids, mask, group, rewards = random_groups(seed)
    policy, ref = TinyCausalLM(seed=seed), TinyCausalLM(seed=seed + 7)
    with torch.no_grad():
        logp, ref_logp = policy(ids), ref(ids)
    adv = group_advantages(rewards, group)
    loss = policy_loss(logp, adv, mask, ref_logp=ref_logp, beta=beta,
                       weights=lambda_weights(ids, mask, group), loss_type="dapo")  # fmt: skip

    # regroup by process steps: each step contributes once, with its PRM-aware advantage (P = 1 at μ = 1)
    total = 0.0
    for gid in group.unique():
        rows = (group == gid).nonzero().squeeze(1)
        tree = ProcessTree(ids[rows], mask[rows], rewards[rows])
        for node in tree.nodes():
            r = rows[node.members[0]]
            for t in range(node.start, node.end):
                delta = ref_logp[r, t] - logp[r, t]
                total += -node.advantage + beta * (torch.exp(delta) - delta - 1).item()
    assert loss.item() == pytest.approx(total / mask.sum().item(), abs=1e-5)


def brute_loss(logp, old, ref, adv, mask, group, ids, power, beta, loss_type, max_len) -> float:
    """The loss from its definition (METHOD.md §1, §6), one token at a time: |λ(i,t)| by comparing prefixes."""
    B, T = ids.shape
    per_row, counts = [], []
    for i in range(B):
        total, n = 0.0, 0
        for t in range(T):
            if not mask[i, t]:
                continue
            size = sum(
                bool(group[j] == group[i] and mask[j, t] and torch.equal(ids[j, : t + 1], ids[i, : t + 1]))
                for j in range(B)
            )
            p = math.exp(float(logp[i, t] - old[i, t]))
            a = float(adv[i])
            d = float(ref[i, t] - logp[i, t])
            term = -min(p * a, min(max(p, 0.8), 1.2) * a) + beta * (math.exp(d) - d - 1)
            total += term * size ** (-power)
            n += 1
        per_row.append(total)
        counts.append(n)
    if loss_type == "grpo":
        return sum(x / max(n, 1) for x, n in zip(per_row, counts)) / B
    if loss_type == "dr_grpo":
        return sum(per_row) / (B * max_len)
    return sum(per_row) / sum(counts)  # bnpo, dapo


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_weighted_loss_matches_brute_force(loss_type, power):
    """``policy_loss`` with ``lambda_weights(power)`` (power 0 = GRPO) against the loss counted from the definition,
    with clipping active, β > 0 and completions of different lengths."""
    ids, mask, group, rewards = random_groups(5)
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(ids.shape, generator=g)
    old = logp + 0.3 * torch.randn(ids.shape, generator=g)  # ratios away from 1 so clipping is exercised
    ref = logp + 0.1 * torch.randn(ids.shape, generator=g)
    adv = group_advantages(rewards, group)
    w = lambda_weights(ids, mask, group, power=power)
    got = policy_loss(logp, adv, mask, old_logp=old, ref_logp=ref, beta=0.04, weights=w, loss_type=loss_type,
                      max_completion_length=9)  # fmt: skip
    expected = brute_loss(logp, old, ref, adv, mask, group, ids, power, 0.04, loss_type, 9)
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)
    if power == 0.0:  # GRPO: the same as no weights at all
        plain = policy_loss(logp, adv, mask, old_logp=old, ref_logp=ref, beta=0.04, loss_type=loss_type,
                            max_completion_length=9)  # fmt: skip
        assert plain.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)
    else:  # the check can tell the weights apart
        other = brute_loss(logp, old, ref, adv, mask, group, ids, 0.0, 0.04, loss_type, 9)
        assert abs(other - expected) > 1e-3 * abs(expected)


@pytest.mark.parametrize(
    ("loss_type", "value", "denominators"),
    [
        # per-token loss at P = 1, β = 0 is −A·w: row 0 −1, −.5, −.25 (3 tokens); row 1 +2 (1 token)
        ("grpo", ((-1.75 / 3) + 2) / 2, [[2 * 3] * 3, [2 * 1] * 3]),  # mean over rows of row sum / row length
        ("bnpo", 0.25 / 4, [[4] * 3, [4] * 3]),  # total / token count
        ("dapo", 0.25 / 4, [[4] * 3, [4] * 3]),
        ("dr_grpo", 0.25 / (2 * 5), [[10] * 3, [10] * 3]),  # total / (B · max_completion_length)
    ],
)
def test_weighted_aggregations_by_hand(loss_type, value, denominators):
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -2.0])
    w = torch.tensor([[1.0, 0.5, 0.25], [1.0, 0.0, 0.0]])
    loss = policy_loss(logp, adv, mask, weights=w, loss_type=loss_type, max_completion_length=5)
    assert loss.item() == pytest.approx(value)
    # the gradient flows through P even at μ = 1: d/dlogp of −P·A·w is −A·w, over the loss type's denominator
    loss.backward()
    expected = -(adv[:, None] * w) * mask / torch.tensor(denominators, dtype=torch.float32)
    torch.testing.assert_close(logp.grad, expected)


def test_normalizer_overrides_the_denominator():
    logp = torch.zeros(2, 3)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -2.0])
    assert policy_loss(logp, adv, mask, loss_type="dapo", normalizer=10).item() == pytest.approx(
        (-3 + 2) / 10
    )
    assert policy_loss(logp, adv, mask, loss_type="dr_grpo", max_completion_length=5).item() == pytest.approx(
        (-3 + 2) / (2 * 5)
    )


def test_clipping():
    logp = torch.log(torch.tensor([[1.5, 0.5]]))
    mask = torch.ones(1, 2, dtype=torch.bool)
    old = torch.zeros(1, 2)
    pos = policy_loss(logp, torch.tensor([1.0]), mask, old_logp=old, loss_type="dapo")
    assert pos.item() == pytest.approx(-(1.2 + 0.5) / 2)  # min(P·A, clip(P)·A) with A > 0
    neg = policy_loss(logp, torch.tensor([-1.0]), mask, old_logp=old, loss_type="dapo", epsilon_low=0.1)
    assert neg.item() == pytest.approx((1.5 + 0.9) / 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss_type": "sapo"}, "loss_type"),
        ({"advantages": torch.zeros(3)}, "advantages"),
        ({"mask": torch.ones(2, 2, dtype=torch.bool)}, "mask"),
        ({"mask": torch.tensor([[2, 1, 1], [1, 1, 1]])}, "mask"),
        ({"weights": torch.ones(2, 2)}, "weights"),
        ({"old_logp": torch.ones(3, 3)}, "old_logp"),
        ({"beta": 0.1}, "ref_logp"),
        ({"loss_type": "dr_grpo", "max_completion_length": 0}, "max_completion_length"),
    ],
)
def test_policy_loss_bad_input(kwargs, match):
    args = {
        "logp": torch.zeros(2, 3),
        "advantages": torch.zeros(2),
        "mask": torch.ones(2, 3, dtype=torch.bool),
    }
    args.update({k: v for k, v in kwargs.items() if k in args})
    rest = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises(ValueError, match=match):
        policy_loss(args["logp"], args["advantages"], args["mask"], **rest)


def test_lambda_weights_reject_float_ids():
    with pytest.raises(ValueError, match="ids"):
        lambda_weights(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, dtype=torch.long))


def test_policy_loss_on_device(device):
    ex = paper_example(device)
    w = lambda_weights(ex.ids, ex.mask, ex.group)
    logp = torch.zeros(ex.ids.shape, device=device)
    loss = policy_loss(logp, group_advantages(ex.rewards, ex.group), ex.mask, weights=w)
    # value = −Σ_steps |span|·A_step / Σ|y| (each step once)
    by_hand = -(2 * 0.2213 + 2 * 0.2213 + 4 * 0.2213 + 3 * -0.2213 + 1.5494 + 2 * -1.1067 + 2 * -1.1067 - 1.1067
                + 4 * 0.2213) / 31  # fmt: skip
    assert loss.item() == pytest.approx(by_hand, abs=1e-4)
    assert loss.device.type == torch.device(device).type


def test_policy_loss_takes_a_mask_with_gaps():
    """Tokens masked inside a completion (e.g. tool output) leave the loss and every denominator."""
    logp = torch.zeros(2, 4)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    assert policy_loss(logp, adv, mask, loss_type="dapo").item() == pytest.approx((-3 + 2) / 5)
    assert policy_loss(logp, adv, mask, loss_type="grpo").item() == pytest.approx((-1 + 1) / 2)
