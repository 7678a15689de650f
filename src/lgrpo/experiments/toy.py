"""``lgrpo toy``: the paper's toy tree experiment (Table 1, METHOD.md §9), GRPO against λ-GRPO, on the CPU.

A tiny autoregressive policy is trained from scratch on :class:`lgrpo.tasks.toy_tree.ToyTree` for every cell
``(n, r_neg)`` of the sweep, once per arm (λ power α: 0 = GRPO, 1 = λ-GRPO) and seed. Both arms compute their loss
with :func:`lgrpo.objectives.policy_loss` (``dapo`` aggregation), weighted by
:func:`lgrpo.objectives.lambda_weights` with their power; nothing else differs between arms.

How it is fast: one process trains every run of a cell at once. Each run has its own parameters (a leading run
dimension on every weight, ``torch.matmul`` broadcasts over it) and its own random stream; the runs' groups are
concatenated into one batch whose ``group`` id is the run, so one call of each objective function serves all runs.
``policy_loss`` is given the per-run token count as its normaliser, so the batch loss is the *sum* of the runs'
``dapo`` losses and each run's parameters receive exactly that run's gradient. Adam is elementwise, so runs stay
independent. Cells are spread over ``--workers`` processes.

Policy (the paper's GPT-2-small cannot be loaded here): an MLP over the prefix. The input of position ``t`` is a
one-hot of ``t`` and one-hots of the ``t`` tokens already generated (zeros for positions not yet reached); two tanh
layers of ``--hidden`` units; two logits (L, R). Every prefix of the 4-token tree is one of 15 nodes, so one forward
pass over those 15 inputs gives every conditional the run can need: completions are sampled token by token from
it, and the log-probs of all sampled tokens are gathered from it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lgrpo.experiments.run_folder import config_diff, write_json
from lgrpo.objectives import group_advantages, lambda_weights, policy_loss
from lgrpo.tasks.toy_tree import DEPTH, NUM_LEAVES, VALID_N, ToyTree, leaf_index, leaf_name, parse_leaf

__all__ = [
    "PAPER_TABLE1",
    "ToyConfig",
    "add_arguments",
    "arm_key",
    "config_from_args",
    "make_parser",
    "prefix_features",
    "run",
    "run_cell",
    "run_sweep",
]

# The paper's Table 1 (METHOD.md §9): target frequency over the last 50 steps, mean over 5 seeds.
# (n, r_neg) -> (GRPO, λ-GRPO)
PAPER_TABLE1: dict[tuple[int, float], tuple[float, float]] = {
    (1, -0.5): (0.3995, 0.5663),
    (1, -1.0): (0.0000, 0.7535),
    (1, -1.5): (0.2000, 0.4463),
    (2, -0.5): (0.1980, 0.4292),
    (2, -1.0): (0.0488, 0.3612),
    (2, -1.5): (0.0000, 0.3820),
}

NUM_PREFIXES = NUM_LEAVES - 1  # internal nodes of the depth-4 binary tree: the prefixes of length 0..3
NUM_FEATURES = DEPTH + 2 * (DEPTH - 1)  # one-hot position + one-hot token at each earlier position
OPTIMIZER = "adam"
LOSS_TYPE = "dapo"
POLICY = "MLP over the prefix (one-hot position and tokens), 2 tanh layers, logits over {L, R}"
RESULTS = "results.json"
CURVES = "curves.json"
FIGURE = "toy.png"


def arm_key(power: float) -> str:
    """Key of an arm in ``results.json``: ``grpo`` (α = 0), ``lambda`` (α = 1), else ``power_<α>``."""
    if power == 0:
        return "grpo"
    if power == 1:
        return "lambda"
    return f"power_{power:g}"


def arm_label(power: float) -> str:
    return {0: "GRPO", 1: "λ-GRPO"}.get(power, f"α={power:g}")  # type: ignore[call-overload]


# --------------------------------------------------------------------------------------------------------------
# configuration


@dataclass
class ToyConfig:
    """The sweep. Defaults are the paper's (METHOD.md §9); the optimiser and lr are ours, the same for all arms."""

    # The command-line flags are these fields (``make_parser``: HfArgumentParser); ``help`` is each flag's help.
    n: list[int] = field(
        default_factory=lambda: [1, 2], metadata={"help": "target-prefix lengths to sweep (1, 2 or 3)"}
    )
    r_neg: list[float] = field(
        default_factory=lambda: [-0.5, -1.0, -1.5], metadata={"help": "neighbour rewards to sweep (< 0)"}
    )
    seeds: int = field(default=5, metadata={"help": "seeds per arm and cell"})
    first_seed: int = field(default=0, metadata={"help": "seeds are FIRST_SEED..FIRST_SEED+SEEDS-1"})
    steps: int = field(default=250, metadata={"help": "training steps (one group per step)"})
    group_size: int = field(default=16, metadata={"help": "completions per group"})
    lr: float = field(  # PyTorch's Adam default; see docs/toy.md for other values
        default=1e-3, metadata={"help": "Adam learning rate, the same for every arm"}
    )
    hidden: int = field(default=64, metadata={"help": "width of the policy's two hidden layers"})
    power: list[float] = field(
        default_factory=lambda: [0.0, 1.0],
        metadata={"help": "arms: λ power α (0 = GRPO, 1 = λ-GRPO, others too)"},
    )
    beta: float = field(default=0.0, metadata={"help": "KL coefficient β (reference = initial policy)"})
    mu: int = field(default=1, metadata={"help": "optimiser steps per generation batch (μ)"})
    epsilon: float = field(default=0.2, metadata={"help": "ratio clip range (only matters for μ > 1)"})
    target: str = field(
        default="LRRL",
        metadata={"help": "target leaf, e.g. LRRL; 'seed' draws one per seed (same for every arm)"},
    )
    window: int = field(default=50, metadata={"help": "the metric averages the last WINDOW steps"})

    def __post_init__(self) -> None:
        def integer(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        if not self.n or any(not integer(v) or v not in VALID_N for v in self.n):
            raise ValueError(f"--n: expected values from {{1, 2, 3}}, got {self.n}")
        if not self.r_neg or any(
            not (isinstance(v, (int, float)) and v < 0 and math.isfinite(v)) for v in self.r_neg
        ):
            raise ValueError(f"--r-neg: expected finite negative numbers, got {self.r_neg}")
        for flag, values in (("--n", self.n), ("--r-neg", self.r_neg)):
            if len(set(values)) != len(values):
                raise ValueError(f"{flag}: expected distinct values, got {values}")
        if not integer(self.seeds) or self.seeds < 1:
            raise ValueError(f"--seeds: expected a positive integer, got {self.seeds}")
        if not integer(self.first_seed) or self.first_seed < 0:
            raise ValueError(f"--first-seed: expected a non-negative integer, got {self.first_seed}")
        if not integer(self.steps) or self.steps < 1:
            raise ValueError(f"--steps: expected a positive integer, got {self.steps}")
        if not integer(self.group_size) or self.group_size < 2:
            raise ValueError(
                f"--group-size: expected an integer >= 2 (GRPO needs a group), got {self.group_size}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr: expected a positive number, got {self.lr}")
        if not integer(self.hidden) or self.hidden < 1:
            raise ValueError(f"--hidden: expected a positive integer, got {self.hidden}")
        if not self.power or any(not (p >= 0 and math.isfinite(p)) for p in self.power):
            raise ValueError(f"--power: expected non-negative numbers, got {self.power}")
        if len({arm_key(p) for p in self.power}) != len(self.power):
            raise ValueError(f"--power: expected distinct values, got {self.power}")
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"--beta: expected a non-negative number, got {self.beta}")
        if not integer(self.mu) or self.mu < 1:
            raise ValueError(f"--mu: expected a positive integer, got {self.mu}")
        if not self.epsilon >= 0:
            raise ValueError(f"--epsilon: expected a non-negative number, got {self.epsilon}")
        if self.target != "seed":
            try:
                parse_leaf(self.target)
            except ValueError:
                raise ValueError(
                    f"--target: expected 4 letters from {{L, R}} such as 'LRRL', or 'seed', got {self.target!r}"
                ) from None
            self.target = self.target.upper()
        if not integer(self.window) or self.window < 1:
            raise ValueError(f"--window: expected a positive integer, got {self.window}")
        self.n = [int(v) for v in self.n]
        self.r_neg = [float(v) for v in self.r_neg]
        self.power = [float(p) for p in self.power]

    @property
    def cells(self) -> list[tuple[int, float]]:
        return [(n, r) for n in self.n for r in self.r_neg]

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def target_for(self, seed: int) -> str:
        """The target leaf of a seed: fixed, or (``--target seed``) drawn from the seed alone."""
        if self.target != "seed":
            return self.target
        return leaf_name(random.Random(f"lgrpo-toy-target-{seed}").randrange(NUM_LEAVES))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(optimizer=OPTIMIZER, loss_type=LOSS_TYPE, policy=POLICY)
        return d


# --------------------------------------------------------------------------------------------------------------
# the policy


def prefix_features() -> Tensor:
    """Inputs of the 15 prefixes (heap order: node 0 is the empty prefix, node ``i`` + token ``b`` is node
    ``2i + 1 + b``): FloatTensor ``[15, 10]``."""
    x = torch.zeros(NUM_PREFIXES, NUM_FEATURES)
    for node in range(NUM_PREFIXES):
        depth = (node + 1).bit_length() - 1
        bits = (node + 1) - (1 << depth)  # the prefix's tokens, first one most significant
        x[node, depth] = 1.0
        for pos in range(depth):
            token = (bits >> (depth - 1 - pos)) & 1
            x[node, DEPTH + 2 * pos + token] = 1.0
    return x


class BatchedPolicy(torch.nn.Module):
    """``R`` independent MLP policies evaluated together; run ``r`` is initialised from ``generators[r]``.

    Hidden layers get PyTorch's default ``U(±1/sqrt(fan_in))``; the output layer starts at zero, so every run
    starts from the uniform policy over the 16 leaves.
    """

    def __init__(self, generators: Sequence[torch.Generator], hidden: int) -> None:
        super().__init__()
        shapes = [(NUM_FEATURES, hidden), (hidden, hidden)]
        hidden_params: list[list[Tensor]] = [[] for _ in range(4)]
        for g in generators:
            for layer, (fan_in, fan_out) in enumerate(shapes):
                bound = 1.0 / math.sqrt(fan_in)
                hidden_params[2 * layer].append((torch.rand(fan_in, fan_out, generator=g) * 2 - 1) * bound)
                hidden_params[2 * layer + 1].append((torch.rand(1, fan_out, generator=g) * 2 - 1) * bound)
        R = len(generators)
        self.w1, self.b1, self.w2, self.b2 = (torch.nn.Parameter(torch.stack(p)) for p in hidden_params)
        self.w3 = torch.nn.Parameter(torch.zeros(R, hidden, 2))
        self.b3 = torch.nn.Parameter(torch.zeros(R, 1, 2))
        self.register_buffer("x", prefix_features())

    def forward(self) -> Tensor:
        """Log-probs of the next token after every prefix: ``[R, 15, 2]`` (last dim: L, R)."""
        h = torch.tanh(self.x @ self.w1 + self.b1)  # [R, 15, H]
        h = torch.tanh(h @ self.w2 + self.b2)
        return torch.log_softmax(h @ self.w3 + self.b3, dim=-1)


def sample(logp_all: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Sample completions token by token with uniforms ``u`` ``[R, k, 4]`` (token R iff ``u < P(R | prefix)``).

    Returns ``(nodes, ids)``, both LongTensor ``[R, k, 4]``: the prefix node each token was drawn at, and the token.
    """
    p_right = logp_all[..., 1].detach().exp()  # [R, 15]
    node = torch.zeros(u.shape[:2], dtype=torch.long)
    nodes, ids = [], []
    for t in range(DEPTH):
        token = (u[..., t] < p_right.gather(1, node)).long()
        nodes.append(node)
        ids.append(token)
        node = 2 * node + 1 + token
    return torch.stack(nodes, -1), torch.stack(ids, -1)


def token_logp(logp_all: Tensor, nodes: Tensor, ids: Tensor) -> Tensor:
    """Log-prob of each sampled token: ``[R, k, 4]`` from ``logp_all`` ``[R, 15, 2]``."""
    R, k, T = ids.shape
    return logp_all.reshape(R, -1).gather(1, (2 * nodes + ids).reshape(R, -1)).view(R, k, T)


def runs_loss(
    logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    weights: Tensor,
    group_size: int,
    *,
    old_logp: Tensor | None = None,
    ref_logp: Tensor | None = None,
    cfg: ToyConfig | None = None,
) -> Tensor:
    """Sum over runs of each run's own ``dapo`` loss, for ``R`` runs of one group each stacked run-major.

    ``logp``, ``mask``, ``weights``: ``[R*k, 4]``; ``advantages``: ``[R*k]``. Every completion has 4 tokens, so the
    per-run token count ``k*4`` given as the normaliser makes the batch loss ``Σ_r L_r``: run ``r``'s parameters get
    exactly ``∇L_r``.
    """
    cfg = cfg or ToyConfig()
    return policy_loss(
        logp,
        advantages,
        mask,
        old_logp=old_logp,
        ref_logp=ref_logp,
        weights=weights,
        loss_type=LOSS_TYPE,
        beta=cfg.beta,
        epsilon_low=cfg.epsilon,
        epsilon_high=cfg.epsilon,
        normalizer=group_size * DEPTH,
    )


# --------------------------------------------------------------------------------------------------------------
# one cell: every arm and seed trained together


def run_cell(
    cfg: ToyConfig, n: int, r_neg: float, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Train every (arm, seed) run of cell ``(n, r_neg)``.

    Returns ``{"n", "r_neg", "arms": {key: {"power", "per_seed", "hits", "target_prob", "targets"}}}``:
    ``per_seed`` is each seed's fraction of sampled completions equal to its target over the last ``window``
    steps; ``hits`` ``[S][steps]`` the number of target completions in each step's group; ``target_prob``
    ``[S][steps]`` the policy's exact probability of the target before each step's update.
    """
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only add overhead and nondeterminism
    try:
        return _run_cell(cfg, n, r_neg, progress)
    finally:
        torch.set_num_threads(old_threads)


def _run_cell(cfg: ToyConfig, n: int, r_neg: float, progress: Callable[[int], None] | None) -> dict[str, Any]:
    seeds, powers, k = cfg.seed_list, cfg.power, cfg.group_size
    S, A = len(seeds), len(powers)
    R = A * S  # run r = arm * S + seed index; arms with the same seed share init and random stream
    gens = [torch.Generator().manual_seed(seed) for _ in powers for seed in seeds]
    policy = BatchedPolicy(gens, cfg.hidden)
    u = torch.stack([torch.rand(cfg.steps, k, DEPTH, generator=g) for g in gens], 1)  # [steps, R, k, 4]
    ref = copy.deepcopy(policy).requires_grad_(False) if cfg.beta else None  # reference = initial policy
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)

    tasks = [ToyTree(cfg.target_for(seed), n, r_neg) for _ in powers for seed in seeds]
    table = torch.stack([t.reward_vector() for t in tasks])  # [R, 16]
    target = torch.tensor([t.target_index for t in tasks])  # [R]
    target_bits = (target[:, None] >> torch.arange(DEPTH - 1, -1, -1)) & 1  # [R, 4]
    target_nodes = torch.zeros(R, DEPTH, dtype=torch.long)
    for t in range(1, DEPTH):
        target_nodes[:, t] = 2 * target_nodes[:, t - 1] + 1 + target_bits[:, t - 1]

    group = torch.arange(R).repeat_interleave(k)  # [R*k]: one group per run
    mask = torch.ones(R * k, DEPTH, dtype=torch.bool)
    rows = [slice(a * S * k, (a + 1) * S * k) for a in range(A)]
    hits = torch.zeros(cfg.steps, R, dtype=torch.long)
    target_prob = torch.zeros(cfg.steps, R)

    for step in range(cfg.steps):
        logp_all = policy()  # [R, 15, 2]
        nodes, ids = sample(logp_all, u[step])
        leaf = leaf_index(ids)  # [R, k]
        hits[step] = (leaf == target[:, None]).sum(1)
        with torch.no_grad():
            path = logp_all.gather(1, target_nodes[..., None].expand(R, DEPTH, 2))  # [R, 4, 2]
            target_prob[step] = path.gather(2, target_bits[..., None]).sum((1, 2)).exp()

        flat_ids = ids.reshape(R * k, DEPTH)
        rewards = table.gather(1, leaf).reshape(R * k)
        adv = group_advantages(rewards, group)
        weights = torch.cat([lambda_weights(flat_ids[s], mask[s], group[s], p) for s, p in zip(rows, powers)])
        old_logp = token_logp(logp_all, nodes, ids).reshape(R * k, DEPTH).detach()
        ref_logp = None
        if ref is not None:
            with torch.no_grad():
                ref_logp = token_logp(ref(), nodes, ids).reshape(R * k, DEPTH)
        for epoch in range(cfg.mu):
            if epoch:
                logp_all = policy()
            logp = token_logp(logp_all, nodes, ids).reshape(R * k, DEPTH)
            loss = runs_loss(logp, adv, mask, weights, k, old_logp=old_logp, ref_logp=ref_logp, cfg=cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if progress is not None:
            progress(1)

    window = min(cfg.window, cfg.steps)
    freq = hits[-window:].sum(0).double() / (window * k)  # [R]
    arms = {}
    for a, p in enumerate(powers):
        runs = slice(a * S, (a + 1) * S)
        arms[arm_key(p)] = {
            "power": p,
            "per_seed": [round(float(f), 6) for f in freq[runs]],
            "hits": hits[:, runs].T.tolist(),
            "target_prob": [[round(float(x), 5) for x in row] for row in target_prob[:, runs].T],
            "targets": [t.target for t in tasks[runs]],
        }
    return {"n": n, "r_neg": r_neg, "arms": arms}


# --------------------------------------------------------------------------------------------------------------
# the sweep: results, table, figure


def _mean_sem(xs: Sequence[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
    return m, math.sqrt(var / len(xs))


def _json_num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def cell_summary(cell: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``results.json``'s ``cells``."""
    out: dict[str, Any] = {"n": cell["n"], "r_neg": cell["r_neg"]}
    for key, arm in cell["arms"].items():
        mean, sem = _mean_sem(arm["per_seed"])
        out[key] = {"mean": _json_num(mean), "sem": _json_num(sem), "per_seed": arm["per_seed"]}
    paper = PAPER_TABLE1.get((cell["n"], cell["r_neg"]))
    out["paper"] = {"grpo": paper[0], "lambda": paper[1]} if paper else None
    return out


def _load_previous(out: Path, cfg: ToyConfig) -> dict[tuple[int, float], dict[str, Any]]:
    """Finished cells of an earlier run with the same settings (``--resume``)."""
    res, cur = out / RESULTS, out / CURVES
    if not (res.exists() and cur.exists()):
        return {}
    old_cfg = json.loads(res.read_text()).get("config", {})
    differ = [k for k in config_diff(old_cfg, cfg.to_dict()) if k not in ("n", "r_neg")]  # cells may be added
    if differ:
        raise SystemExit(
            f"lgrpo toy: --resume: {res} was written with different settings ({', '.join(differ)}); "
            "use another --out or drop --resume"
        )
    cells = json.loads(cur.read_text()).get("cells", [])
    return {(c["n"], c["r_neg"]): c for c in cells}


def format_table(
    summaries: Sequence[dict[str, Any]], powers: Sequence[float]
) -> tuple[list[str], list[list[str]]]:
    header = ["n", "r_neg"] + [arm_label(p) for p in powers] + ["paper GRPO", "paper λ-GRPO"]
    rows = []
    for s in summaries:
        r = s["r_neg"]
        row = [str(s["n"]), f"{r:.1f}" if r == round(r, 1) else f"{r:g}"]
        for p in powers:
            a = s[arm_key(p)]
            sem = "nan" if a["sem"] is None else f"{a['sem']:.3f}"
            row.append(f"{a['mean']:.3f} ± {sem}")
        paper = s["paper"]
        row += [f"{paper['grpo']:.4f}", f"{paper['lambda']:.4f}"] if paper else ["—", "—"]
        rows.append(row)
    return header, rows


def print_table(summaries: Sequence[dict[str, Any]], cfg: ToyConfig, file: Any = None) -> None:
    """Target frequency (mean ± s.e.m. over seeds, last ``window`` steps) beside the paper's Table 1."""
    header, rows = format_table(summaries, cfg.power)
    title = (
        f"target frequency, last {min(cfg.window, cfg.steps)} steps, mean ± s.e.m. over {cfg.seeds} seed(s)"
    )
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print(title, file=file)
        for line in [header, ["-" * w for w in widths], *rows]:
            print("  ".join(c.rjust(w) for c, w in zip(line, widths)), file=file)
        return
    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="right", style="dim" if h.startswith("paper") else None)
    for r in rows:
        table.add_row(*r)
    console = Console(file=file or sys.stdout)
    if not console.is_terminal:
        console.width = 160  # a pipe or file gets rich's 80 columns, which wraps the cells of extra arms
    console.print(table)


def plot(cells: Sequence[dict[str, Any]], cfg: ToyConfig, path: Path, smooth: int = 10) -> bool:
    """``toy.png``: target frequency over training per cell, every arm, mean over seeds with a ±s.e.m. band."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipped toy.png (pip install 'lgrpo[eval]')", file=sys.stderr)
        return False
    ns = sorted({c["n"] for c in cells})
    rs = sorted({c["r_neg"] for c in cells}, reverse=True)
    fig, axes = plt.subplots(
        len(ns), len(rs), figsize=(3.6 * len(rs), 2.8 * len(ns)), squeeze=False, sharex=True, sharey=True
    )
    colours = {0.0: "tab:blue", 1.0: "tab:red"}
    extra = iter(["tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    colour = {p: colours.get(p) or next(extra, "tab:gray") for p in cfg.power}
    w = max(1, min(smooth, cfg.steps))
    kernel = torch.ones(1, 1, w) / w
    window = min(cfg.window, cfg.steps)
    for ax in axes.flat:
        ax.set_visible(False)
    for cell in cells:
        ax = axes[ns.index(cell["n"]), rs.index(cell["r_neg"])]
        ax.set_visible(True)
        for arm in cell["arms"].values():
            freq = torch.tensor(arm["hits"], dtype=torch.float64) / cfg.group_size  # [S, steps]
            sm = torch.nn.functional.conv1d(freq[:, None], kernel.double())[:, 0]  # moving average, "valid"
            x = torch.arange(w, cfg.steps + 1)
            mean = sm.mean(0)
            sem = sm.std(0) / math.sqrt(sm.shape[0]) if sm.shape[0] > 1 else torch.zeros_like(mean)
            c = colour[arm["power"]]
            ax.plot(x, mean, color=c, lw=1.5, label=arm_label(arm["power"]))
            ax.fill_between(x, mean - sem, mean + sem, color=c, alpha=0.2, lw=0)
        paper = PAPER_TABLE1.get((cell["n"], cell["r_neg"]))
        if paper:
            for p, v in zip((0.0, 1.0), paper):
                ax.hlines(v, cfg.steps - window, cfg.steps, colors=colours[p], linestyles="--", lw=1)
        ax.set_title(f"n = {cell['n']}, r_neg = {cell['r_neg']:g}", fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("target frequency")
    handles, labels = next(ax for ax in axes.flat if ax.get_visible()).get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="k", ls="--", lw=1))
    labels.append("paper, last 50 steps")
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(
        f"Toy tree task: fraction of sampled completions equal to the target "
        f"({w}-step moving average, mean ± s.e.m. over {cfg.seeds} seeds)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _cell_task(cfg: ToyConfig, n: int, r_neg: float) -> dict[str, Any]:
    return run_cell(cfg, n, r_neg)


def run_sweep(
    cfg: ToyConfig, out: Path | str, workers: int = 1, resume: bool = False, quiet: bool = False
) -> dict[str, Any]:
    """Run every cell, writing ``results.json`` and ``curves.json`` after each, then ``toy.png``.

    Returns the ``results.json`` object. Results do not depend on ``workers``: each cell is computed the same way
    wherever it runs.
    """
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = _load_previous(out, cfg) if resume else {}
    order = cfg.cells
    finished: dict[tuple[int, float], dict[str, Any]] = {c: done[c] for c in order if c in done}
    todo = [c for c in order if c not in finished]

    def results() -> dict[str, Any]:
        cells = [finished[c] for c in order if c in finished]
        return {
            "cells": [cell_summary(c) for c in cells],
            "config": cfg.to_dict(),
            "seconds": round(time.perf_counter() - t0, 3),
        }

    def record(cell: dict[str, Any]) -> None:
        finished[(cell["n"], cell["r_neg"])] = cell
        cells = [finished[c] for c in order if c in finished]
        write_json(out / CURVES, {"config": cfg.to_dict(), "cells": cells}, indent=None)
        write_json(out / RESULTS, results(), indent=1)
        if not quiet:
            s = cell_summary(cell)
            arms = ", ".join(f"{arm_label(p)} {s[arm_key(p)]['mean']:.3f}" for p in cfg.power)
            bar.write(f"n={cell['n']} r_neg={cell['r_neg']:g}: {arms}")

    from tqdm.auto import tqdm

    if finished and not quiet:
        print(f"resuming: {len(finished)} of {len(order)} cells already in {out / RESULTS}", file=sys.stderr)
    bar = tqdm(
        total=len(todo) * cfg.steps, unit="step", desc="toy", disable=quiet or None, dynamic_ncols=True
    )
    try:
        workers = max(1, min(workers, len(todo)))
        if workers == 1:
            for n, r in todo:
                bar.set_postfix_str(f"n={n} r_neg={r:g}")
                record(run_cell(cfg, n, r, progress=bar.update))
        else:
            import multiprocessing as mp

            # spawn, not fork: a forked torch may deadlock on its thread pools
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                pending = {pool.submit(_cell_task, cfg, n, r) for n, r in todo}
                try:
                    while pending:
                        ready, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in ready:
                            record(fut.result())
                            bar.update(cfg.steps)
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        bar.close()
    res = results()
    write_json(out / RESULTS, res, indent=1)
    plot([finished[c] for c in order], cfg, out / FIGURE)
    return res


# --------------------------------------------------------------------------------------------------------------
# command line


def available_cores() -> int:
    """Cores this process may run on (``os.sched_getaffinity`` exists on Linux only; elsewhere the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def make_parser(**kwargs: Any) -> argparse.ArgumentParser:
    """``lgrpo toy``'s parser: one flag per :class:`ToyConfig` field (transformers' ``HfArgumentParser``; both
    ``--first-seed`` and ``--first_seed``), then the run's own flags (:func:`add_arguments`)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(ToyConfig, formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that are not settings of the sweep: where and how it runs."""
    parser.add_argument(
        "--workers", type=int, default=available_cores(), help="processes (cells run in parallel)"
    )
    parser.add_argument("--out", default="runs/toy", help="output directory")
    parser.add_argument(
        "--resume", action="store_true", help="keep finished cells of an earlier run in --out"
    )


def config_from_args(args: argparse.Namespace) -> ToyConfig:
    """The sweep's config; ``ValueError`` naming the flag if a value is bad."""
    if args.workers < 1:
        raise ValueError(f"--workers: expected a positive integer, got {args.workers}")
    return ToyConfig(**{f.name: getattr(args, f.name) for f in fields(ToyConfig)})


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        raise SystemExit(f"lgrpo toy: error: {e}") from None
    runs = len(cfg.cells) * len(cfg.power) * cfg.seeds
    print(
        f"toy tree: {len(cfg.cells)} cells × {len(cfg.power)} arms × {cfg.seeds} seeds = {runs} runs of "
        f"{cfg.steps} steps, group size {cfg.group_size}, target {cfg.target}; policy: {POLICY} "
        f"({cfg.hidden} units); Adam lr {cfg.lr:g}; loss {LOSS_TYPE}, μ={cfg.mu}, β={cfg.beta:g}",
        file=sys.stderr,
    )
    res = run_sweep(cfg, args.out, workers=args.workers, resume=args.resume)
    print_table(res["cells"], cfg)
    out = Path(args.out)
    print(f"{len(res['cells'])} cells in {res['seconds']:.1f} s; wrote {out / RESULTS}, {out / FIGURE}")
    return 0
