"""λ-GRPO inside verl 0.9.1: a ``verl.plugins`` entry point, switched on from verl's own config.

    pip install -e '.[verl]'   # from a clone, in an environment of its own (docs/verl.md)
    python -m verl.trainer.main_ppo algorithm.adv_estimator=grpo \\
        +algorithm.lambda_grpo.enable=true +algorithm.lambda_grpo.power=1.0 ...

``import verl`` loads the entry points of the group ``verl.plugins`` (unless ``VERL_USE_EXTERNAL_PLUGINS=none``), in the
driver and in every Ray worker, so importing this module is all the installation there is. verl has no hook for
what λ-GRPO needs (its advantage estimators never see the response tokens, and the actor's KL loss is aggregated
inside ``ppo_loss``), so this module patches verl modules when they are imported, and only for the verl release it
was tested with (:data:`VERL_VERSION`); with any other release it patches nothing and logs a warning. The settings
are checked when a trainer is built; verl's v0 trainer (``trainer.use_v1=false``) is not hooked and refuses the switch.

What changes against stock verl (METHOD.md §6), and where:

1. Driver, ``verl.trainer.ppo.v1.trainer_base.PPOTrainer._compute_advantage`` (the default v1 trainer): after verl
   has computed its GRPO advantages for a training batch (whole groups: every row of each ``uid``), the per-token
   weights ``w = |λ(i,t)|^(−power)`` are computed once over that batch from ``responses``, the response lengths and
   ``uid`` (:func:`lambda_grpo_weights`, i.e. :func:`lgrpo.objectives.lambda_weights`); the advantages become
   ``A·w`` and ``w`` is stored as the batch field ``lambda_weights``. The ``prm/*`` tree statistics go into the
   step's metrics. Because the weights are fixed before the batch is split across data-parallel ranks and
   mini-batches, a group that straddles ranks gets the same weights as on one rank.
2. Actor, ``verl.workers.utils.losses.ppo_loss``: when the micro-batch carries ``lambda_weights`` and
   ``actor.use_kl_loss`` is on, the per-token KL ``kl_penalty(...)`` is multiplied by the same weights before verl
   aggregates it (verl's own ``agg_loss``, whose denominators depend on the mask only).

Why weighting the advantage is exact: for ``w > 0``, every loss mode accepted here computes a per-token loss that is
linear in ``A_it`` within each branch, with branches chosen by the sign of ``A_it`` or by the ratio alone (verl's
``vanilla`` with dual clip, ``gspo``, ``sapo``, ``cispo``, ``gpg``, ``dppo_tv``, ``dppo_kl``), so ``A·w`` gives
``w`` times the per-token loss. ``geo_mean``, ``dro``, ``kl_cov`` and ``clip_cov`` are refused: they combine tokens
before the advantage enters, add unweighted per-sequence terms, or select tokens by ``A`` itself. Any other mode is
refused as untested. The KL penalty *in the reward* (``algorithm.use_kl_in_reward``) is left as verl computes it:
it changes the rewards before the GRPO advantage, not a per-token loss. The entropy bonus is left unweighted.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.abc
import importlib.machinery
import importlib.metadata
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from lgrpo.objectives import constant_groups, lambda_weights
from lgrpo.process import process_blocks, tree_stats

__all__ = [
    "EXACT_LOSS_MODES",
    "REFUSED_LOSS_MODES",
    "SUPPORTED_ADV_ESTIMATORS",
    "VERL_VERSION",
    "LambdaGRPOSettings",
    "check_plugin",
    "install",
    "lambda_grpo_weights",
    "patched_modules",
]

logger = logging.getLogger(__name__)

VERL_VERSION = "0.9.1"  # the release whose code the patches below were read against and tested with
EXACT_LOSS_MODES = ("vanilla", "gspo", "sapo", "cispo", "gpg", "dppo_tv", "dppo_kl")
REFUSED_LOSS_MODES = ("geo_mean", "dro", "kl_cov", "clip_cov")
SUPPORTED_ADV_ESTIMATORS = ("grpo", "grpo_vectorized")
WEIGHTS_FIELD = "lambda_weights"
CONFIG_KEY = "lambda_grpo"  # under verl's `algorithm` config

_TRAINER_MODULE = "verl.trainer.ppo.v1.trainer_base"
_V0_TRAINER_MODULE = "verl.trainer.ppo.ray_trainer"
_LOSSES_MODULE = "verl.workers.utils.losses"


# --------------------------------------------------------------------------------------------------------------
# settings, read from verl's own config


@dataclass(frozen=True)
class LambdaGRPOSettings:
    """``algorithm.lambda_grpo`` of a verl config.

    Args:
        enable: weight the GRPO loss by ``|λ(i,t)|^(−power)`` (λ-GRPO); off means stock verl.
        power: the exponent α of METHOD.md §6 (0: GRPO's uniform weights, 1: λ-GRPO). Non-negative.
        log_prm_stats: log ``prm/flat_fraction``, ``prm/path_depth_mean``, ``prm/intermediate_proportion_mean``,
            ``prm/process_set_size_mean`` and ``prm/shared_token_fraction`` every step (also when ``enable`` is off).
    """

    enable: bool = False
    power: float = 1.0
    log_prm_stats: bool = True

    @classmethod
    def from_verl_config(cls, config: Any) -> LambdaGRPOSettings:
        """Read and check ``config.algorithm.lambda_grpo`` (absent: off) of a whole verl config.

        ``config`` is the composed trainer config (an OmegaConf ``DictConfig`` or a nested mapping). When ``enable`` is
        true the rest of the config is checked too. Raises ``ValueError`` naming the offending key.
        """
        algorithm = _get(config, "algorithm")
        section = _get(algorithm, CONFIG_KEY) if algorithm is not None else None
        if section is None:
            return cls(enable=False, log_prm_stats=False)
        if not isinstance(section, Mapping) and not hasattr(section, "keys"):
            raise ValueError(f"algorithm.{CONFIG_KEY}: expected a mapping, got {type(section).__name__}")
        known = {"enable", "power", "log_prm_stats"}
        unknown = sorted(set(section.keys()) - known)
        if unknown:
            raise ValueError(
                f"algorithm.{CONFIG_KEY}: unknown keys {unknown}; expected some of {sorted(known)}"
            )
        enable, log = section.get("enable", False), section.get("log_prm_stats", True)
        for key, value in (("enable", enable), ("log_prm_stats", log)):
            if not isinstance(value, bool):
                raise ValueError(f"algorithm.{CONFIG_KEY}.{key}: expected true or false, got {value!r}")
        power = section.get("power", 1.0)
        if (
            isinstance(power, bool)
            or not isinstance(power, int | float)
            or not math.isfinite(power)
            or power < 0
        ):
            raise ValueError(f"algorithm.{CONFIG_KEY}.power: expected a finite number >= 0, got {power!r}")
        settings = cls(enable=enable, power=float(power), log_prm_stats=log)
        if enable:
            _check_trainer_config(config)
        return settings


def _get(node: Any, key: str) -> Any:
    if node is None:
        return None
    if isinstance(node, Mapping) or hasattr(node, "get"):
        return node.get(key, None)
    return getattr(node, key, None)


def _check_trainer_config(config: Any) -> None:
    """Refuse verl settings under which λ-GRPO would not be what this module computes."""
    estimator = str(_get(_get(config, "algorithm"), "adv_estimator"))
    if estimator not in SUPPORTED_ADV_ESTIMATORS:
        raise ValueError(
            f"algorithm.adv_estimator: λ-GRPO weights GRPO's outcome advantages; expected one of "
            f"{SUPPORTED_ADV_ESTIMATORS}, got {estimator!r}"
        )
    trainer = _get(config, "trainer")
    if trainer is not None and _get(trainer, "use_v1") is False:
        raise ValueError(
            f"trainer.use_v1: algorithm.{CONFIG_KEY} hooks verl's v1 trainer; the v0 trainer (use_v1=false) is "
            "not supported"
        )
    actor = _get(_get(config, "actor_rollout_ref"), "actor")
    policy_loss = _get(actor, "policy_loss")
    mode = _get(policy_loss, "loss_mode") or "vanilla"
    if mode in REFUSED_LOSS_MODES:
        raise ValueError(
            f"actor_rollout_ref.actor.policy_loss.loss_mode: {mode!r} is not exact under λ-GRPO (it combines tokens "
            f"before the advantage enters, adds unweighted terms, or selects tokens by the advantage); use one of "
            f"{EXACT_LOSS_MODES}"
        )
    if mode not in EXACT_LOSS_MODES:
        raise ValueError(
            f"actor_rollout_ref.actor.policy_loss.loss_mode: {mode!r} was not checked for λ-GRPO; use one of "
            f"{EXACT_LOSS_MODES}"
        )
    if _get(actor, "loss_agg_mode") == "seq-mean-token-sum-norm" and _get(actor, "loss_scale_factor") is None:
        raise ValueError(
            "actor_rollout_ref.actor.loss_scale_factor: with loss_agg_mode=seq-mean-token-sum-norm (Dr. GRPO) and "
            "loss_scale_factor=null, verl divides each micro-batch's loss by that micro-batch's padded length, so "
            "the loss depends on how the batch is split; set actor_rollout_ref.actor.loss_scale_factor to a "
            "constant, e.g. data.max_response_length (Dr. GRPO's normaliser)"
        )


# --------------------------------------------------------------------------------------------------------------
# the weights (driver side): whole groups, computed once


def lambda_grpo_weights(
    responses: Tensor,
    response_lengths: Tensor,
    uid: Sequence[Any],
    power: float = 1.0,
    *,
    prm_stats: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """λ-GRPO weights of a verl training batch and its ``prm/*`` statistics.

    Args:
        responses: ``[B, T]`` integer response token ids, right-padded (verl's padded ``responses``).
        response_lengths: ``[B]`` integer length of each response (the length of verl's nested ``response_mask``).
            Every token of a response counts for the process sets, also tokens the loss masks out (e.g. tool
            output): a completion belongs to ``λ(i,t)`` while it shares the prefix (METHOD.md §2).
        uid: ``B`` group ids (verl's ``uid``: rows sampled for the same prompt share it; any hashable values).
        power: α of ``|λ(i,t)|^(−α)``.
        prm_stats: also compute :func:`lgrpo.process.tree_stats` and return its summary.

    Returns:
        ``(weights, metrics)``: FloatTensor ``[B, T]`` (0 after each response) and ``{"prm/...": float}`` (empty
        when ``prm_stats`` is false).
    """
    if not isinstance(responses, Tensor) or responses.dim() != 2:
        raise ValueError(
            f"responses: expected a [B, T] tensor, got {getattr(responses, 'shape', type(responses))}"
        )
    B, T = responses.shape
    if not isinstance(response_lengths, Tensor) or response_lengths.shape != (B,):
        raise ValueError(
            f"response_lengths: expected shape [{B}], got {getattr(response_lengths, 'shape', None)}"
        )
    if bool((response_lengths < 0).any()) or bool((response_lengths > T).any()):
        raise ValueError(f"response_lengths: expected values in [0, {T}], got {response_lengths.tolist()}")
    if len(uid) != B:
        raise ValueError(f"uid: expected {B} values (one per row of responses), got {len(uid)}")
    dense: dict[Any, int] = {}
    group = torch.tensor(
        [dense.setdefault(u, len(dense)) for u in uid], dtype=torch.long, device=responses.device
    )
    mask = torch.arange(T, device=responses.device)[None, :] < response_lengths.to(responses.device)[:, None]
    blocks = process_blocks(responses, mask, group)
    weights = lambda_weights(responses, mask, group, power, blocks=blocks)
    metrics = tree_stats(responses, mask, group, blocks=blocks).summary() if prm_stats else {}
    return weights, metrics


# --------------------------------------------------------------------------------------------------------------
# the patches


_KL_WEIGHTS: contextvars.ContextVar[Tensor | None] = contextvars.ContextVar("lgrpo_kl_weights", default=None)


def _patch_losses(losses: ModuleType) -> None:
    """Weight the actor's KL loss term by ``lambda_weights`` when the micro-batch carries them."""
    verl_ppo_loss, verl_kl_penalty = losses.ppo_loss, losses.kl_penalty

    @functools.wraps(verl_ppo_loss)
    def ppo_loss(config: Any, model_output: Any, data: Any, dp_group: Any = None) -> Any:
        if not (config.use_kl_loss and WEIGHTS_FIELD in data.keys()):  # noqa: SIM118 (TensorDict has no `in`)
            return verl_ppo_loss(config, model_output, data, dp_group)
        # padded exactly as verl pads the fields it selects (response_mask, ref_log_prob, ...)
        w = data.select("response_mask", WEIGHTS_FIELD).to_padded_tensor()[WEIGHTS_FIELD]
        token = _KL_WEIGHTS.set(w)
        try:
            return verl_ppo_loss(config, model_output, data, dp_group)
        finally:
            _KL_WEIGHTS.reset(token)

    @functools.wraps(verl_kl_penalty)
    def kl_penalty(logprob: Tensor, ref_logprob: Tensor, kl_penalty: str) -> Tensor:
        kld = verl_kl_penalty(logprob=logprob, ref_logprob=ref_logprob, kl_penalty=kl_penalty)
        w = _KL_WEIGHTS.get()
        if w is None:
            return kld
        if w.shape != kld.shape:
            raise RuntimeError(
                f"lgrpo: {WEIGHTS_FIELD} has shape {tuple(w.shape)}, the KL term {tuple(kld.shape)}"
            )
        return kld * w.to(kld.dtype)

    losses.ppo_loss, losses.kl_penalty = ppo_loss, kl_penalty


def _patch_trainer(trainer_base: ModuleType) -> None:
    """Check the settings when a v1 trainer is built; weight the advantages after verl computes them."""
    cls = trainer_base.PPOTrainer
    verl_init, verl_compute_advantage = cls.__init__, cls._compute_advantage

    @functools.wraps(verl_init)
    def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        self._lambda_grpo = LambdaGRPOSettings.from_verl_config(config)
        verl_init(self, config, *args, **kwargs)

    @functools.wraps(verl_compute_advantage)
    def _compute_advantage(self: Any, batch: Any, metrics: dict) -> Any:
        # rows verl adds to fill data-parallel shards are tagged on the batch it is given
        padding = [bool((tag or {}).get("is_padding", False)) for tag in (batch.tags or [{}] * len(batch))]
        batch = verl_compute_advantage(self, batch, metrics)
        settings = getattr(self, "_lambda_grpo", None) or LambdaGRPOSettings.from_verl_config(self.config)
        if not (settings.enable or settings.log_prm_stats):
            return batch
        n = _get(_get(_get(self.config, "actor_rollout_ref"), "rollout"), "n")
        return _weight_advantages(trainer_base, batch, padding, metrics, settings, int(n or 1))

    cls.__init__, cls._compute_advantage = __init__, _compute_advantage


def _patch_v0_trainer(ray_trainer: ModuleType) -> None:
    """The v0 trainer (``trainer.use_v1=false``) is not hooked: refuse the switch there instead of ignoring it."""
    cls = ray_trainer.RayPPOTrainer
    verl_init = cls.__init__

    @functools.wraps(verl_init)
    def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        LambdaGRPOSettings.from_verl_config(config)  # raises when enabled: use_v1 is false here
        verl_init(self, config, *args, **kwargs)

    cls.__init__ = __init__


def _weight_advantages(
    trainer_base: ModuleType,
    batch: Any,
    padding: list[bool],
    metrics: dict,
    settings: LambdaGRPOSettings,
    rollout_n: int = 1,
) -> Any:
    """Read the batch back from the TransferQueue, weight its advantages, write ``advantages`` + weights.

    With ``enable``: refuses a batch whose every ``uid`` is a singleton while ``rollout_n > 1`` (per-trajectory
    uids), and sets the advantages of every group of two or more responses whose scores are all equal to exactly 0
    (verl's ``(r − mean)/(std + 1e-6)`` leaves float rounding there, e.g. −0.0147 for eight scores of 0.2).
    """
    from tensordict import TensorDict
    from verl.workers.utils.padding import response_to_nested

    _check_one_output_per_trajectory(batch.keys)
    tq = trainer_base.tq
    # token_level_rewards is stored only with use_kl_in_reward; otherwise verl's GRPO scores are rm_scores
    fields = ["uid", "responses", "response_mask", "advantages", "rm_scores", "token_level_rewards"]
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
    response_mask = data["response_mask"]  # nested: one row per response, its full length
    lengths = response_mask.offsets().diff()
    uid = list(data["uid"])  # a NonTensorStack of strings: indexing gives a list-like
    padded = data.exclude("uid").to_padded_tensor()
    # padding rows carry no loss: keep them out of the groups and the statistics (weight 0)
    real = [not p for p in padding]
    rows = torch.tensor(real, dtype=torch.bool)
    real_uid = [u for u, keep in zip(uid, real) if keep]
    if settings.enable:
        _check_groups(real_uid, rollout_n)
    weights = torch.zeros(padded["responses"].shape, dtype=torch.float32)
    weights[rows], prm = lambda_grpo_weights(
        padded["responses"][rows], lengths[rows], real_uid, settings.power, prm_stats=settings.log_prm_stats
    )
    metrics.update(prm)
    if not settings.enable:
        return batch
    # verl's GRPO score of a response: its token-level rewards summed (token_level_rewards is stored only with
    # use_kl_in_reward; otherwise they are rm_scores)
    field = "token_level_rewards" if "token_level_rewards" in padded.keys() else "rm_scores"  # noqa: SIM118
    scores = padded[field].sum(-1)[rows].float()
    dense: dict[Any, int] = {}
    group = torch.tensor([dense.setdefault(u, len(dense)) for u in real_uid], dtype=torch.long)
    sizes = torch.bincount(group, minlength=len(dense))
    same = constant_groups(scores, group) & (sizes[group] > 1)  # a single response keeps verl's advantage
    constant = torch.zeros(len(uid), dtype=torch.bool)
    constant[rows] = same
    constant_group = torch.zeros(len(dense), dtype=torch.bool).index_fill_(0, group[same], True)
    metrics["reward/constant_group_fraction"] = float(constant_group.float().mean()) if len(dense) else 0.0
    advantages = padded["advantages"].masked_fill(constant[:, None], 0.0)
    advantages = advantages * weights.to(advantages.dtype)
    out = TensorDict(
        {
            "advantages": response_to_nested(advantages, response_mask),
            WEIGHTS_FIELD: response_to_nested(weights, response_mask),
        },
        batch_size=len(batch),
    )
    loss_tokens = padded["response_mask"].bool()
    metrics["prm/weight_mean"] = float(weights[loss_tokens].sum()) / max(int(loss_tokens.sum()), 1)
    return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=out)


def _check_groups(uid: Sequence[Any], rollout_n: int) -> None:
    """Refuse per-trajectory uids: every response its own group while verl samples ``rollout_n > 1`` per prompt.

    GRPO's advantage and λ's process sets are over the responses of one prompt, which verl finds by ``uid``; if each
    response has a uid of its own (as some agent loops set them), every advantage is the raw score and every weight 1.
    Groups smaller than ``rollout_n`` (filtered or failed rollouts) are allowed.
    """
    if rollout_n > 1 and len(uid) > 1 and len(set(uid)) == len(uid):
        raise ValueError(
            f"algorithm.{CONFIG_KEY}: every uid of this batch is its own group ({len(uid)} responses, {len(uid)} "
            f"uids) while actor_rollout_ref.rollout.n={rollout_n}: GRPO compares the responses of one prompt, "
            "found by uid; give the n responses sampled for a prompt the same uid (as verl's own data pipeline "
            "does: one uid per prompt, repeated n times), not one uid per trajectory"
        )


def _check_one_output_per_trajectory(keys: Sequence[str]) -> None:
    # verl's v1 keys are "{uid}_{session}_{output index}"; a multi-output trajectory (several rows per session)
    # is not one completion, and its rows must not be compared as separate members of a process set.
    sessions: dict[str, int] = {}
    for key in keys:
        parts = str(key).rsplit("_", 2)
        if len(parts) == 3:
            sessions[parts[0] + "_" + parts[1]] = sessions.get(parts[0] + "_" + parts[1], 0) + 1
    several = [s for s, n in sessions.items() if n > 1]
    if several:
        raise ValueError(
            f"algorithm.{CONFIG_KEY}: trajectories with several outputs (e.g. {several[0]!r}) are not supported; "
            "λ-GRPO needs one response per sampled completion"
        )


# --------------------------------------------------------------------------------------------------------------
# installation: patch the two modules right after verl imports them


_PATCHES: dict[str, Callable[[ModuleType], None]] = {
    _LOSSES_MODULE: _patch_losses,
    _TRAINER_MODULE: _patch_trainer,
    _V0_TRAINER_MODULE: _patch_v0_trainer,
}
_patched: list[str] = []


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, patch: Callable[[ModuleType], None]) -> None:
        self._loader, self._patch = loader, patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _apply(module.__name__, module)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of the patched verl modules so the patch runs after import."""

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _PATCHES or fullname in _patched:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader, _PATCHES[fullname])
                return spec
        return None


def _apply(name: str, module: ModuleType) -> None:
    if name not in _patched:
        _PATCHES[name](module)
        _patched.append(name)


def patched_modules() -> list[str]:
    """Names of the verl modules patched so far in this process."""
    return list(_patched)


def check_plugin() -> None:
    """Raise ``RuntimeError`` unless ``import verl`` will load and apply this plug-in in this environment.

    verl swallows a plug-in's import errors (debug log only), so a launch script calls this first: it checks the
    ``verl.plugins`` entry point, ``VERL_USE_EXTERNAL_PLUGINS`` and the verl version.
    """
    try:
        importlib.metadata.version("verl")
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            f"verl is not installed in this environment: pip install -e '.[verl]' (verl=={VERL_VERSION}), in "
            "an environment of its own (docs/verl.md)"
        ) from None
    names = {ep.name for ep in importlib.metadata.entry_points(group="verl.plugins") if ep.value == __name__}
    if not names:
        raise RuntimeError(
            f"no verl.plugins entry point loads {__name__}: reinstall lgrpo (pip install -e '.[verl]' from a clone)"
        )
    policy = os.getenv("VERL_USE_EXTERNAL_PLUGINS", "auto").strip().lower()
    allowed = {n.strip() for n in policy.split(",") if n.strip()}
    if policy == "none" or (policy != "auto" and not names & allowed):
        raise RuntimeError(
            f"VERL_USE_EXTERNAL_PLUGINS={policy!r} keeps verl from loading lgrpo's plug-in {sorted(names)}"
        )
    if not install():
        raise RuntimeError(f"lgrpo's verl plug-in needs verl=={VERL_VERSION} (see the warning above)")


def install() -> bool:
    """Patch verl (now for modules already imported, at import for the others); the entry point calls this.

    Returns False, patching nothing, when the installed verl is not :data:`VERL_VERSION`.
    """
    try:
        version = importlib.metadata.version("verl")
    except importlib.metadata.PackageNotFoundError:
        return False
    if version != VERL_VERSION:
        logger.warning(
            "lgrpo: the verl plug-in was tested with verl %s, found verl %s; it patches nothing, and "
            "algorithm.%s is ignored. Install verl==%s to use λ-GRPO in verl.",
            VERL_VERSION,
            version,
            CONFIG_KEY,
            VERL_VERSION,
        )
        return False
    for name in _PATCHES:
        if name in sys.modules:
            _apply(name, sys.modules[name])
    if not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
    return True


install()
