"""Process sets, GRPO's implicit process reward model, and process-tree statistics.

Every function here takes a batch of completions (prompt excluded), right-padded:

- ``ids``   LongTensor ``[B, T]``: completion token ids.
- ``mask``  ``[B, T]`` bool or 0/1: true on real tokens, a contiguous run from position 0 (a row may be empty).
- ``group`` LongTensor ``[B]``: rows with equal values were sampled for the same prompt. Values are arbitrary and the
  rows of a group need not be adjacent.

For token ``t`` of completion ``i`` the process set is (METHOD.md §2)::

    λ(i,t) = { j in group(i) : y_j[0..t] == y_i[0..t] }

How it is computed, exactly, with no Python loop over rows or tokens (``G`` groups of at most ``K`` rows):

1. *Propose* the lexicographic order of the rows of each group: a 64-bit polynomial hash of every prefix (one
   multiply and one ``cumsum``), then a binary search on those hashes gives every pairwise longest common prefix
   (LCP) within a group in ``log2 T`` rounds of ``G·K²`` look-ups, and the token after the LCP orders each pair.
2. *Check* the order exactly: one pass over the sorted tokens compares each row with its neighbour, giving the exact
   neighbour LCPs and whether the order is truly lexicographic. If a hash collision misled it, fall back to an exact
   sort by prefix doubling (dense integer ranks of aligned blocks of 1, 2, 4, … tokens). Hashes never decide a
   result; at worst they cost time.
3. In lexicographic order ``lcp(p, q) = min(lcp of the neighbours between p and q)``, so every pairwise LCP follows
   exactly (a ``cummin`` over ``[G, K, K]``).
4. ``λ(i,t) = { j : lcp(i,j) > t }`` (with ``lcp(i,i) = |y_i|``). Bucketing each row's LCPs (``[B, T+1]``) and one
   ``cumsum`` give ``|λ(i,t)|`` and any sum over a process set (step rewards, PRM-aware advantages).

Cost: ``O(B·T + G·K²·log T)`` time and ``O(B·T + G·K²)`` memory; see ``benchmarks/process_sets.py``.
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
    "prm_advantages",
    "process_blocks",
    "process_set_mean",
    "process_set_sizes",
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
        raise ValueError(
            f"group: expected shape [{ids.shape[0]}] (one id per row of ids), got {tuple(group.shape)}"
        )
    if group.is_floating_point() or group.is_complex():
        raise ValueError(f"group: expected an integer tensor, got dtype {group.dtype}")
    mask = mask.to(ids.device)
    if ids.shape[1] > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError(
            "mask: each row must be one contiguous run of true values starting at position 0 (right padding)"
        )
    return ids.long(), mask, group.to(ids.device).long()


# --------------------------------------------------------------------------------------------------------------
# the core: exact pairwise longest common prefixes within each group


@dataclass
class ProcessBlocks:
    """Every process set of a batch, held as exact pairwise longest common prefixes (LCPs) within groups.

    ``λ(i,t) = { j : lcp(i,j) > t }`` with ``lcp(i,i) = |y_i|``, so any sum over a process set is a suffix sum over
    the LCP values of row ``i``.

    Attributes (``B`` rows, ``T`` positions, ``G`` groups of at most ``K`` rows):
        rows: ``[G, K]`` row index of each group slot, ``-1`` for empty slots (slots in lexicographic order).
        lcp: ``[G, K, K]`` exact LCP of the rows in two slots (``-1`` where either slot is empty).
        mask: ``[B, T]`` bool, the validated mask.
        sizes: ``[B, T]`` long, ``|λ(i,t)|`` (0 on padding).
        duplicates: ``[B]`` long, rows of the group identical to row ``i`` (itself included).
        group_index: ``[B]`` long, dense group index ``0..G-1`` of each row.
        num_groups: ``G``.
        verified_sort: False when the hash-guided order failed its exact check and the exact sort was used.
    """

    rows: Tensor
    lcp: Tensor
    mask: Tensor
    sizes: Tensor
    duplicates: Tensor
    group_index: Tensor
    num_groups: int
    verified_sort: bool = True

    def set_sum(self, values: Tensor) -> Tensor:
        """``[B, T]``: sum of per-row ``values`` ``[B]`` over each process set (0 on padding)."""
        return _set_sum(self.rows, self.lcp, self.mask, values.to(self.mask.device))


def _set_sum(rows: Tensor, lcp: Tensor, mask: Tensor, values: Tensor) -> Tensor:
    B, T = mask.shape
    if B == 0 or T == 0:
        return values.new_zeros(B, T)
    valid = rows >= 0
    pair = valid[:, :, None] & valid[:, None, :]  # [G, K, K]
    row_i = rows[:, :, None].expand_as(lcp)[pair]
    row_j = rows[:, None, :].expand_as(lcp)[pair]
    # bucket[i, L] = Σ values_j over the j with lcp(i,j) == L; the set at t holds exactly the j with lcp > t
    bucket = values.new_zeros(B, T + 1).index_put_((row_i, lcp[pair]), values[row_j], accumulate=True)
    total = bucket.sum(1, keepdim=True)
    return (total - torch.cumsum(bucket, dim=1)[:, :T]).masked_fill(~mask, 0)


def _dense_rank(key: Tensor) -> tuple[Tensor, int]:
    """Dense ranks ``0..R-1`` of ``key`` preserving order, and ``R``."""
    uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
    return inverse.reshape(key.shape), int(uniq.numel())


def _exact_row_ranks(tok: Tensor) -> Tensor:
    """``[B]`` dense lexicographic rank of each row of ``tok`` by prefix doubling (exact; the slow fallback)."""
    B, T = tok.shape
    width = 1 << max(0, (T - 1).bit_length())
    if width > T:  # the same filler on every row leaves the order unchanged
        tok = torch.cat([tok, tok.new_full((B, width - T), int(tok.min()))], dim=1)
    rank, n = _dense_rank(tok)
    while rank.shape[1] > 1:
        pair = rank.view(B, -1, 2)
        rank, n = _dense_rank(pair[..., 0] * n + pair[..., 1])  # n <= B*T, so n*n fits in int64
    return rank[:, 0]


# A polynomial hash of every prefix, wrapping modulo 2^64 (one multiply and one cumsum, no division). It only
# *proposes* an order, which is then checked exactly; a collision costs time (the exact fallback), never accuracy.
_HASH_BASE = 0x9E3779B97F4A7C15 - (1 << 64)  # odd, as a signed int64


def _prefix_hashes(tok: Tensor) -> Tensor:
    """``[B, T]`` int64: a 64-bit hash of each prefix ``tok[i, :t+1]``."""
    T = tok.shape[1]
    powers = torch.ones(1, dtype=torch.long, device=tok.device)
    step = _HASH_BASE
    while powers.numel() < T:  # doubling: log2(T) steps; int64 products wrap, i.e. arithmetic modulo 2^64
        powers = torch.cat([powers, powers * step])
        step = ((step * step + (1 << 63)) % (1 << 64)) - (1 << 63)
    return torch.cumsum((tok + 2) * powers[:T], dim=1)


def _pairwise_candidates(hashes: Tensor, lengths: Tensor, rows: Tensor) -> Tensor:
    """``[G, K, K]`` LCPs by binary search on prefix hashes (exact unless two prefix hashes collide)."""
    T = hashes.shape[1]
    safe = rows.clamp(min=0)
    ri, rj = safe[:, :, None].expand(-1, -1, rows.shape[1]), safe[:, None, :].expand(-1, rows.shape[1], -1)
    lo = torch.zeros_like(ri)
    hi = torch.minimum(lengths[ri], lengths[rj])
    for _ in range(T.bit_length()):  # binary search over the length: log2(T) rounds
        mid = (lo + hi + 1) // 2
        at = (mid - 1).clamp(min=0)
        same = (hashes[ri, at] == hashes[rj, at]) & (mid > lo)
        lo = torch.where(same, mid, lo)
        hi = torch.where(same | (mid <= lo), hi, mid - 1)
    return lo


def _lcp_from_sorted(neighbour: Tensor, lengths: Tensor) -> Tensor:
    """``[G, K, K]`` pairwise LCPs from the LCPs of neighbours ``[G, K-1]`` in lexicographic order.

    In sorted order ``lcp(p, q) = min(neighbour[p..q-1])`` for ``p < q``; ``lengths`` ``[G, K]`` is the diagonal.
    """
    G, K = lengths.shape
    big = torch.iinfo(torch.long).max
    m = torch.arange(K - 1, device=lengths.device)
    p = torch.arange(K, device=lengths.device)
    spans = torch.where(m[None, :] >= p[:, None], neighbour[:, None, :], big)  # [G, K(p), K-1(m)]
    upper = torch.cummin(spans, dim=2).values  # min(neighbour[p..m])
    lcp = torch.full((G, K, K), big, dtype=torch.long, device=lengths.device)
    lcp[:, :, 1:] = upper  # lcp(p, q) for q = m + 1 > p
    lcp = torch.minimum(lcp, lcp.transpose(1, 2))
    eye = torch.eye(K, dtype=torch.bool, device=lengths.device)
    return torch.where(eye, lengths[:, :, None].expand(G, K, K), lcp)


def process_blocks(ids: Tensor, mask: Tensor, group: Tensor) -> ProcessBlocks:
    """Compute every process set of the batch at once. See the module docstring for the algorithm."""
    ids, mask, group = validate_batch(ids, mask, group)
    B, T = ids.shape
    device = ids.device
    group_index, num_groups = _dense_rank(group)
    lengths = mask.sum(1)
    if B == 0 or T == 0:  # nothing to share
        zeros = torch.zeros(B, T, dtype=torch.long, device=device)
        empty = torch.full((num_groups, 0), -1, dtype=torch.long, device=device)
        return ProcessBlocks(
            empty, empty[:, :, None], mask, zeros, torch.ones_like(lengths), group_index, num_groups
        )

    pad = min(int(ids.min()), 0) - 1  # padding sorts before every real token
    tok = torch.where(mask, ids, torch.full_like(ids, pad))

    # group slots [G, K]: rows of each group, by dense group index
    by_group = torch.argsort(group_index, stable=True)
    counts = torch.bincount(group_index, minlength=num_groups)
    K = int(counts.max())
    offsets = torch.cumsum(counts, 0) - counts
    slot = torch.arange(B, device=device) - offsets[group_index[by_group]]
    rows = torch.full((num_groups, K), -1, dtype=torch.long, device=device)
    rows[group_index[by_group], slot] = by_group
    valid = rows >= 0

    # 1. propose the lexicographic order within each group from hash LCPs: rank = number of smaller rows
    cand = _pairwise_candidates(_prefix_hashes(tok), lengths, rows)
    safe = rows.clamp(min=0)
    at = cand.clamp(max=T - 1)
    tok_i = torch.where(cand < T, tok[safe[:, :, None], at], pad)
    tok_j = torch.where(cand < T, tok[safe[:, None, :], at], pad)
    smaller = (tok_j < tok_i) & valid[:, :, None] & valid[:, None, :]  # [g, i, j]: row j sorts before row i
    rank = smaller.sum(2).masked_fill(~valid, K)
    rows = torch.gather(rows, 1, torch.argsort(rank, dim=1, stable=True))

    # 2. check the order exactly and take exact neighbour LCPs (one pass over the tokens)
    neighbour, ordered = _neighbour_lcp(tok, lengths, rows)
    verified = ordered
    if not ordered:  # a hash collision misled the order: fall back to the exact sort
        rank = _exact_row_ranks(tok)
        key = torch.where(rows >= 0, rank[rows.clamp(min=0)], torch.iinfo(torch.long).max)
        rows = torch.gather(rows, 1, torch.argsort(key, dim=1, stable=True))
        neighbour, ordered = _neighbour_lcp(tok, lengths, rows)
        assert ordered, "exact sort failed its own check"

    # 3. all pairwise LCPs follow exactly from the sorted neighbours
    valid = rows >= 0
    slot_len = torch.where(valid, lengths[rows.clamp(min=0)], 0)
    lcp = _lcp_from_sorted(neighbour, slot_len).masked_fill(~(valid[:, :, None] & valid[:, None, :]), -1)

    # identical rows: the LCP equals both lengths
    same = (lcp == slot_len[:, :, None]) & (lcp == slot_len[:, None, :])
    duplicates = torch.zeros(B, dtype=torch.long, device=device)
    duplicates[rows[valid]] = same.sum(2)[valid]
    ones = torch.ones(B, dtype=torch.long, device=device)
    sizes = _set_sum(rows, lcp, mask, ones)
    return ProcessBlocks(rows, lcp, mask, sizes, duplicates, group_index, num_groups, verified)


def _neighbour_lcp(tok: Tensor, lengths: Tensor, rows: Tensor) -> tuple[Tensor, bool]:
    """Exact LCPs ``[G, K-1]`` of neighbouring slots, and whether every group is in lexicographic order."""
    G, K = rows.shape
    T = tok.shape[1]
    neighbour = torch.zeros(G, max(K - 1, 0), dtype=torch.long, device=tok.device)
    if K < 2:
        return neighbour, True
    valid = rows >= 0
    flat = rows[valid]  # every row once, group by group, in slot order
    tok_s = tok[flat]  # one gather of the tokens
    differ = tok_s[1:] != tok_s[:-1]
    any_diff = differ.any(1)
    first = torch.where(any_diff, differ.to(torch.uint8).argmax(1), T)
    at = first.clamp(max=T - 1)[:, None]
    in_order = ~any_diff | (tok_s[:-1].gather(1, at)[:, 0] < tok_s[1:].gather(1, at)[:, 0])
    lcp = torch.minimum(first, torch.minimum(lengths[flat[:-1]], lengths[flat[1:]]))
    # pair p of the flat order links slots (g, s) and (g, s+1) when both are in group g
    pair_valid = valid[:, :-1] & valid[:, 1:]
    pair_flat = (torch.cumsum(valid.flatten(), 0) - 1).view(G, K)[:, :-1]
    neighbour[pair_valid] = lcp[pair_flat[pair_valid]]
    return neighbour, bool(in_order[pair_flat[pair_valid]].all())


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
    group_flat: ``[G]`` bool, the same per group (dense group index, as in :class:`ProcessBlocks`).
    shared_tokens: ``[B]`` long, the row's tokens with ``|λ(i,t)| > 1``: where λ-GRPO's weight ``1/|λ|`` differs
        from GRPO's (a duplicate completion's tokens count; they are shared too).
    lengths: ``[B]`` long, the row's completion tokens.
    """

    path_depth: Tensor
    intermediate_proportion: Tensor
    flat: Tensor
    process_set_size_mean: Tensor
    group_flat: Tensor
    shared_tokens: Tensor
    lengths: Tensor

    def summary(self, prefix: str = "prm/") -> dict[str, float]:
        """Batch means as slash-scoped metrics; ``flat_fraction`` counts groups, ``shared_token_fraction`` (tokens
        with ``|λ| > 1`` over all completion tokens) counts tokens, the rest count non-empty rows."""
        nonempty = self.path_depth > 0
        n = max(int(nonempty.sum()), 1)
        return {
            f"{prefix}flat_fraction": float(self.group_flat.float().mean())
            if self.group_flat.numel()
            else 0.0,
            f"{prefix}path_depth_mean": float(self.path_depth[nonempty].float().sum()) / n,
            f"{prefix}intermediate_proportion_mean": float(self.intermediate_proportion[nonempty].sum()) / n,
            f"{prefix}process_set_size_mean": float(self.process_set_size_mean[nonempty].sum()) / n,
            f"{prefix}shared_token_fraction": float(self.shared_tokens.sum())
            / max(int(self.lengths.sum()), 1),
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
    group_flat = group_max <= 1
    shared = ((sizes > 1) & m).sum(1)
    return TreeStats(
        path_depth, intermediate, group_flat[blocks.group_index], size_mean, group_flat, shared, lengths
    )


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
            group = torch.zeros(
                ids.shape[0] if isinstance(ids, Tensor) and ids.dim() == 2 else 0, dtype=torch.long
            )
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
        self.sequences = [row[:n].tolist() for row, n in zip(ids.cpu(), self.lengths)]
        self.root = ProcessTreeNode(
            0,
            0,
            [],
            list(range(B)),
            self._mean(range(B), self.rewards),
            self._mean(range(B), self.advantages),
            depth=0,
        )
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
                pos,
                end,
                self.sequences[members[0]][pos:end],
                members,
                self._mean(members, self.rewards),
                self._mean(members, self.advantages),
                depth=parent.depth + 1,
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
