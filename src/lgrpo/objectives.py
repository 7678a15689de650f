"""The GRPO-family objective with uniform (GRPO) or process-set (λ-GRPO) token weights.

One implementation, read top to bottom (METHOD.md §1, §4, §6):

    a_i      = (r_i − mean_group(r)) / (std_group(r) + 1e-4), 0 if the group's r are all equal   group_advantages
    w_it     = |λ(i,t)|^(−α)            α = 0: GRPO,  α = 1: λ-GRPO                lambda_weights
    P_it     = exp(logp_it − old_logp_it)
    D_it     = exp(ref − logp) − (ref − logp) − 1                                    (k3 estimate)
    ℓ_it     = −( min(P_it·A_it, clip(P_it, 1−ε_low, 1+ε_high)·A_it) − β·D_it ) · w_it
    L        = aggregate(ℓ, mask)      grpo | bnpo | dapo | dr_grpo                  policy_loss

The weights multiply the per-token loss; the token counts in the denominators are never weighted.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lgrpo.process import ProcessBlocks, process_set_sizes

__all__ = [
    "ADVANTAGE_EPS",
    "LOSS_TYPES",
    "SCALES",
    "constant_groups",
    "group_advantages",
    "lambda_weights",
    "policy_loss",
]

ADVANTAGE_EPS = 1e-4
LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")
SCALES = ("group", "batch", "none")


def constant_groups(rewards: Tensor, group: Tensor) -> Tensor:
    """BoolTensor ``[B]``: true on the rows of groups whose scorable (non-NaN) rewards are all exactly equal.

    Such a group carries no learning signal, but ``(r − mean) / (std + eps)`` in floating point need not be 0 for it
    (eight float32 rewards of 0.2 leave −1.49e-4 with eps 1e-4). A group with fewer than two scorable rewards counts
    as constant too. ``rewards``: ``[B]`` float; ``group``: ``[B]`` integer group ids (arbitrary values, rows need not
    be adjacent). Equality is exact: rewards that differ in their last bit are not equal.
    """
    if not rewards.is_floating_point():
        rewards = rewards.float()
    _, gi = torch.unique(group.to(rewards.device), return_inverse=True)
    G = int(gi.max()) + 1 if gi.numel() else 0
    valid = ~torch.isnan(rewards)
    hi = torch.full((G,), -math.inf, dtype=rewards.dtype, device=rewards.device)
    lo = torch.full((G,), math.inf, dtype=rewards.dtype, device=rewards.device)
    hi = hi.scatter_reduce(0, gi[valid], rewards[valid], "amax")
    lo = lo.scatter_reduce(0, gi[valid], rewards[valid], "amin")
    return ~(hi > lo)[gi]  # a group with no scorable reward has hi = −inf < lo = inf


def group_advantages(rewards: Tensor, group: Tensor, scale: str = "group") -> Tensor:
    """GRPO advantages ``a_i = (r_i − group mean) / (std + 1e-4)``: ``[B]`` (METHOD.md §1).

    Args:
        rewards: ``[B]`` outcome rewards, any real or integer dtype. NaN marks an unscorable completion: it is left
            out of its group's mean and std and gets advantage 0 (so it neither pushes nor pulls), as TRL does for
            rewards no function scored.
        group: ``[B]`` group ids (arbitrary values, rows need not be adjacent).
        scale: ``"group"`` divides by the group's unbiased std, ``"batch"`` by the whole batch's (TRL's
            ``scale_rewards="batch"``), ``"none"`` does not divide (Dr. GRPO).

    Returns:
        ``[B]`` in float64 for float64 rewards, else float32: the arithmetic is done in at least float32, so
        bfloat16 or float16 rewards are not averaged in half precision.

    A group whose scorable rewards are all equal (:func:`constant_groups`), including a group with fewer than two
    scorable rewards, has advantage exactly 0, whatever ``scale``.
    """
    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {SCALES}, got {scale!r}")
    if not isinstance(rewards, Tensor):
        rewards = torch.as_tensor(rewards)
    if rewards.dim() != 1:
        raise ValueError(f"rewards: expected shape [B], got {tuple(rewards.shape)}")
    if not isinstance(group, Tensor) or group.shape != rewards.shape:
        shape = tuple(group.shape) if isinstance(group, Tensor) else type(group).__name__
        raise ValueError(
            f"group: expected a tensor of shape {tuple(rewards.shape)} (same as rewards), got {shape}"
        )
    if group.is_floating_point():
        raise ValueError(f"group: expected an integer tensor, got dtype {group.dtype}")
    r = rewards.to(torch.float64 if rewards.dtype == torch.float64 else torch.float32)
    valid = ~torch.isnan(r)
    r0 = torch.where(valid, r, torch.zeros_like(r))
    _, gi = torch.unique(group.to(r.device), return_inverse=True)
    G = int(gi.max()) + 1 if gi.numel() else 0

    count = torch.zeros(G, dtype=r.dtype, device=r.device).index_add_(0, gi, valid.to(r.dtype))
    mean = torch.zeros(G, dtype=r.dtype, device=r.device).index_add_(0, gi, r0) / count.clamp(min=1)
    centred = torch.where(valid, r - mean[gi], torch.zeros_like(r))
    if scale == "group":
        var = torch.zeros(G, dtype=r.dtype, device=r.device).index_add_(0, gi, centred.square())
        std = (var / (count - 1).clamp(min=1)).sqrt()[gi]
        adv = centred / (std + ADVANTAGE_EPS)
    elif scale == "batch":
        std = r[valid].std() if int(valid.sum()) > 1 else r.new_zeros(())
        adv = centred / (std + ADVANTAGE_EPS)
    else:
        adv = centred
    signal = valid & ~constant_groups(r, group)
    return torch.where(signal, adv, torch.zeros_like(adv))


def lambda_weights(
    ids: Tensor, mask: Tensor, group: Tensor, power: float = 1.0, *, blocks: ProcessBlocks | None = None
) -> Tensor:
    """Per-token weights ``|λ(i,t)|^(−power)``: FloatTensor ``[B, T]``, 0 on padding (METHOD.md §6).

    ``power=0`` gives GRPO's uniform weights, ``power=1`` λ-GRPO's. Pass ``blocks`` (from
    :func:`lgrpo.process.process_blocks` on the same batch) to reuse process sets already computed, e.g. for
    :func:`lgrpo.process.tree_stats`.
    """
    power = float(power)
    if not power >= 0:  # also rejects NaN
        raise ValueError(f"power: expected a non-negative number, got {power}")
    sizes = process_set_sizes(ids, mask, group) if blocks is None else blocks.sizes
    real = sizes > 0
    w = sizes.clamp(min=1).to(torch.float32).pow(-power)
    return torch.where(real, w, torch.zeros_like(w))


def policy_loss(
    logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    old_logp: Tensor | None = None,
    ref_logp: Tensor | None = None,
    weights: Tensor | None = None,
    loss_type: str = "dapo",
    beta: float = 0.0,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    max_completion_length: int | None = None,
    normalizer: float | Tensor | None = None,
) -> Tensor:
    """The clipped GRPO-family loss, optionally weighted per token: a scalar to minimise.

    Args:
        logp: ``[B, T]`` log-probs of the sampled tokens under the current policy (carries the gradient).
        advantages: ``[B]`` (one per completion, GRPO) or ``[B, T]`` (per token, e.g. PRM-aware).
        mask: ``[B, T]`` bool or 0/1, true on the tokens that enter the loss. Unlike the process-set functions it
            need not be one contiguous run: an engine may mask tokens inside a completion (e.g. tool output).
        old_logp: ``[B, T]`` log-probs under the sampling policy; ``None`` means ``logp.detach()`` (μ = 1).
        ref_logp: ``[B, T]`` log-probs under the reference policy; required when ``beta != 0``.
        weights: ``[B, T]`` per-token weights (e.g. :func:`lambda_weights`); ``None`` means uniform.
        loss_type: ``"grpo"``: mean over rows of (row sum / row token count); ``"bnpo"``, ``"dapo"``: total sum /
            total token count; ``"dr_grpo"``: total sum / (B · max_completion_length).
        beta: KL coefficient β.
        epsilon_low, epsilon_high: the clip range ``[1 − ε_low, 1 + ε_high]`` of the probability ratio.
        max_completion_length: for ``dr_grpo``; defaults to ``T``.
        normalizer: overrides the denominator of ``bnpo``/``dapo``/``dr_grpo``, for an engine that splits one
            generation batch into micro-batches (pass the whole batch's token count).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type: expected one of {LOSS_TYPES}, got {loss_type!r}")
    if not isinstance(logp, Tensor) or logp.dim() != 2:
        raise ValueError(f"logp: expected a [B, T] tensor, got {getattr(logp, 'shape', type(logp).__name__)}")
    B, T = logp.shape
    if not isinstance(mask, Tensor) or mask.shape != logp.shape:
        raise ValueError(f"mask: expected shape {(B, T)} (same as logp), got {getattr(mask, 'shape', None)}")
    if not isinstance(advantages, Tensor):
        advantages = torch.as_tensor(advantages, dtype=logp.dtype, device=logp.device)
    if advantages.shape == (B,):
        advantages = advantages[:, None]
    elif advantages.shape != (B, T):
        raise ValueError(f"advantages: expected shape [{B}] or [{B}, {T}], got {tuple(advantages.shape)}")
    for name, t in (("old_logp", old_logp), ("ref_logp", ref_logp), ("weights", weights)):
        if t is not None and (not isinstance(t, Tensor) or t.shape != logp.shape):
            raise ValueError(
                f"{name}: expected shape {(B, T)} (same as logp), got {getattr(t, 'shape', None)}"
            )
    if beta != 0.0 and ref_logp is None:
        raise ValueError("ref_logp: required when beta != 0")
    if epsilon_low < 0 or epsilon_high < 0:
        raise ValueError(
            f"epsilon_low/epsilon_high: expected non-negative values, got {epsilon_low}, {epsilon_high}"
        )
    if max_completion_length is not None and max_completion_length <= 0:
        raise ValueError(f"max_completion_length: expected a positive integer, got {max_completion_length}")
    if mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
        raise ValueError("mask: expected bool or 0/1 values")
    m = mask.to(device=logp.device, dtype=logp.dtype)

    old = logp.detach() if old_logp is None else old_logp
    ratio = torch.exp(logp - old)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    if beta != 0.0:
        delta = ref_logp - logp
        per_token = per_token + beta * (torch.exp(delta) - delta - 1)
    if weights is not None:
        per_token = per_token * weights

    per_token = per_token * m
    if loss_type == "grpo":
        return (per_token.sum(1) / m.sum(1).clamp(min=1)).mean()
    if normalizer is not None:
        denom = torch.as_tensor(normalizer, dtype=logp.dtype, device=logp.device)
    elif loss_type == "dr_grpo":
        denom = torch.tensor(float(B * (max_completion_length or T)), dtype=logp.dtype, device=logp.device)
    else:
        denom = m.sum().clamp(min=1)
    return per_token.sum() / denom
