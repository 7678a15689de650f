"""The paper's toy tree task (METHOD.md §9): 4 tokens from {L, R}, 16 leaves, one target.

- The target leaf ``T`` earns ``target_reward`` (1.0).
- Every other leaf that shares ``T``'s first ``n`` tokens earns ``r_neg < 0``.
- All remaining leaves earn ``other_reward`` (0.7).

So the road to the best leaf runs through a prefix that most of its neighbours make look bad: GRPO pushes that
prefix down once per completion passing through it, λ-GRPO once in all.

Token ids: ``L = 0``, ``R = 1``. A completion is a row of 4 ids; its leaf index is the row read as a binary number,
first token most significant (``LLLL = 0``, ``RRRR = 15``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DEPTH", "LEAVES", "NUM_LEAVES", "TOKENS", "ToyTree", "leaf_index", "leaf_name", "parse_leaf"]

TOKENS = ("L", "R")
DEPTH = 4
NUM_LEAVES = 2**DEPTH
# in leaf-index order: LLLL, LLLR, …, RRRR
LEAVES = tuple("".join(p) for p in itertools.product(TOKENS, repeat=DEPTH))
VALID_N = (1, 2, 3)


def parse_leaf(leaf: str, name: str = "target") -> int:
    """Leaf index of a string such as ``"LRRL"``; ``ValueError`` naming ``name`` if it is not 4 letters of L/R."""
    if not isinstance(leaf, str) or len(leaf) != DEPTH or set(leaf.upper()) - set(TOKENS):
        raise ValueError(f"{name}: expected {DEPTH} letters from {{L, R}} such as 'LRRL', got {leaf!r}")
    return LEAVES.index(leaf.upper())


def leaf_name(index: int) -> str:
    """``"LRRL"`` for leaf index 6."""
    return LEAVES[index]


def leaf_index(ids: Tensor) -> Tensor:
    """Leaf index of each completion: LongTensor ``[...]`` from token ids ``[..., 4]`` in {0, 1}."""
    if ids.shape[-1] != DEPTH:
        raise ValueError(f"ids: expected last dimension {DEPTH}, got shape {tuple(ids.shape)}")
    place = 2 ** torch.arange(DEPTH - 1, -1, -1, device=ids.device)
    return (ids.long() * place).sum(-1)


@dataclass(frozen=True)
class ToyTree:
    """One cell of the sweep: where the target is, how far its bad neighbourhood reaches, how bad it is.

    Args:
        target: the target leaf, 4 letters from {L, R}.
        n: how many leading tokens a leaf must share with the target to earn ``r_neg`` (1, 2 or 3).
        r_neg: the reward of the target's neighbours; must be negative.
        target_reward: the target's reward.
        other_reward: the reward of every leaf outside the target's neighbourhood.
    """

    target: str = "LRRL"
    n: int = 1
    r_neg: float = -1.0
    target_reward: float = 1.0
    other_reward: float = 0.7

    def __post_init__(self) -> None:
        parse_leaf(self.target)
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n not in VALID_N:
            raise ValueError(f"n: expected one of {VALID_N}, got {self.n!r}")
        if not (self.r_neg < 0 and math.isfinite(self.r_neg)):  # also rejects NaN and -inf
            raise ValueError(f"r_neg: expected a finite negative number, got {self.r_neg!r}")

    @property
    def target_index(self) -> int:
        return parse_leaf(self.target)

    def reward_of(self, leaf: str) -> float:
        """Reward of one leaf given as a string such as ``"LRRL"``."""
        leaf = leaf.upper()
        parse_leaf(leaf, "leaf")
        target = self.target.upper()
        if leaf == target:
            return self.target_reward
        if leaf[: self.n] == target[: self.n]:
            return self.r_neg
        return self.other_reward

    def reward_table(self) -> dict[str, float]:
        """Reward of every leaf, in leaf-index order."""
        return {leaf: self.reward_of(leaf) for leaf in LEAVES}

    def reward_vector(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """Rewards indexed by leaf index: FloatTensor ``[16]``."""
        return torch.tensor([self.reward_of(leaf) for leaf in LEAVES], dtype=dtype)

    def rewards(self, ids: Tensor) -> Tensor:
        """Outcome reward of each completion: FloatTensor ``[...]`` from token ids ``[..., 4]``."""
        return self.reward_vector().to(ids.device)[leaf_index(ids)]
