"""`lgrpo toy`: the toy tree sweep (short runs only; the full sweep is timed in benchmarks/toy_sweep.py)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math

import pytest
import torch

from lgrpo.cli import main
from lgrpo.experiments import toy
from lgrpo.objectives import group_advantages, lambda_weights, policy_loss
from lgrpo.tasks.toy_tree import ToyTree, leaf_index

SHORT = ["--n", "1", "--r-neg", "-1.0", "--seeds", "2", "--steps", "12", "--window", "5", "--workers", "1"]


def _toy(out, *extra: str) -> dict:
    assert main(["toy", *SHORT, "--out", str(out), *extra]) == 0
    return json.loads((out / "results.json").read_text())


def test_short_run_is_deterministic_and_well_formed(tmp_path):
    a = _toy(tmp_path / "a")
    b = _toy(tmp_path / "b")
    assert a.pop("seconds") >= 0 and b.pop("seconds") >= 0
    assert a == b
    assert set(a) == {"cells", "config"}
    (cell,) = a["cells"]
    assert set(cell) == {"n", "r_neg", "grpo", "lambda", "paper"}
    assert (cell["n"], cell["r_neg"]) == (1, -1.0)
    assert cell["paper"] == {"grpo": 0.0, "lambda": 0.7535}
    for arm in ("grpo", "lambda"):
        assert set(cell[arm]) == {"mean", "sem", "per_seed"}
        per_seed = cell[arm]["per_seed"]
        assert len(per_seed) == 2 and all(0 <= f <= 1 for f in per_seed)
        # a fraction of 5 steps × 16 completions
        assert all(abs(f * 80 - round(f * 80)) < 1e-6 for f in per_seed)
        assert cell[arm]["mean"] == pytest.approx(sum(per_seed) / 2, abs=1e-6)
    cfg = a["config"]
    assert cfg["steps"] == 12 and cfg["group_size"] == 16 and cfg["power"] == [0.0, 1.0]
    assert cfg["loss_type"] == "dapo" and cfg["optimizer"] == "adam" and cfg["mu"] == 1 and cfg["beta"] == 0
    png = (tmp_path / "a" / "toy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    curves = json.loads((tmp_path / "a" / "curves.json").read_text())
    assert len(curves["cells"][0]["arms"]["grpo"]["hits"][0]) == 12


def test_extra_power_arm_and_seed_target(tmp_path):
    res = _toy(tmp_path, "--power", "0", "0.5", "1", "--target", "seed", "--seeds", "1")
    (cell,) = res["cells"]
    assert {"grpo", "lambda", "power_0.5"} <= set(cell)
    assert cell["grpo"]["sem"] is None  # one seed: no standard error


def hand_run(
    cfg: toy.ToyConfig, n: int, r_neg: float, seed: int, power: float
) -> tuple[list[int], list[float]]:
    """One run of the toy written out from METHOD.md §1/§6/§9, a token at a time: ``(hits, target_prob)`` per step.

    Shares with ``lgrpo toy`` only the policy network, its seeded initialisation and the seed's stream of uniforms
    (drawn after the initialisation, as ``lgrpo toy`` documents); sampling, rewards, advantages, process-set
    weights, the clipped loss with its KL term, and the update (torch's Adam) are written here.
    """
    g = torch.Generator().manual_seed(seed)
    policy = toy.BatchedPolicy([g], cfg.hidden)
    u = torch.rand(cfg.steps, cfg.group_size, 4, generator=g)
    ref = copy.deepcopy(policy).requires_grad_(False)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    task = ToyTree(cfg.target_for(seed), n, r_neg)
    table = task.reward_vector().tolist()
    target_bits = [(task.target_index >> (3 - t)) & 1 for t in range(4)]
    k, eps = cfg.group_size, cfg.epsilon
    hits, probs = [], []
    for step in range(cfg.steps):
        logp_all = policy()[0]  # [15, 2]: log P(token | prefix node)
        node, prob = 0, 1.0
        for b in target_bits:
            prob *= math.exp(float(logp_all[node, b]))
            node = 2 * node + 1 + b
        probs.append(round(prob, 5))
        paths = []  # (node, token) of each completion's 4 tokens
        for i in range(k):
            node, path = 0, []
            for t in range(4):
                token = int(float(u[step, i, t]) < math.exp(float(logp_all[node, 1])))
                path.append((node, token))
                node = 2 * node + 1 + token
            paths.append(path)
        leaves = [sum(tok << (3 - t) for t, (_, tok) in enumerate(p)) for p in paths]
        hits.append(sum(leaf == task.target_index for leaf in leaves))
        r = torch.tensor([table[leaf] for leaf in leaves])
        adv = ((r - r.mean()) / (r.std() + 1e-4)).tolist()
        weight = [[sum(paths[j][: t + 1] == paths[i][: t + 1] for j in range(k)) ** (-power) for t in range(4)]
                  for i in range(k)]  # fmt: skip
        old = [[float(logp_all[nd, tok]) for nd, tok in p] for p in paths]
        with torch.no_grad():
            ref_all = ref()[0]
        for epoch in range(cfg.mu):
            if epoch:
                logp_all = policy()[0]
            loss = 0.0
            for i, p in enumerate(paths):
                for t, (nd, tok) in enumerate(p):
                    lp = logp_all[nd, tok]
                    ratio = torch.exp(lp - old[i][t])
                    term = -torch.minimum(ratio * adv[i], ratio.clamp(1 - eps, 1 + eps) * adv[i])
                    d = ref_all[nd, tok] - lp
                    loss = loss + weight[i][t] * (term + cfg.beta * (torch.exp(d) - d - 1))
            opt.zero_grad()
            (loss / (k * 4)).backward()
            opt.step()
    return hits, probs


@pytest.mark.parametrize(
    "options", [{}, {"beta": 0.5}, {"mu": 3}, {"r_neg": [-1.5], "power": [0.0, 0.5, 1.0], "first_seed": 3}]
)
def test_arms_match_a_run_written_out_by_hand(options):
    """Each arm's sampled hits and target probability, step by step, equal a hand-written run with its weights;
    β and μ included. The arms differ from each other, so a wrong weight, sign or term would show."""
    cfg = toy.ToyConfig(**{"r_neg": [-1.0], "seeds": 1, "steps": 4, "hidden": 16, "lr": 0.05, **options})
    cell = toy.run_cell(cfg, 1, cfg.r_neg[0])
    probs = {}
    for p in cfg.power:
        hits, probs[p] = hand_run(cfg, 1, cfg.r_neg[0], cfg.first_seed, p)
        arm = cell["arms"][toy.arm_key(p)]
        assert arm["hits"][0] == hits, p
        assert arm["target_prob"][0] == pytest.approx(probs[p], abs=2e-5), p
    assert max(abs(a - b) for a, b in zip(probs[0.0], probs[1.0])) > 1e-3  # the arms did move apart


def test_runs_loss_gives_each_run_its_own_gradient():
    """The batched loss is Σ_r L_r, with L_r the plain dapo loss of run r alone."""
    torch.manual_seed(0)
    R, k = 3, 16
    gens = [torch.Generator().manual_seed(s) for s in range(R)]
    policy = toy.BatchedPolicy(gens, hidden=8)
    with torch.no_grad():
        policy.w3.normal_()  # a non-uniform policy
    nodes, ids = toy.sample(policy(), torch.rand(R, k, 4))
    rewards = torch.randn(R * k)
    group = torch.arange(R).repeat_interleave(k)
    mask = torch.ones(R * k, 4, dtype=torch.bool)
    flat = ids.reshape(R * k, 4)
    adv = group_advantages(rewards, group)
    w = lambda_weights(flat, mask, group, 1.0)
    logp = toy.token_logp(policy(), nodes, ids).reshape(R * k, 4)
    grads = torch.autograd.grad(toy.runs_loss(logp, adv, mask, w, k), policy.w1)[0]
    for r in range(R):
        rows = slice(r * k, (r + 1) * k)
        logp = toy.token_logp(policy(), nodes, ids).reshape(R * k, 4)
        own = policy_loss(logp[rows], adv[rows], mask[rows], weights=w[rows], loss_type="dapo")
        g = torch.autograd.grad(own, policy.w1)[0]
        assert torch.allclose(grads[r], g[r], atol=1e-6)
        assert g[[i for i in range(R) if i != r]].abs().max() == 0


def test_sampling_follows_the_policy():
    gens = [torch.Generator().manual_seed(1)]
    policy = toy.BatchedPolicy(gens, hidden=8)
    with torch.no_grad():
        policy.w3.normal_(std=2.0, generator=torch.Generator().manual_seed(2))  # leaves from 0.06% to 31%
    logp_all = policy()
    _, ids = toy.sample(logp_all, torch.rand(1, 40000, 4, generator=torch.Generator().manual_seed(2)))
    leaves = leaf_index(ids)[0]
    freq = torch.bincount(leaves, minlength=16).double() / leaves.numel()
    # exact leaf probabilities: product of the conditionals along each leaf's path
    exact = torch.tensor([toy.token_logp(logp_all, *_path(leaf)).sum().exp().item() for leaf in range(16)])
    assert exact.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert float(exact.min()) < 0.005, (
        "some leaves should be rare, so that a small-probability error would show"
    )
    # every leaf within 5 binomial standard deviations of its exact probability (N = 40000 draws)
    sd = (exact.double() * (1 - exact.double()) / leaves.numel()).sqrt()
    assert bool(((freq - exact.double()).abs() <= 5 * sd + 1e-9).all()), (freq, exact)


def _path(leaf: int) -> tuple[torch.Tensor, torch.Tensor]:
    bits = [(leaf >> (3 - t)) & 1 for t in range(4)]
    nodes = [0]
    for b in bits[:-1]:
        nodes.append(2 * nodes[-1] + 1 + b)
    return torch.tensor(nodes).view(1, 1, 4), torch.tensor(bits).view(1, 1, 4)


def test_prefix_features_distinct():
    x = toy.prefix_features()
    assert x.shape == (15, 10)
    assert len({tuple(r.tolist()) for r in x}) == 15
    assert x[:, :4].sum(1).tolist() == [1.0] * 15  # exactly one position


def test_workers_and_resume(tmp_path, monkeypatch):
    two = ["--r-neg", "-1.0", "-0.5"]
    serial = _toy(tmp_path / "serial", *two)
    parallel = _toy(tmp_path / "parallel", *two, "--workers", "2")
    assert serial["cells"] == parallel["cells"]  # results do not depend on how cells are spread

    calls = []
    real = toy.run_cell
    monkeypatch.setattr(
        toy, "run_cell", lambda cfg, n, r, progress=None: calls.append(r) or real(cfg, n, r, progress)
    )
    out = tmp_path / "resume"
    _toy(out)  # --r-neg -1.0 only
    resumed = _toy(out, *two, "--resume")
    assert calls == [-1.0, -0.5]  # the finished cell was not run again
    assert resumed["cells"] == serial["cells"]
    with pytest.raises(SystemExit, match="--resume"):
        _toy(out, "--resume", "--steps", "13")


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        (["--n", "4"], "--n"),
        (["--n", "0"], "--n"),
        (["--group-size", "1"], "--group-size"),
        (["--r-neg", "0"], "--r-neg"),
        (["--r-neg", "-1", "0.5"], "--r-neg"),
        (["--r-neg", "-1", "-1"], "--r-neg"),
        (["--r-neg=-inf"], "--r-neg"),
        (["--n", "1", "1"], "--n"),
        (["--steps", "0"], "--steps"),
        (["--seeds", "0"], "--seeds"),
        (["--power", "-1"], "--power"),
        (["--target", "LRX"], "--target"),
        (["--workers", "0"], "--workers"),
        (["--lr", "0"], "--lr"),
    ],
)
def test_bad_flags(tmp_path, flags, name):
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=f"error: {name}:"):
        main(["toy", *SHORT, "--out", str(out), *flags])
    assert not out.exists()  # rejected before any work


def test_flags_without_sched_getaffinity(monkeypatch):
    # macOS and Windows have no os.sched_getaffinity: `lgrpo toy` must still build its flags
    monkeypatch.delattr(toy.os, "sched_getaffinity", raising=False)
    parser = argparse.ArgumentParser()
    toy.add_arguments(parser)
    assert parser.parse_args([]).workers >= 1


def test_seed_results_do_not_depend_on_the_batch():
    """A run's numbers depend on its seed only, not on how many seeds or arms share its process."""
    small = toy.run_cell(toy.ToyConfig(seeds=1, first_seed=3, power=[1.0], steps=30), 2, -0.5)
    big = toy.run_cell(toy.ToyConfig(seeds=3, first_seed=2, power=[0.0, 0.5, 1.0], steps=30), 2, -0.5)
    assert small["arms"]["lambda"]["hits"][0] == big["arms"]["lambda"]["hits"][1]
    assert small["arms"]["lambda"]["target_prob"][0] == big["arms"]["lambda"]["target_prob"][1]


def test_every_setting_is_a_flag_with_the_dataclass_default():
    """The flags come from ToyConfig's fields: no flags give ToyConfig(), each field's flag reaches its field."""
    parser = toy.make_parser()
    assert toy.config_from_args(parser.parse_args([])) == toy.ToyConfig()
    flags = ["--n", "2", "--r-neg", "-2", "-0.25", "--seeds", "2", "--first-seed", "3", "--steps", "7",
             "--group_size", "4", "--lr", "0.01", "--hidden", "8", "--power", "0.5", "--beta", "0.1", "--mu", "2",
             "--epsilon", "0.3", "--target", "rrll", "--window", "5"]  # fmt: skip
    got = toy.config_from_args(parser.parse_args(flags))
    want = toy.ToyConfig([2], [-2.0, -0.25], 2, 3, 7, 4, 0.01, 8, [0.5], 0.1, 2, 0.3, "RRLL", 5)
    assert got == want
    assert len(dataclasses.fields(toy.ToyConfig)) == 14  # a new setting needs a line in `flags` above
