"""The paper's Figure 1 group (METHOD.md §7) as tensors: a test vector and a demo for the viewer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

PAPER_COMPLETIONS = ("ABCD", "ABEFHI", "JKLM", "JKLNQST", "JKLNQU", "VWYZ")
PAPER_REWARDS = (0.5, 0.5, 1.0, 0.0, 0.0, 0.5)
# METHOD.md §7's reference values for this group, per completion: |λ| of each token, path depth and intermediate
# proportion (written out from the paper's table, not computed, so that tests can check the code against them)
PAPER_SET_SIZES = (
    (2, 2, 1, 1),
    (2, 2, 1, 1, 1, 1),
    (3, 3, 3, 1),
    (3, 3, 3, 2, 2, 1, 1),
    (3, 3, 3, 2, 2, 1),
    (1, 1, 1, 1),
)
PAPER_PATH_DEPTHS = (2, 2, 2, 3, 3, 1)
PAPER_INTERMEDIATE = (2 / 4, 2 / 6, 3 / 4, 5 / 7, 5 / 6, 0.0)


@dataclass
class ExampleGroup:
    """One group of completions: ``ids``/``mask`` ``[B, T]``, ``group`` ``[B]``, ``rewards`` ``[B]``."""

    ids: Tensor
    mask: Tensor
    group: Tensor
    rewards: Tensor
    completions: tuple[str, ...]

    def decode(self, tokens: list[int]) -> str:
        """Token ids back to letters (one letter per token)."""
        return "".join(chr(t) for t in tokens)


def paper_example(device: str | torch.device = "cpu") -> ExampleGroup:
    """The six completions of the paper's Figure 1, one letter per token (token id = ``ord(letter)``)."""
    T = max(len(c) for c in PAPER_COMPLETIONS)
    B = len(PAPER_COMPLETIONS)
    ids = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for i, c in enumerate(PAPER_COMPLETIONS):
        ids[i, : len(c)] = torch.tensor([ord(ch) for ch in c])
        mask[i, : len(c)] = True
    return ExampleGroup(
        ids.to(device),
        mask.to(device),
        torch.zeros(B, dtype=torch.long, device=device),
        torch.tensor(PAPER_REWARDS, device=device),
        PAPER_COMPLETIONS,
    )
