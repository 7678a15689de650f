"""Tree packing: the process tree as a compute plan (every process step computed once).

The k completions of a group share their prompt and often long prefixes. Tokens in one process set have the same
context, hence the same hidden states and log-probabilities, so one forward pass over the group's *unique* tokens (the
prompt followed by the trie of its completions) with a tree-shaped attention mask gives exactly the per-token
log-probs of the padded batch; gathering them back to ``[B, T]`` by index makes autograd sum the gradients of shared
tokens. See docs/tree_packing.md.

Layout (one packed row holds one or several whole groups, then padding)::

    [prompt of group a][trie of group a's completions, DFS preorder][prompt of b][trie of b] ... [padding]

- DFS preorder makes every subtree contiguous, so "key ``k`` is an ancestor-or-self of query ``q``" is
  ``k <= q < end[k]`` (``end[k]`` is one past the last token of ``k``'s subtree; a prompt token's subtree is its whole
  group; a padding token has ``end[k] = k + 1`` and attends to itself only, since a fully masked row gives NaN).
- Position ids are the depth from the start of the prompt, which is the position the token has in its own sequence.
  With rotary embeddings only position *differences* enter attention, so this equals the left-padded batch.
- The trie comes from :func:`lgrpo.process.process_blocks` (no second trie): in lexicographic order each completion
  adds exactly the tokens after its longest common prefix (LCP) with the previous one, and those suffixes, concatenated
  in that order, are the trie's nodes in DFS preorder.
- A branching node has several next tokens, so the LM head is not run "one label per position": the logits of every
  *context* position are computed once (``logits_to_keep``), and token ``(i, t)`` gathers its log-prob from the row of
  its parent node (the last prompt token for ``t = 0``).

Two layouts (``mode``): ``"tree"`` (the prompt once, then the trie: every shared completion prefix once too) and
``"prompt_once"`` (the prompt once per group, then each completion in full: ``G·(P + R)`` tokens become ``P + G·R``,
the packing of verl's PrefixGrouper and similar). A prompt-once layout *is* the tree layout with no completion
sharing (every pairwise LCP taken as 0), so both come from the same code and carry the same exactness.
:func:`choose_packing` picks among padded, prompt-once and tree per call (given the tree layout, as ``"auto"`` does, it picks padded or tree).

Exact for decoder-only models with 1D rotary positions and eager/SDPA/flex attention (:func:`check_packable`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lgrpo.process import process_blocks, validate_batch

__all__ = [
    "PACKING_MODES",
    "PackedBatch",
    "check_packable",
    "choose_packing",
    "mask_bytes",
    "model_attention_mask",
    "pack_groups",
    "packed_logps",
    "packing_cost",
    "packing_pays",
    "padded_cost",
    "pair_cost",
]

PACKABLE_ATTENTION = ("eager", "sdpa", "flex_attention")
PACKING_MODES = ("tree", "prompt_once")  # layouts of pack_groups; "padded" is the unpacked batch


@dataclass
class PackedBatch:
    """Whole groups laid out as trees in ``R`` packed rows of ``N`` tokens, and the map back to ``[B, T]``.

    Attributes:
        input_ids: ``[R, N]`` long, the unique tokens (padding: ``pad_id``).
        position_ids: ``[R, N]`` long, depth from the start of the prompt (padding: 0).
        end: ``[R, N]`` long, key ``k`` is visible to query ``q`` iff ``k <= q < end[k]`` (padding: ``k + 1``).
        token_index: ``[B, T]`` long, flat index ``r·N + col`` of completion token ``(i, t)`` (0 on padding).
        context_index: ``[B, T]`` long, flat index of the position whose hidden state predicts token ``(i, t)``:
            its parent node, or the group's last prompt token for ``t = 0`` (0 on padding).
        mask: ``[B, T]`` bool, the completion mask.
        group: ``[B]`` long, dense tree index (rows with identical prompts; a group may be split, see ``pair_cost``).
        packed_tokens: real (non-padding) tokens in the packed rows: prompts once per tree + its completion nodes
            (unique completion tokens for ``"tree"``, all of them for ``"prompt_once"``).
        unpacked_tokens: prompt + completion tokens of every row, as a padded batch holds them (padding excluded).
    """

    input_ids: Tensor
    position_ids: Tensor
    end: Tensor
    token_index: Tensor
    context_index: Tensor
    mask: Tensor
    group: Tensor
    packed_tokens: int
    unpacked_tokens: int
    mode: str = "tree"

    @property
    def unique_token_fraction(self) -> float:
        """``packed_tokens / unpacked_tokens``: the share of tokens the model still runs over (1 = no saving)."""
        return self.packed_tokens / max(self.unpacked_tokens, 1)

    def allowed(self, sliding_window: int | None = None) -> Tensor:
        """``[R, 1, N, N]`` bool, true where query ``q`` may attend to key ``k`` (ancestor-or-self, within the window).

        The window counts positions along the token's own sequence (depth), as the padded batch does:
        ``depth[q] - depth[k] < sliding_window``.
        """
        N = self.input_ids.shape[1]
        col = torch.arange(N, device=self.input_ids.device)
        q, k = col[None, :, None], col[None, None, :]
        ok = (k <= q) & (q < self.end[:, None, :])  # [R, N(q), N(k)]
        if sliding_window is not None:
            ok = ok & (self.position_ids[:, :, None] - self.position_ids[:, None, :] < sliding_window)
        return ok[:, None]

    def attention_mask(self, dtype: torch.dtype = torch.bool, sliding_window: int | None = None) -> Tensor:
        """The dense 4D mask ``[R, 1, N, N]``: bool (true = attend), or additive float (0 / dtype's minimum).

        Eager attention adds the mask to the scores, so it needs the additive float form; SDPA takes either.
        """
        ok = self.allowed(sliding_window)
        if dtype == torch.bool:
            return ok
        return torch.zeros(ok.shape, dtype=dtype, device=ok.device).masked_fill_(~ok, torch.finfo(dtype).min)

    def block_mask(self, sliding_window: int | None = None) -> Any:
        """The same mask as a flex-attention ``BlockMask`` (O(N) description; the mask is never materialised)."""
        from torch.nn.attention.flex_attention import create_block_mask

        end, pos = self.end, self.position_ids

        def tree(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
            ok = (kv <= q) & (q < end[b, kv])
            if sliding_window is not None:
                ok = ok & (pos[b, q] - pos[b, kv] < sliding_window)
            return ok

        R, N = self.input_ids.shape
        return create_block_mask(tree, B=R, H=None, Q_LEN=N, KV_LEN=N, device=self.input_ids.device)


def _contiguous(mask: Tensor) -> bool:
    """Whether every row of ``mask`` ``[B, L]`` bool is one run of true values (or empty)."""
    starts = mask[:, 1:] & ~mask[:, :-1]
    return bool((starts.sum(1) + mask[:, 0].long() <= 1).all())


def _slots(
    ids: Tensor, cmask: Tensor, clen: Tensor, group: Tensor, share: bool = True
) -> tuple[Any, Tensor, Tensor, Tensor]:
    """Process blocks of ``group``, their pairwise LCPs ``[G, K, K]`` and, per slot ``[G, K]`` (lexicographic
    order), the first new token ``start`` and the number of new tokens ``new``: each slot adds the tokens after its
    LCP with the previous slot, and those suffixes, slot after slot, are the trie's nodes in DFS preorder.
    ``share=False`` (prompt-once): every LCP between two completions is taken as 0, so each adds all its tokens."""
    blocks = process_blocks(ids, cmask, group)
    rows, lcp = blocks.rows, blocks.lcp
    if not share:
        lcp = lcp.clamp(max=0)  # -1 (empty slot) stays
    G, K = rows.shape
    valid = rows >= 0
    slot_len = torch.where(valid, clen[rows.clamp(min=0)], 0)
    start = torch.zeros(G, K, dtype=torch.long, device=ids.device)
    if K > 1:
        start[:, 1:] = torch.diagonal(lcp, offset=1, dim1=1, dim2=2).clamp(min=0)
    new = (slot_len - start).clamp(min=0).masked_fill(~valid, 0)
    return blocks, lcp, start, new


def _split_groups(
    blocks: Any, new: Tensor, plen: Tensor, clen: Tensor, group: Tensor, pair_cost: float
) -> Tensor:
    """``[B]`` tree ids: each group split into runs of consecutive completions (lexicographic order, so a run keeps
    most of its sharing) where that lowers ``tokens + pair_cost · tokens²`` summed over the trees.

    A dense attention row pays for every (query, key) pair, masked or not; a large group in one row can cost more
    than its shared tokens save. Candidate runs: the greedy cut at capacities ``S, S/2, S/4, …`` and at the longest
    prompt + completion (``S`` the group's packed size). A loop over groups and their rows (not tokens).
    """
    rows = blocks.rows.tolist()
    news, plens, clens = new.tolist(), plen.tolist(), clen.tolist()
    tree = group.clone()
    next_id = blocks.num_groups
    for g, slots in enumerate(rows):
        members = [(r, nw) for r, nw in zip(slots, news[g]) if r >= 0]
        if len(members) < 2:
            continue
        P = plens[members[0][0]]
        S = P + sum(nw for _, nw in members)
        floor = P + max(clens[r] for r, _ in members)
        best, best_cost = None, S + pair_cost * S * S
        caps, cap = [], S / 2
        while cap > floor:
            caps.append(cap)
            cap /= 2
        for cap in [*caps, floor]:  # down to one completion per tree (the padded batch)
            sizes, cuts, cur = [], [], P
            for i, (r, nw) in enumerate(members):
                if i and cur + nw > cap:  # start a new tree here: it needs the whole completion
                    sizes.append(cur)
                    cuts.append(i)
                    cur = P + clens[r]
                else:
                    cur += nw
            sizes.append(cur)
            cost = sum(x + pair_cost * x * x for x in sizes)
            if cost < best_cost:
                best, best_cost = cuts, cost
        if best:
            for c, begin in enumerate(best):
                end = best[c + 1] if c + 1 < len(best) else len(members)
                for r, _ in members[begin:end]:
                    tree[r] = next_id
                next_id += 1
    return torch.unique(tree, return_inverse=True)[1]


def pack_groups(
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    *,
    mode: str = "tree",
    row_tokens: int | None = None,
    pair_cost: float | None = None,
    pad_id: int = 0,
) -> PackedBatch:
    """Lay out a batch of prompt + completion rows as trees, rows with identical prompts forming one group.

    Args:
        prompt_ids: ``[B, P]`` long, prompts (any padding side; the real tokens one contiguous run per row).
        prompt_mask: ``[B, P]`` bool or 0/1. Rows with the same real prompt tokens share one tree.
        completion_ids: ``[B, T]`` long, completions, right-padded.
        completion_mask: ``[B, T]`` bool or 0/1, one contiguous run from position 0 per row.
        mode: ``"tree"``: the prompt, then the trie of the completions (every shared prefix once);
            ``"prompt_once"``: the prompt, then every completion in full (a tree whose only shared node is the
            prompt: ``P + Σ L_i`` tokens per group).
        row_tokens: capacity of a packed row; groups are packed whole, first-fit decreasing, into rows that hold
            at most ``max(row_tokens, largest group)`` tokens. ``None``: the capacity is the largest group's size.
            The packed rows are as wide as the fullest row (``N`` = its token count), not padded to the capacity.
        pair_cost: the cost of one attended (query, key) pair relative to one token (see :func:`pair_cost`); when
            given, a group is split into several trees of consecutive completions where that is predicted cheaper
            (dense attention computes every pair of a row). ``None``/0: every group is one tree.
        pad_id: token id of the padding columns.

    Returns a :class:`PackedBatch`. Cost: :func:`lgrpo.process.process_blocks` (twice when groups are split) plus
    ``O(B·T + G·K²)``; Python loops over groups and rows (never tokens) split groups and assign them to rows.

    Raises ``ValueError`` naming the argument on bad shapes or masks, or when a row with completion tokens has an
    empty prompt (its first token would have no context).
    """
    if mode not in PACKING_MODES:
        raise ValueError(f"mode: expected one of {PACKING_MODES}, got {mode!r}")
    share = mode == "tree"
    completion_ids, cmask, _ = validate_batch(
        completion_ids, completion_mask, torch.zeros(completion_ids.shape[0], dtype=torch.long)
    )
    device = completion_ids.device
    B, T = completion_ids.shape
    if not isinstance(prompt_ids, Tensor) or prompt_ids.dim() != 2 or prompt_ids.shape[0] != B:
        raise ValueError(f"prompt_ids: expected shape [{B}, P], got {getattr(prompt_ids, 'shape', None)}")
    if not isinstance(prompt_mask, Tensor) or prompt_mask.shape != prompt_ids.shape:
        raise ValueError(
            f"prompt_mask: expected shape {tuple(prompt_ids.shape)}, got {getattr(prompt_mask, 'shape', None)}"
        )
    pmask = prompt_mask.to(device) != 0
    prompt_ids = prompt_ids.to(device).long()
    if not _contiguous(pmask):
        raise ValueError("prompt_mask: the real prompt tokens of each row must be one contiguous run")
    plen = pmask.sum(1)
    clen = cmask.sum(1)
    if bool(((plen == 0) & (clen > 0)).any()):
        raise ValueError(
            "prompt_mask: a row with completion tokens has an empty prompt (nothing to condition on)"
        )

    # groups = rows with identical real prompt tokens; the representative row of a group holds its prompt
    key = torch.where(pmask, prompt_ids, torch.full_like(prompt_ids, -1))
    _, group = torch.unique(key, dim=0, return_inverse=True)
    group = group.reshape(B)
    blocks, lcp, start, new = _slots(completion_ids, cmask, clen, group, share)
    if pair_cost and B:
        group = _split_groups(blocks, new, plen, clen, group, float(pair_cost))
        if int(group.max()) + 1 > blocks.num_groups:
            blocks, lcp, start, new = _slots(completion_ids, cmask, clen, group, share)
    G = blocks.num_groups
    rows = blocks.rows  # [G, K] slots in lexicographic order; lcp [G, K, K]
    K = rows.shape[1]
    valid = rows >= 0
    base = torch.cumsum(new, 1) - new  # [G, K] first node of each slot's new tokens (group-local)
    unique = new.sum(1)  # [G] unique completion tokens

    # slot of every row, and per (row, t) the first and the last slot passing through the node (i, t):
    # lcp(j', j) does not increase as j' moves away from j, so both are counts of LCPs <= t on either side
    slot = torch.zeros(B, dtype=torch.long, device=device)
    slot[rows[valid]] = torch.arange(K, device=device).expand(G, K)[valid]
    j = torch.arange(K, device=device)
    pair = valid[:, :, None] & valid[:, None, :]
    owner_row = rows[:, None, :].expand(G, K, K)  # [g, j', j]: the row in slot j
    lcp_c = lcp.clamp(min=0, max=T)
    before = pair & (j[:, None] < j[None, :])  # j' < j
    after = pair & (j[:, None] > j[None, :])  # j' > j
    count_before = torch.zeros(B, T + 1, dtype=torch.long, device=device)
    count_before.index_put_(
        (owner_row[before], lcp_c[before]), torch.ones_like(lcp_c[before]), accumulate=True
    )
    count_after = torch.zeros(B, T + 1, dtype=torch.long, device=device)
    count_after.index_put_((owner_row[after], lcp_c[after]), torch.ones_like(lcp_c[after]), accumulate=True)
    first = torch.cumsum(count_before, 1)[:, :T]  # slots before j with lcp <= t: exactly the slots 0..first-1
    n_after = count_after.sum(1, keepdim=True)
    last = slot[:, None] + (n_after - torch.cumsum(count_after, 1)[:, :T])  # + slots after j with lcp > t
    g = group[:, None].expand(B, T)
    tpos = torch.arange(T, device=device)[None, :].expand(B, T)
    first, last = first.clamp(max=K - 1), last.clamp(max=K - 1)  # padding positions only
    node = base[g, first] + tpos - start[g, first]  # [B, T] group-local node of (i, t)
    node_end = base[g, last] + new[g, last]  # one past its subtree

    # assign whole groups to rows (first-fit decreasing over groups, not tokens)
    rep = torch.full((G,), B, dtype=torch.long, device=device)  # the first row of each group holds its prompt
    rep = rep.scatter_reduce(0, group, torch.arange(B, device=device), reduce="amin")
    gplen = plen[rep]
    size = (gplen + unique).tolist()
    capacity = max(max(size, default=1), int(row_tokens or 0), 1)
    fill: list[int] = []
    row_of, off_of = [0] * G, [0] * G
    for gi in sorted(range(G), key=lambda x: -size[x]):
        r = next((r for r, used in enumerate(fill) if used + size[gi] <= capacity), len(fill))
        if r == len(fill):
            fill.append(0)
        row_of[gi], off_of[gi] = r, fill[r]
        fill[r] += size[gi]
    R, N = max(len(fill), 1), max(max(fill, default=1), 1)
    row_g = torch.tensor(row_of, dtype=torch.long, device=device)
    off_g = torch.tensor(off_of, dtype=torch.long, device=device)

    input_ids = torch.full((R, N), pad_id, dtype=torch.long, device=device)
    position_ids = torch.zeros(R, N, dtype=torch.long, device=device)
    end = torch.arange(1, N + 1, device=device).repeat(R, 1)

    # prompts: the representative row's real tokens, depth 0.., visible to the whole group
    pm = pmask[rep]  # [G, P]
    p_rank = torch.cumsum(pm.long(), 1) - 1
    gg = torch.arange(G, device=device)[:, None].expand_as(pm)
    p_row, p_col = row_g[gg][pm], (off_g[:, None] + p_rank)[pm]
    input_ids[p_row, p_col] = prompt_ids[rep][pm]
    position_ids[p_row, p_col] = p_rank[pm]
    end[p_row, p_col] = (off_g + gplen + unique)[gg][pm]

    # completion nodes (shared nodes are written once per member, with equal values)
    c_row = row_g[g]
    c_col = off_g[g] + gplen[g] + node
    input_ids[c_row[cmask], c_col[cmask]] = completion_ids[cmask]
    position_ids[c_row[cmask], c_col[cmask]] = (gplen[g] + tpos)[cmask]
    end[c_row[cmask], c_col[cmask]] = (off_g[g] + gplen[g] + node_end)[cmask]

    token_index = torch.where(cmask, c_row * N + c_col, 0)
    parent = torch.cat([(off_g + gplen - 1)[group][:, None].expand(B, 1), c_col[:, :-1]], dim=1)
    context_index = torch.where(cmask, c_row * N + parent, 0)
    return PackedBatch(
        input_ids=input_ids,
        position_ids=position_ids,
        end=end,
        token_index=token_index,
        context_index=context_index,
        mask=cmask,
        group=group,
        packed_tokens=int(gplen.sum() + unique.sum()),
        unpacked_tokens=int(plen.sum() + clen.sum()),
        mode=mode,
    )


# ----------------------------------------------------------------------------------------------------------------
# running a model on a packed batch


def _inner_model(model: Any) -> Any:
    """``model`` without the wrappers accelerate puts around it for several processes (DDP, FSDP, DeepSpeed;
    ``torch.compile``), which do not carry the model's ``config``: for reading the config only. The forward pass
    must still go through the wrapper, which synchronises the gradients."""
    try:
        from accelerate.utils import extract_model_from_parallel
    except ImportError:  # no accelerate: only torch's own wrappers can be around it
        while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        return model
    return extract_model_from_parallel(model)


def _config(model: Any) -> Any:
    """The model's config, read through any DDP/FSDP/DeepSpeed wrapper."""
    return _inner_model(model).config


def _text_config(model: Any) -> Any:
    config = _config(model)
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def check_packable(model: Any) -> None:
    """Raise ``ValueError`` saying why ``model`` cannot be run packed *exactly*; return quietly when it can.

    Packing needs: a text-only decoder (no vision inputs), 1D rotary positions (depth position ids then give the same
    attention as the padded batch; 3D/multimodal rotary and learned absolute positions do not), full or sliding-window
    attention layers only, and an attention implementation that takes an arbitrary mask (eager, sdpa,
    flex_attention; not flash attention).
    """
    config = _config(model)
    text = _text_config(model)
    name = getattr(config, "model_type", type(model).__name__)
    if text is not config or getattr(config, "vision_config", None) is not None:
        raise ValueError(f"tree packing: {name} is multimodal; only text-only decoders can be packed exactly")
    rope = getattr(text, "rope_parameters", None) or getattr(text, "rope_scaling", None) or {}
    flat = (
        rope.values()
        if isinstance(rope, dict) and all(isinstance(v, dict) for v in rope.values())
        else [rope]
    )
    if any(isinstance(r, dict) and "mrope_section" in r for r in flat):
        raise ValueError(
            f"tree packing: {name} uses 3D (multimodal) rotary positions, which packing cannot reproduce"
        )
    if not rope and getattr(text, "rope_theta", None) is None:
        raise ValueError(
            f"tree packing: {name} has no rotary position embeddings; with learned absolute positions the depth "
            "positions of a packed tree differ from the padded batch's"
        )
    kinds = set(getattr(text, "layer_types", None) or ["full_attention"])
    if not kinds <= {"full_attention", "sliding_attention"}:
        raise ValueError(
            f"tree packing: {name} has attention layers {sorted(kinds)}; only full and sliding are packed"
        )
    attn = getattr(config, "_attn_implementation", None) or "eager"
    if attn not in PACKABLE_ATTENTION:
        raise ValueError(
            f"tree packing: attn_implementation={attn!r} cannot take a tree mask; use one of {PACKABLE_ATTENTION}"
        )


def model_attention_mask(model: Any, packed: PackedBatch) -> Any:
    """The mask argument to pass ``model`` for ``packed``: per the model's attention implementation and layers.

    eager: additive float mask in the model's dtype; sdpa: bool; flex_attention: a ``BlockMask``. Models with
    sliding-window layers (``layer_types``) get the dict ``{"full_attention": M, "sliding_attention": M & window}``;
    a model with a window on every layer (Mistral style) gets the windowed mask. ``model`` may be the DDP, FSDP or
    DeepSpeed wrapper accelerate put around it: the config is read from the model inside.
    """
    text = _text_config(model)
    attn = getattr(_config(model), "_attn_implementation", None) or "eager"
    layer_types = getattr(text, "layer_types", None)
    window = getattr(text, "sliding_window", None)
    dtype = next(model.parameters()).dtype

    def build(w: int | None) -> Any:
        if attn == "flex_attention":
            return packed.block_mask(w)
        return packed.attention_mask(dtype if attn == "eager" else torch.bool, w)

    if layer_types and "sliding_attention" in layer_types:
        return {"full_attention": build(None), "sliding_attention": build(window)}
    return build(window if not layer_types else None)


def packed_logps(
    model: Any,
    packed: PackedBatch,
    completion_ids: Tensor,
    *,
    temperature: float = 1.0,
    compute_entropy: bool = False,
    mask_arg: Any = None,
) -> tuple[Tensor, Tensor | None]:
    """Per-token log-probs (and entropies) of the completions, from one forward pass over the packed rows.

    Args:
        model: a causal LM, called as ``model(...)``: pass the model the trainer runs (PEFT, TRL-patched, or the
            DDP/FSDP/DeepSpeed wrapper that synchronises gradients across processes), never the model unwrapped
            from it; its config is read through those wrappers (:func:`model_attention_mask`).
        packed: from :func:`pack_groups` on the same completions.
        completion_ids: ``[B, T]`` long, the completions that were packed.
        temperature: logits are divided by it before the softmax (as TRL scores them).
        compute_entropy: also return the entropy of each token's next-token distribution (differentiable).
        mask_arg: the attention mask to pass; default :func:`model_attention_mask`.

    Returns ``logp`` ``[B, T]`` float32 (differentiable; 0 on padding) and ``entropy`` ``[B, T]`` or ``None``.
    """
    R, N = packed.input_ids.shape
    cmask = packed.mask
    ctx_col = packed.context_index % N
    keep = torch.unique(ctx_col[cmask]) if bool(cmask.any()) else ctx_col.new_zeros(1)  # [U] sorted columns
    if mask_arg is None:
        mask_arg = model_attention_mask(model, packed)
    out = model(
        input_ids=packed.input_ids,
        attention_mask=mask_arg,
        position_ids=packed.position_ids,
        use_cache=False,
        logits_to_keep=keep,
    )
    logits = (
        out.logits.float()
    )  # [R, U, V]: the hidden state of every context position through the head, once
    if temperature != 1.0:
        logits = logits / temperature
    U, V = logits.shape[1], logits.shape[2]
    logsm = torch.log_softmax(logits.reshape(R * U, V), dim=-1)
    ctx = (packed.context_index // N) * U + torch.searchsorted(keep, ctx_col)  # [B, T] row of logsm
    ctx = torch.where(cmask, ctx, 0)
    tok = torch.where(cmask, completion_ids.to(ctx.device), 0)
    logp = logsm[ctx, tok].masked_fill(~cmask, 0.0)  # shared nodes are gathered by every member: grads add up
    entropy = None
    if compute_entropy:  # differentiable too (an entropy bonus); once per context position
        ent = -(logsm.exp() * logsm).sum(-1)  # [R·U]
        entropy = ent[ctx].masked_fill(~cmask, 0.0)
    return logp, entropy


def _flops(model: Any) -> tuple[float, float, float]:
    """A rough FLOP model of one forward pass: per token, per attended (query, key) pair, per scored token (head).

    Per layer ``8d² + 6d·d_ff`` per token (attention projections and a gated MLP) and ``4d`` per pair (scores and
    values); the head ``2d·V`` per scored token. Sizes are read from the model's config.
    """
    text = _text_config(model)
    d = int(getattr(text, "hidden_size", 1))
    ff = int(getattr(text, "intermediate_size", 4 * d) or 4 * d)
    layers = int(getattr(text, "num_hidden_layers", 1))
    vocab = int(getattr(text, "vocab_size", 1))
    return layers * (8 * d * d + 6 * d * ff), layers * 4 * d, 2 * d * vocab


def pair_cost(model: Any) -> float:
    """The cost of one attended (query, key) pair relative to one token's, for :func:`pack_groups`' ``pair_cost``.

    0 for flex attention, whose ``BlockMask`` skips masked blocks; otherwise dense attention pays for every pair.
    """
    if (getattr(_config(model), "_attn_implementation", None) or "eager") == "flex_attention":
        return 0.0
    per_token, per_pair, _ = _flops(model)
    return per_pair / per_token


def packing_cost(packed: PackedBatch, model: Any) -> float:
    """Predicted FLOPs of one forward pass over ``packed`` (:func:`_flops`): tokens, attended pairs and head rows.

    Dense attention (eager, SDPA) pays for every (query, key) pair of a row, masked or not; flex attention's
    ``BlockMask`` skips masked blocks, counted here as a causal row's pairs (``N²/2``). The LM head runs once per
    distinct context position (:func:`packed_logps`).
    """
    per_token, per_pair, per_head = _flops(model)
    R, N = packed.input_ids.shape
    attn = getattr(_config(model), "_attn_implementation", None) or "eager"
    pairs = R * N * (N + 1) / 2 if attn == "flex_attention" else R * N * N
    heads = int(torch.unique(packed.context_index[packed.mask]).numel())
    return R * N * per_token + pairs * per_pair + heads * per_head


def mask_bytes(packed: PackedBatch, model: Any) -> int:
    """Bytes of the dense mask :func:`model_attention_mask` builds for ``packed``: ``R·N²`` (bool, SDPA), ``4·R·N²``
    (float, eager), 0 (flex attention's ``BlockMask``)."""
    attn = getattr(_config(model), "_attn_implementation", None) or "eager"
    R, N = packed.input_ids.shape
    return 0 if attn == "flex_attention" else R * N * N * (1 if attn == "sdpa" else 4)


def padded_cost(padded_shape: tuple[int, int], completion_length: int, model: Any) -> float:
    """Predicted FLOPs of one forward pass over the padded batch of ``padded_shape = (rows, prompt + completion
    length)``, whose LM head runs over the last ``completion_length + 1`` positions of every row (as TRL's)."""
    per_token, per_pair, per_head = _flops(model)
    B, L = padded_shape
    return B * L * per_token + B * L * L * per_pair + B * (completion_length + 1) * per_head


def choose_packing(
    layouts: dict[str, PackedBatch],
    padded_shape: tuple[int, int],
    model: Any,
    *,
    mask_budget_bytes: float = 2**30,
    margin: float = 0.9,
    min_saving_flops: float = 5e8,
) -> str:
    """The predicted cheapest of the padded batch and the given layouts: ``"padded"`` or a key of ``layouts``.

    ``layouts`` maps a mode (``"tree"``, ``"prompt_once"``) to its :func:`pack_groups` result for the same rows;
    ``padded_shape`` is ``(rows, prompt + completion length)`` of the padded batch. Costs from
    :func:`packing_cost` and :func:`padded_cost`. A layout is eligible when its dense mask fits
    ``mask_budget_bytes`` (``R·N²`` bytes for SDPA, 4× for eager's float mask, none for flex attention); the
    cheapest eligible one is chosen when its estimate is below ``margin`` times the padded one and saves at least
    ``min_saving_flops`` (laying out the rows costs milliseconds a call, which a tiny model's pass does not win
    back); otherwise ``"padded"``. Between layouts the lower estimate wins (the tree on a tie).
    """
    some = next(iter(layouts.values()), None)
    if some is None:
        return "padded"
    T = some.mask.shape[1]
    padded = padded_cost(padded_shape, T, model)
    best, best_cost = "padded", math.inf
    for mode in sorted(layouts, key=lambda m: m != "tree"):
        packed = layouts[mode]
        cost = packing_cost(packed, model)
        if mask_bytes(packed, model) <= mask_budget_bytes and math.isfinite(cost) and cost < best_cost:
            best, best_cost = mode, cost
    if best_cost < margin * padded and padded - best_cost >= min_saving_flops:
        return best
    return "padded"


def packing_pays(
    packed: PackedBatch,
    padded_shape: tuple[int, int],
    model: Any,
    *,
    mask_budget_bytes: float = 2**30,
    margin: float = 0.9,
    min_saving_flops: float = 5e8,
) -> bool:
    """Whether ``packed`` is predicted cheaper than the padded batch and its dense mask fits the budget:
    :func:`choose_packing` with this one layout."""
    kw = dict(mask_budget_bytes=mask_budget_bytes, margin=margin, min_saving_flops=min_saving_flops)
    return choose_packing({packed.mode: packed}, padded_shape, model, **kw) != "padded"
