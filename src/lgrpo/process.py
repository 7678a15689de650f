"""Process sets, GRPO's implicit process reward model, and process-tree statistics.

Every function here takes a batch of completions (prompt excluded), right-padded:

- ``ids``   LongTensor ``[B, T]``: completion token ids.
- ``mask``  ``[B, T]`` bool or 0/1: true on real tokens, a contiguous run from position 0 (a row may be empty).
- ``group`` LongTensor ``[B]``: rows with equal values were sampled for the same prompt. Values are arbitrary and the
  rows of a group need not be adjacent.

For token ``t`` of completion ``i`` the process set is (METHOD.md §2)::

    λ(i,t) = { j in group(i) : y_j[0..t] == y_i[0..t] }

How it is computed, exactly and without a Python loop over rows or tokens:

1. Sort the rows of the batch by (group, completion) lexicographically, padding counting as a token smaller than
   every real one. Lexicographic order is what makes every process set a *contiguous block* of sorted rows. The
   sort uses prefix doubling: aligned blocks of 1, 2, 4, … tokens are given dense integer ranks, each level ranking
   pairs of ranks of the level below (``log2 T`` sorts of geometrically shrinking size, all exact integer keys; no
   hashing, so no collisions).
2. For each pair of neighbours in sorted order, the length of their longest common prefix (LCP) of real tokens.
3. Row ``p`` and its neighbour ``p+1`` are in one process set at position ``t`` iff ``lcp[p] > t``. So the set of
   ``(p, t)`` is the maximal run of sorted rows around ``p`` with no *break* (``lcp <= t``) between them; its ends
   come from a running max / min over break positions (``cummax``), giving ``|λ|`` in ``O(B·T)`` memory.

Sums over a process set (step rewards, PRM-aware advantages) then come from prefix sums over the sorted rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "ProcessBlocks",
    "ProcessTree",
    "ProcessTreeNode",
    "TreeStats",
    "process_blocks",
    "process_set_mean",
    "process_set_sizes",
    "prm_advantages",
    "step_rewards",
    "tree_stats",
    "validate_batch",
]


# --------------------------------------------------------------------------------------------------------------
# input checks


def validate_batch(ids: Tensor, mask: Tensor, group: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Check ``(ids, mask, group)`` and return them as ``(long [B,T], bool [B,T], long [B])`` on ``ids.device``.

    Raises ``ValueError`` naming the offending argument.
    """
    if not isinstance(ids, Tensor):
        raise ValueError(f"ids: expected a torch.Tensor, got {type(ids).__name__}")
    if ids.dim() != 2:
        raise ValueError(f"ids: expected shape [B, T], got {tuple(ids.shape)}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"ids: expected an integer tensor of token ids, got dtype {ids.dtype}")
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask: expected a torch.Tensor, got {type(mask).__name__}")
    if mask.shape != ids.shape:
        raise ValueError(f"mask: expected shape {tuple(ids.shape)} (same as ids), got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError("mask: expected bool or 0/1 values")
        mask = mask != 0
    if not isinstance(group, Tensor):
        raise ValueError(f"group: expected a torch.Tensor, got {type(group).__name__}")
    if group.dim() != 1 or group.shape[0] != ids.shape[0]:
        raise ValueError(f"group: expected shape [{ids.shape[0]}] (one id per row of ids), got {tuple(group.shape)}")
    if group.is_floating_point() or group.is_complex():
        raise ValueError(f"group: expected an integer tensor, got dtype {group.dtype}")
    mask = mask.to(ids.device)
    if ids.shape[1] > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("mask: each row must be one contiguous run of true values starting at position 0 (right padding)")
    return ids.long(), mask, group.to(ids.device).long()


# --------------------------------------------------------------------------------------------------------------
# the core: process sets as contiguous blocks of lexicographically sorted rows


@dataclass
class ProcessBlocks:
    """Process sets of a batch, as blocks of rows in (group, lexicographic) order.

    Attributes (``B`` rows, ``T`` positions):
        order:  ``[B]`` row indices in sorted order (``sorted_row[p] = order[p]``).
        start:  ``[B, T]`` first sorted position of the block holding sorted row ``p`` at position ``t``.
        end:    ``[B, T]`` last sorted position of that block (inclusive).
        mask:   ``[B, T]`` bool, the validated mask in the *original* row order.
        sizes:  ``[B, T]`` long, ``|λ(i,t)|`` in the original row order (0 on padding).
        duplicates: ``[B]`` long, number of rows of the group identical to row ``i`` (itself included).
        group_index: ``[B]`` long, dense group index ``0..G-1`` of each row.
        num_groups: ``G``.
    """

    order: Tensor
    start: Tensor
    end: Tensor
    mask: Tensor
    sizes: Tensor
    duplicates: Tensor
    group_index: Tensor
    num_groups: int

    def set_sum(self, values: Tensor) -> Tensor:
        """``[B, T]``: sum of per-row ``values`` ``[B]`` over each process set (0 on padding)."""
        vals = values.to(self.start.device)[self.order]
        csum = torch.cat([vals.new_zeros(1), torch.cumsum(vals, 0)])  # exclusive prefix sums over sorted rows
        out_sorted = csum[self.end + 1] - csum[self.start]
        out = torch.empty_like(out_sorted)
        out[self.order] = out_sorted
        return out.masked_fill(~self.mask, 0)


def _dense_rank(key: Tensor) -> tuple[Tensor, int]:
    """Dense ranks ``0..R-1`` of ``key`` preserving order, and ``R``."""
    uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
    return inverse.reshape(key.shape), int(uniq.numel())


def _row_ranks(ids: Tensor, mask: Tensor) -> Tensor:
    """``[B]`` dense rank of each row in lexicographic order, padding below every real token (prefix doubling)."""
    B, T = ids.shape
    if T == 0:
        return torch.zeros(B, dtype=torch.long, device=ids.device)
    width = 1 << max(0, (T - 1).bit_length())  # next power of two
    tok = torch.where(mask, ids, torch.full_like(ids, -1))
    if width > T:
        tok = torch.cat([tok, tok.new_full((B, width - T), -1)], dim=1)
    rank, n = _dense_rank(tok)
    while rank.shape[1] > 1:
        pair = rank.view(B, -1, 2)
        rank, n = _dense_rank(pair[..., 0] * n + pair[..., 1])  # n <= B*T, so n*n fits in int64
    return rank[:, 0]


def process_blocks(ids: Tensor, mask: Tensor, group: Tensor) -> ProcessBlocks:
    """Compute every process set of the batch at once. See the module docstring for the algorithm."""
    ids, mask, group = validate_batch(ids, mask, group)
    B, T = ids.shape
    device = ids.device
    group_index, num_groups = _dense_rank(group)
    if B == 0:
        empty = torch.zeros(0, T, dtype=torch.long, device=device)
        return ProcessBlocks(
            group_index.new_zeros(0), empty, empty, mask, empty, group_index.new_zeros(0), group_index, 0
        )

    row_rank = _row_ranks(ids, mask)
    num_rows = int(row_rank.max()) + 1
    order = torch.argsort(group_index * num_rows + row_rank, stable=True)

    ids_s, mask_s = ids[order], mask[order]
    same_group = group_index[order][1:] == group_index[order][:-1]  # [B-1]
    # lcp[p] = common prefix length of sorted rows p and p+1 (real tokens only; 0 across groups)
    differ = (ids_s[1:] != ids_s[:-1]) | ~mask_s[1:] | ~mask_s[:-1]  # [B-1, T]
    first_diff = torch.where(differ.any(1), differ.to(torch.uint8).argmax(1), torch.full_like(same_group, T, dtype=torch.long))
    lcp = torch.where(same_group, first_diff, torch.zeros_like(first_diff))

    positions = torch.arange(T, device=device)
    brk = lcp[:, None] <= positions[None, :]  # [B-1, T]: a block boundary between sorted rows p and p+1 at t
    idx = torch.arange(B - 1, device=device)[:, None].expand(B - 1, T)
    # start of the block of sorted row p = 1 + last boundary index < p
    last_brk = torch.where(brk, idx, torch.full_like(idx, -1))
    last_brk = torch.cummax(last_brk, dim=0).values if B > 1 else last_brk
    start = torch.cat([torch.zeros(1, T, dtype=torch.long, device=device), last_brk + 1], dim=0)
    # end of the block of sorted row p = first boundary index >= p
    next_brk = torch.where(brk, idx, torch.full_like(idx, B - 1))
    next_brk = torch.flip(torch.cummin(torch.flip(next_brk, [0]), dim=0).values, [0]) if B > 1 else next_brk
    end = torch.cat([next_brk, torch.full((1, T), B - 1, dtype=torch.long, device=device)], dim=0)

    sizes_sorted = end - start + 1
    sizes = torch.empty_like(sizes_sorted)
    sizes[order] = sizes_sorted
    sizes = sizes.masked_fill(~mask, 0)

    # identical rows (same tokens and same length) are adjacent in sorted order: count runs
    full_key = group_index * num_rows + row_rank
    _, inv, counts = torch.unique(full_key, return_inverse=True, return_counts=True)
    duplicates = counts[inv]
    return ProcessBlocks(order, start, end, mask, sizes, duplicates, group_index, num_groups)


def process_set_sizes(ids: Tensor, mask: Tensor, group: Tensor) -> Tensor:
    """``|λ(i,t)|`` for every real token: LongTensor ``[B, T]``, 0 on padding (METHOD.md §2)."""
    return process_blocks(ids, mask, group).sizes


def process_set_mean(ids: Tensor, mask: Tensor, group: Tensor, values: Tensor) -> Tensor:
    """Mean of per-row ``values`` ``[B]`` over each process set: FloatTensor ``[B, T]``, 0 on padding.

    NaN values are left out of the mean; a set with no finite member gives NaN.
    """
    blocks = process_blocks(ids, mask, group)
    values = _as_values(values, ids.shape[0], "values", ids.device)
    finite = ~torch.isnan(values)
    total = blocks.set_sum(torch.where(finite, values, torch.zeros_like(values)))
    count = blocks.set_sum(finite.to(values.dtype))
    out = total / count
    return out.masked_fill(~blocks.mask, 0)


def _as_values(values: Any, batch: int, name: str, device: torch.device) -> Tensor:
    if not isinstance(values, Tensor):
        values = torch.as_tensor(values)
    if values.dim() != 1 or values.shape[0] != batch:
        raise ValueError(f"{name}: expected shape [{batch}] (one value per row), got {tuple(values.shape)}")
    if not values.is_floating_point():
        values = values.float()
    return values.to(device)


def step_rewards(ids: Tensor, mask: Tensor, group: Tensor, rewards: Tensor) -> Tensor:
    """The implicit PRM's step reward ``R(i,t)`` = mean outcome reward over ``λ(i,t)``: ``[B, T]`` (METHOD.md §3).

    0 on padding. NaN (unscorable) rewards are left out of the mean; a set with no scorable member is NaN.
    """
    return process_set_mean(ids, mask, group, rewards)


def prm_advantages(ids: Tensor, mask: Tensor, group: Tensor, rewards: Tensor, scale: str = "group") -> Tensor:
    """PRM-aware advantage ``A(i,t)`` = mean GRPO advantage over ``λ(i,t)``: ``[B, T]`` (METHOD.md §3), 0 on padding.

    ``scale`` is passed to :func:`lgrpo.objectives.group_advantages`. With ``scale="group"`` this equals
    ``(R(i,t) − mean(r)) / (std(r) + 1e-4)``. Unscorable (NaN) rewards get advantage 0 and still count as members,
    which is what keeps Theorem 1 exact.
    """
    from lgrpo.objectives import group_advantages  # objectives imports this module

    _, _, group_v = validate_batch(ids, mask, group)
    adv = group_advantages(_as_values(rewards, ids.shape[0], "rewards", ids.device), group_v, scale=scale)
    return process_set_mean(ids, mask, group, adv)


# --------------------------------------------------------------------------------------------------------------
# tree statistics (METHOD.md §8)


@dataclass
class TreeStats:
    """Per-row statistics of each group's process tree.

    path_depth: ``[B]`` long, process steps on the row's root-to-leaf path (0 for an empty row).
    intermediate_proportion: ``[B]`` float, share of the row's tokens in non-leaf steps (0 for an empty row).
    flat: ``[B]`` bool, whether the row's group tree is flat (every process set a singleton).
    process_set_size_mean: ``[B]`` float, mean ``|λ|`` over the row's tokens (0 for an empty row).
    """

    path_depth: Tensor
    intermediate_proportion: Tensor
    flat: Tensor
    process_set_size_mean: Tensor

    def summary(self, prefix: str = "prm/") -> dict[str, float]:
        """Batch means as slash-scoped metrics; ``flat_fraction`` counts groups, the rest count non-empty rows."""
        nonempty = self.path_depth > 0
        n = max(int(nonempty.sum()), 1)
        return {
            f"{prefix}flat_fraction": float(self.flat.float().mean()) if self.flat.numel() else 0.0,
            f"{prefix}path_depth_mean": float(self.path_depth[nonempty].float().sum()) / n,
            f"{prefix}intermediate_proportion_mean": float(self.intermediate_proportion[nonempty].sum()) / n,
            f"{prefix}process_set_size_mean": float(self.process_set_size_mean[nonempty].sum()) / n,
        }


def tree_stats(ids: Tensor, mask: Tensor, group: Tensor, *, blocks: ProcessBlocks | None = None) -> TreeStats:
    """Path depth, intermediate proportion and flatness of every row (METHOD.md §8).

    Along a row the process sets only shrink, so a new process step starts exactly where ``|λ|`` changes. A token is
    intermediate when its set holds a completion different from this row, i.e. ``|λ(i,t)|`` exceeds the number of
    exact duplicates of row ``i``.
    """
    if blocks is None:
        blocks = process_blocks(ids, mask, group)
    sizes, m = blocks.sizes, blocks.mask
    lengths = m.sum(1)
    changes = (sizes[:, 1:] != sizes[:, :-1]) & m[:, 1:]
    path_depth = torch.where(lengths > 0, 1 + changes.sum(1), torch.zeros_like(lengths))
    inter = ((sizes > blocks.duplicates[:, None]) & m).sum(1)
    denom = lengths.clamp(min=1).to(torch.float32)
    intermediate = inter.to(torch.float32) / denom
    size_mean = sizes.sum(1).to(torch.float32) / denom
    row_max = sizes.max(1).values if sizes.shape[1] else torch.zeros_like(lengths)
    group_max = torch.zeros(blocks.num_groups, dtype=torch.long, device=sizes.device)
    group_max = group_max.scatter_reduce(0, blocks.group_index, row_max, reduce="amax", include_self=True)
    flat = group_max[blocks.group_index] <= 1
    return TreeStats(path_depth, intermediate, flat, size_mean)


# --------------------------------------------------------------------------------------------------------------
# ProcessTree: one group's tree as Python objects, for people and plots (not for the hot path)


@dataclass
class ProcessTreeNode:
    """One process step: positions ``start..end-1`` shared by exactly the completions in ``members``."""

    start: int
    end: int
    tokens: list[int]
    members: list[int]
    step_reward: float
    advantage: float
    children: list[ProcessTreeNode] = field(default_factory=list)
    depth: int = 0
    text: str | None = None

    @property
    def size(self) -> int:
        """``|λ|`` of every token of this step."""
        return len(self.members)

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "start": self.start,
            "end": self.end,
            "tokens": self.tokens,
            "members": self.members,
            "size": self.size,
            "step_reward": _json_float(self.step_reward),
            "advantage": _json_float(self.advantage),
            "depth": self.depth,
            "children": [c.to_dict() for c in self.children],
        }
        if self.text is not None:
            d["text"] = self.text
        return d


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


class ProcessTree:
    """The process tree ``B(G)`` of one group: a compressed trie of its completions (METHOD.md §2).

    Built from the same inputs as the tensor functions; all rows must belong to one group. ``root.children`` are
    the steps starting at position 0. Node ``members`` are row indices into the given batch.
    """

    def __init__(
        self,
        ids: Tensor,
        mask: Tensor,
        rewards: Tensor | None = None,
        *,
        group: Tensor | None = None,
        scale: str = "group",
        decode: Any = None,
    ) -> None:
        if group is None:
            group = torch.zeros(ids.shape[0] if isinstance(ids, Tensor) and ids.dim() == 2 else 0, dtype=torch.long)
        ids, mask, group = validate_batch(ids, mask, group)
        if group.numel() and bool((group != group[0]).any()):
            raise ValueError("group: ProcessTree is built for one group; got several group ids")
        B = ids.shape[0]
        if rewards is None:
            rewards = torch.zeros(B)
        rewards = _as_values(rewards, B, "rewards", torch.device("cpu"))
        from lgrpo.objectives import group_advantages

        self.rewards = rewards
        self.advantages = group_advantages(rewards, torch.zeros(B, dtype=torch.long), scale=scale)
        self.lengths = [int(x) for x in mask.sum(1).cpu()]
        self.sequences = [row[: n].tolist() for row, n in zip(ids.cpu(), self.lengths)]
        self.root = ProcessTreeNode(0, 0, [], list(range(B)), self._mean(range(B), self.rewards),
                                    self._mean(range(B), self.advantages), depth=0)
        self._build(self.root, list(range(B)), 0)
        if decode is not None:
            for node in self.nodes():
                node.text = decode(node.tokens)

    def _mean(self, rows: Any, values: Tensor) -> float:
        vals = [float(values[r]) for r in rows]
        vals = [v for v in vals if not math.isnan(v)]
        return sum(vals) / len(vals) if vals else float("nan")

    def _build(self, parent: ProcessTreeNode, rows: list[int], pos: int) -> None:
        by_token: dict[int, list[int]] = {}
        for r in rows:
            if self.lengths[r] > pos:
                by_token.setdefault(self.sequences[r][pos], []).append(r)
        for members in by_token.values():
            end = pos + 1
            while True:  # extend the step while the member set stays the same
                if any(self.lengths[r] <= end for r in members):
                    break
                if len({self.sequences[r][end] for r in members}) != 1:
                    break
                # the set also changes if another row of the parent set still matches here: impossible, since
                # rows outside `members` already differ at `pos`
                end += 1
            node = ProcessTreeNode(
                pos, end, self.sequences[members[0]][pos:end], members,
                self._mean(members, self.rewards), self._mean(members, self.advantages), depth=parent.depth + 1,
            )
            parent.children.append(node)
            self._build(node, members, end)

    def nodes(self) -> list[ProcessTreeNode]:
        """All process steps (root excluded), depth-first."""
        out: list[ProcessTreeNode] = []
        stack = list(reversed(self.root.children))
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(node.children))
        return out

    def path(self, row: int) -> list[ProcessTreeNode]:
        """The steps on row ``row``'s root-to-leaf path."""
        out, node = [], self.root
        while True:
            nxt = [c for c in node.children if row in c.members]
            if not nxt:
                return out
            node = nxt[0]
            out.append(node)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rewards": [_json_float(float(r)) for r in self.rewards],
            "advantages": [float(a) for a in self.advantages],
            "completions": self.sequences,
            "children": [c.to_dict() for c in self.root.children],
        }
