"""The paper's Figure 1 group (METHOD.md §7) as tensors: a test vector and a demo for the viewer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

PAPER_COMPLETIONS = ("ABCD", "ABEFHI", "JKLM", "JKLNQST", "JKLNQU", "VWYZ")
PAPER_REWARDS = (0.5, 0.5, 1.0, 0.0, 0.0, 0.5)


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
