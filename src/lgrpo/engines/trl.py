"""λ-GRPO as a drop-in replacement for TRL's ``GRPOTrainer`` (trl ≥ 1.16).

    from lgrpo.engines.trl import LambdaGRPOConfig, LambdaGRPOTrainer

    trainer = LambdaGRPOTrainer(model=..., reward_funcs=..., args=LambdaGRPOConfig(...), train_dataset=...)

What changes against stock GRPO (METHOD.md §6), and where:

0. ``_generate_and_score_completions``, both weightings: a group whose rewards are all equal gets advantage exactly 0
   (:meth:`LambdaGRPOTrainer._zero_constant_groups`), where TRL's ``(r − mean)/(std + 1e-4)`` leaves float rounding
   (−1.49e-4 for eight rewards of 0.2). The one deviation from stock TRL's loss.
1. ``_generate_and_score_completions``: after TRL has generated, scored and computed advantages for a generation
   batch, the completion ids of *all* processes are gathered (a prompt's group can straddle processes), the
   per-token weights ``|λ(i,t)|^(−lambda_power)`` are computed once over whole groups with
   :func:`lgrpo.objectives.lambda_weights`, and each process keeps its own rows under ``batch["lambda_weights"]``.
   Being a ``[B, T]`` tensor of the batch dict, they are shuffled and split with the rest, so ``num_iterations > 1``
   and ``steps_per_generation > 1`` reuse them. The ``prm/*`` tree statistics and the rollout log come from the same
   gathered batch.
2. ``_get_per_token_logps_and_entropies`` (only with ``tree_packing=True``): the policy, old-policy and reference
   log-probs are computed over each group's process tree, every shared token once (:mod:`lgrpo.packing`), and
   returned as TRL's ``[B, T]`` tensors, so the loss below is unchanged.
3. ``_compute_loss``: TRL's own loss, given the per-token advantages ``w·A`` (``[B, T]``). For ``w ≥ 0``,
   ``w·min(P·A, clip(P)·A) = min(P·wA, clip(P)·wA)``, so this is the weighted policy term with TRL's own
   normalisers, masks and ratios. TRL adds its KL term (β > 0) unweighted; METHOD.md §6 weights it too, so
   ``_kl_reweighting`` adds ``β·aggregate((w − 1)·D)`` (the only loss term lgrpo computes itself). With
   ``weighting="uniform"`` nothing is stored and the loss is stock GRPO's.

``GRPOConfig`` options are checked at init against :data:`ALLOWED_OPTIONS`: any other TRL option with a non-default
value is refused, naming it. ``use_bias_correction_kl`` (TRL's default ``True``) multiplies the KL term by the ratio
``P``; ``LambdaGRPOConfig`` keeps that default, so uniform weighting stays stock TRL, while ``lgrpo train`` sets it to
``False`` to match METHOD.md §6 (``D``, not ``P·D``).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

try:
    import trl
    from accelerate.utils import gather_object
    from transformers import StoppingCriteriaList, TrainerCallback, TrainingArguments
    from trl import GRPOConfig, GRPOTrainer
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"lgrpo.engines.trl needs trl>=1.16 and accelerate: pip install 'lgrpo[trl]' ({e})"
    ) from e

from lgrpo.experiments.run_folder import TRAINER_CONFIG, RunFolder, write_json
from lgrpo.objectives import LOSS_TYPES, constant_groups, lambda_weights, policy_loss
from lgrpo.packing import (
    PACKING_MODES,
    check_packable,
    choose_packing,
    pack_groups,
    packed_logps,
    pair_cost,
)
from lgrpo.process import process_blocks, tree_stats
from lgrpo.tasks.math_answers import BoxedStoppingCriteria, cut_after_boxed

__all__ = ["ALLOWED_OPTIONS", "WEIGHTINGS", "LambdaGRPOConfig", "LambdaGRPOTrainer", "RunFolderLog"]

if tuple(int(x) for x in trl.__version__.split(".")[:2] if x.isdigit()) < (1, 16):  # pragma: no cover
    raise ImportError(
        f"lgrpo.engines.trl needs trl>=1.16, found trl {trl.__version__}: pip install -U 'trl>=1.16'"
    )

WEIGHTINGS = ("lambda", "uniform")
TREE_PACKING = ("off", "auto", *PACKING_MODES)


def packing_mode(value: Any) -> str:
    """``tree_packing`` as one of :data:`TREE_PACKING`: ``True``/``"true"`` → ``"auto"``, ``False``/``"false"``/
    ``None`` → ``"off"``. Raises ``ValueError`` naming the argument on anything else."""
    if value is None or value is False or str(value).lower() in ("false", "off"):
        return "off"
    if value is True or str(value).lower() in ("true", "auto"):
        return "auto"
    if value in PACKING_MODES:
        return value
    raise ValueError(f"tree_packing: expected one of {TREE_PACKING} or a bool, got {value!r}")


ROLLOUT_LOG = "rollouts.jsonl"


@dataclass
class LambdaGRPOConfig(GRPOConfig):
    """``GRPOConfig`` plus the λ-GRPO options.

    Args:
        weighting: ``"lambda"`` weights every token's loss by ``|λ(i,t)|^(−lambda_power)``; ``"uniform"`` is GRPO.
        lambda_power: the exponent α of the weights (1 = the paper's λ-GRPO, 0 = GRPO).
        log_prm_stats: log ``prm/flat_fraction``, ``prm/path_depth_mean``, ``prm/intermediate_proportion_mean``,
            ``prm/process_set_size_mean`` and ``prm/shared_token_fraction`` for every generation batch.
        rollout_log: append one JSON line per completion to ``<output_dir>/rollouts.jsonl`` (docs/rollout_log.md).
        tree_packing: pack each group's tokens for the log-probs, exactly (docs/tree_packing.md): ``"off"``
            (``False``), ``"tree"`` (the prompt and every shared completion prefix once), ``"prompt_once"`` (the
            prompt once, each completion in full) or ``"auto"`` (``True``: each call picks padded or tree,
            whichever ``lgrpo.packing.choose_packing`` predicts cheaper; prompt-once never costs less than the tree). With ``"tree"``/``"prompt_once"``
            a call still runs padded when packing is predicted slower or its dense mask would exceed
            ``tree_packing_mask_budget_gb``.
        tree_packing_always: pack every call in the chosen layout (``"auto"``: the tree), even where predicted
            slower (tests, benchmarks).
        tree_packing_self_check: the first packed call of the run is also computed padded on one group (no
            gradient, dropout off); if the log-probs differ beyond a dtype-dependent tolerance, packing is turned
            off for the run with a warning naming the model type (on several processes, rank 0 decides).
        tree_packing_mask_budget_gb: the largest dense tree mask (all packed rows, bool for sdpa, float for eager).
        stop_after_boxed: cut every completion after the token that closes its first ``\\boxed{…}`` and close it
            with EOS, whatever generated it (transformers, vLLM), before rewards and TRL's completion statistics;
            a row cut this way is terminated, not truncated. With transformers generation a stopping criterion
            also ends each row at its box, which only saves time.

    Whatever the options, ``output_dir`` is kept a run folder that ``lgrpo report`` draws (:class:`RunFolderLog`):
    ``metrics.jsonl`` (one line per logged step) and ``trainer_config.json``.
    """

    weighting: str = field(
        default="lambda",
        metadata={"help": "Token weighting: 'lambda' (|λ|^-lambda_power, λ-GRPO) or 'uniform' (GRPO)."},
    )
    lambda_power: float = field(
        default=1.0, metadata={"help": "Exponent α of the weights |λ(i,t)|^-α; 1 is λ-GRPO, 0 is GRPO."}
    )
    log_prm_stats: bool = field(default=True, metadata={"help": "Log the prm/* process-tree statistics."})
    rollout_log: bool = field(
        default=False, metadata={"help": "Write one JSON line per completion to <output_dir>/rollouts.jsonl."}
    )
    stop_after_boxed: bool = field(
        default=False,
        metadata={"help": "Cut each completion after its first closed \\boxed{} and close it with EOS."},
    )

    tree_packing: bool | str = field(
        default=False,
        metadata={
            "help": "Pack groups for the log-probs (exact; docs/tree_packing.md): 'off' (false), 'auto' (true: "
            "padded or tree per call, whichever is predicted cheaper), 'tree', 'prompt_once'."
        },
    )
    tree_packing_always: bool = field(
        default=False, metadata={"help": "Pack every model call, even where packing is predicted slower."}
    )
    tree_packing_self_check: bool = field(
        default=True,
        metadata={
            "help": "Check the first packed call against the padded one; turn packing off on a mismatch."
        },
    )
    tree_packing_mask_budget_gb: float = field(
        default=1.0, metadata={"help": "Largest dense tree mask in GB; larger batches run unpacked."}
    )

    def __post_init__(self) -> None:
        self.tree_packing = packing_mode(self.tree_packing)
        if not (self.tree_packing_mask_budget_gb > 0):
            raise ValueError(
                f"tree_packing_mask_budget_gb: expected a positive number, got {self.tree_packing_mask_budget_gb!r}"
            )
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting: expected one of {WEIGHTINGS}, got {self.weighting!r}")
        try:
            power = float(self.lambda_power)
        except (TypeError, ValueError):
            raise ValueError(
                f"lambda_power: expected a non-negative number, got {self.lambda_power!r}"
            ) from None
        if not (power >= 0 and math.isfinite(power)):
            raise ValueError(
                f"lambda_power: expected a finite non-negative number, got {self.lambda_power!r}"
            )
        self.lambda_power = power
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(
                f"loss_type: LambdaGRPOTrainer supports {LOSS_TYPES}, got {self.loss_type!r} "
                "(λ weights are defined for the clipped GRPO-family losses only)"
            )
        super().__post_init__()


# GRPOConfig's own fields (beyond transformers.TrainingArguments, the Trainer's machinery, which lgrpo does not touch)
# whose effect LambdaGRPOTrainer reproduces or does not touch. Any other field with a non-default value is refused
# at init, so an option added by a later TRL release is refused rather than silently mis-weighted.
ALLOWED_OPTIONS = frozenset(
    {
        # model loading and the forward pass
        "model_init_kwargs", "trust_remote_code", "disable_dropout", "cast_lm_head_to_fp32",
        "router_aux_loss_coef",
        # generation batch and sampling: weights are computed over whatever groups TRL generates
        "num_generations", "num_generations_eval", "max_completion_length", "ds3_gather_for_generation",
        "shuffle_dataset", "pad_to_multiple_of", "generation_batch_size", "steps_per_generation", "temperature",
        "top_p", "top_k", "min_p", "generation_kwargs", "chat_template_kwargs", "repetition_penalty",
        "cache_implementation", "max_tool_calling_iterations", "mask_truncated_completions",
        "use_transformers_continuous_batching", "transformers_continuous_batching_config",
        "use_transformers_paged",
        "use_vllm", "vllm_mode", "vllm_model_impl", "vllm_enable_sleep_mode", "vllm_structured_outputs_regex",
        "vllm_server_base_url", "vllm_server_host", "vllm_server_port", "vllm_server_timeout", "vllm_group_port",
        "vllm_gpu_memory_utilization", "vllm_max_model_length", "vllm_tensor_parallel_size",
        # rewards and advantages: TRL's, then weighted per token
        "reward_weights", "multi_objective_aggregation", "scale_rewards",
        # the loss: TRL's own loss on the weighted advantages (token masks and ratios multiply the policy term,
        # which commutes with w >= 0); the KL term is reweighted by _kl_reweighting
        "loss_type", "beta", "num_iterations", "epsilon", "epsilon_high", "delta", "top_entropy_quantile",
        "off_policy_mask_threshold", "use_bias_correction_kl", "vllm_importance_sampling_correction",
        "vllm_importance_sampling_mode", "vllm_importance_sampling_clip_max", "vllm_importance_sampling_clip_min",
        "vllm_importance_sampling_cap",
        # TRL's entropy bonus: added by TRL to the loss, unweighted
        "entropy_coef", "use_adaptive_entropy", "entropy_coef_min", "entropy_coef_max", "entropy_coef_delta",
        "entropy_target",
        # reference model
        "sync_ref_model", "ref_model_mixup_alpha", "ref_model_sync_steps",
        # logging
        "log_completions", "log_multimodal", "num_completions_to_print", "log_unique_prompts",
        "log_completions_hub_repo",
    }
)  # fmt: skip


def _refused_options(args: GRPOConfig) -> list[str]:
    """The options of ``args`` this trainer does not reproduce, as ``"name=value (why)"``; empty if none."""
    known = ALLOWED_OPTIONS | {f.name for f in fields(TrainingArguments)}
    bad = []
    if args.loss_type not in LOSS_TYPES:
        bad.append(f"loss_type={args.loss_type!r} (supported: {', '.join(LOSS_TYPES)})")
    for f in fields(GRPOConfig):  # TRL's options only: a subclass's own fields are its author's business
        if f.name in known:
            continue
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        value = getattr(args, f.name, default)
        if value != default:
            bad.append(
                f"{f.name}={value!r} (lgrpo does not reproduce this GRPOConfig option; default {default!r})"
            )
    return bad


def _check_reference_source(model: Any, args: Any, peft_config: Any) -> None:
    """β ≠ 0 without PEFT: TRL loads the reference model from ``model.config._name_or_path``; a model built in memory
    has none, and TRL's own error ("Repo id must use alphanumeric chars") does not say so."""
    if args is None or getattr(args, "beta", 0.0) == 0.0 or model is None or isinstance(model, str):
        return
    from accelerate.utils import is_peft_model

    if peft_config is None and not is_peft_model(model) and not getattr(model.config, "_name_or_path", ""):
        raise ValueError(
            "model: with beta != 0 TRL loads the reference model from model.config._name_or_path, which is empty "
            "for a model built in memory; save it (model.save_pretrained(DIR)) and pass DIR or a model loaded from "
            "it, use a peft_config (reference = adapter disabled), or set beta=0"
        )


class LambdaGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` with λ-GRPO token weights; same constructor, configured by :class:`LambdaGRPOConfig`.

    A plain ``GRPOConfig`` is accepted too and means ``weighting="lambda"``, ``lambda_power=1``.
    """

    # while _compute_loss runs TRL's loss with β > 0: keep the policy log-probs of its forward pass (see below)
    _keep_logps: bool = False
    _kept_logps: Tensor | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cfg = kwargs.get("args", args[2] if len(args) > 2 else None)
        if cfg is not None:
            bad = _refused_options(cfg)
            if bad:
                raise ValueError("LambdaGRPOTrainer does not support: " + "; ".join(bad))
        _check_reference_source(
            kwargs.get("model", args[0] if args else None), cfg, kwargs.get("peft_config")
        )
        super().__init__(*args, **kwargs)
        bad = _refused_options(self.args)  # when args was None, TRL built a default GRPOConfig
        if bad:
            raise ValueError("LambdaGRPOTrainer does not support: " + "; ".join(bad))
        self.weighting = getattr(self.args, "weighting", "lambda")
        self.lambda_power = float(getattr(self.args, "lambda_power", 1.0))
        self.log_prm_stats = bool(getattr(self.args, "log_prm_stats", True))
        self.rollout_log = bool(getattr(self.args, "rollout_log", False))
        self.stop_after_boxed = bool(getattr(self.args, "stop_after_boxed", False))
        self._last_rewards_per_func: Tensor | None = None
        self._rollout_step, self._rollout_groups_logged = -1, 0
        self.packing_mode = packing_mode(getattr(self.args, "tree_packing", False))
        self.tree_packing = self.packing_mode != "off"  # set False to run every call padded
        self._packing_checked = not bool(getattr(self.args, "tree_packing_self_check", True))
        if self.tree_packing:
            self._check_tree_packing()
        # last callback: the line it writes holds what earlier callbacks added to the logs
        self.add_callback(RunFolderLog())

    # ----------------------------------------------------------------------------------------------------------
    # generation: stop after the first box

    def _generate_single_turn(self, prompt_ids, *args: Any, **kwargs: Any):
        """TRL's generation step; with ``stop_after_boxed`` each completion is cut after its first closed box.

        This is the one place every TRL generator (transformers, vLLM, continuous batching) returns token ids and
        sampling log-probs, before TRL decodes them, scores them and counts ``completions/clipped_ratio``.
        """
        if not self.stop_after_boxed:
            return super()._generate_single_turn(prompt_ids, *args, **kwargs)
        plain_generate = not (self.use_vllm or self.use_transformers_continuous_batching)
        if plain_generate:
            with _stopping_criteria(self.accelerator.unwrap_model(self.model_wrapped), self._tokenizer):
                completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
        else:
            completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
        eos = self._tokenizer.eos_token_id
        if eos is None:
            eos = self.eos_token_ids[0]
        completion_ids, logprobs, _ = cut_after_boxed(completion_ids, self._tokenizer, eos, logprobs)
        return completion_ids, logprobs

    # ----------------------------------------------------------------------------------------------------------
    # generation batch: weights, tree statistics, rollout log

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # TRL returns the rewards of all processes ([N, num_funcs]) but keeps only the advantages; keep a copy for
        # the rollout log.
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        self._zero_constant_groups(batch, mode)
        need_weights = self.weighting == "lambda" and self.lambda_power != 0.0
        need_log = self.rollout_log and mode == "train"
        if not (need_weights or self.log_prm_stats or need_log or self.tree_packing):
            return batch

        ids = batch["completion_ids"]
        mask = self._sampled_mask(ids, batch["completion_mask"])
        local_rows, local_len = ids.shape
        all_ids, all_mask, group = self._gather_group_batch(ids, mask, mode)
        blocks = process_blocks(all_ids, all_mask, group)  # process sets of whole groups, computed once
        if need_weights:
            w = lambda_weights(all_ids, all_mask, group, self.lambda_power, blocks=blocks)  # [N, T_max]
            rank = self.accelerator.process_index
            batch["lambda_weights"] = w[rank * local_rows : (rank + 1) * local_rows, :local_len]
        if self.tree_packing:
            self._metrics[mode]["packing/unique_token_fraction"].append(
                _unique_token_fraction(batch["prompt_mask"], all_mask, group, blocks.sizes, self.accelerator)
            )
            # completions only: Σ 1/|λ(i,t)| / Σ L_i, what the tree saves over prompt-once packing (1 = nothing)
            unique = (all_mask.float() / blocks.sizes.clamp(min=1)).sum() / all_mask.sum().clamp(min=1)
            self._metrics[mode]["packing/completion_unique_fraction"].append(float(unique))
        if self.log_prm_stats:
            for name, value in tree_stats(all_ids, all_mask, group, blocks=blocks).summary().items():
                self._metrics[mode][name].append(value)
        if need_log:
            self._write_rollouts(inputs, batch, all_ids, all_mask, group)
        return batch

    def _zero_constant_groups(self, batch: dict[str, Any], mode: str) -> None:
        """Set the advantages of every group whose rewards are all equal to exactly 0; log the share of such groups.

        Such a group carries no signal, but TRL's ``(r − mean)/(std + 1e-4)`` leaves float rounding (−1.49e-4 for
        eight rewards of 0.2), and TRL's ``frac_reward_zero_std`` (``isclose(std, 0)``) does not count it. A group is
        constant when the rewards TRL normalises are exactly equal over its scorable members: the weighted sum of the
        reward functions (``sum_then_normalize``), or each function's reward (``normalize_then_sum``). Logged as
        ``reward/constant_group_fraction`` (share of the generation batch's groups, all processes).
        """
        rpf = self._last_rewards_per_func  # [N, num_funcs], all processes
        k = self.num_generations if mode == "train" else self.num_generations_eval
        if rpf is None or rpf.shape[0] % k:  # a custom path that bypassed _calculate_rewards
            return
        group = torch.arange(rpf.shape[0], device=rpf.device) // k
        if self.multi_objective_aggregation == "normalize_then_sum":
            constant = torch.stack([constant_groups(rpf[:, j], group) for j in range(rpf.shape[1])]).all(0)
        else:
            constant = constant_groups(self._combined_rewards(rpf), group)
        advantages = batch["advantages"]
        rows = advantages.shape[0]
        rank = self.accelerator.process_index
        mine = constant[rank * rows : (rank + 1) * rows].to(advantages.device)
        batch["advantages"] = advantages.masked_fill(mine.reshape(-1, *[1] * (advantages.dim() - 1)), 0.0)
        logged = self._logs["advantages"]  # TRL's completions table: the last N entries are this batch's
        if len(logged) >= rpf.shape[0]:
            for j in torch.nonzero(constant).flatten().tolist():
                logged[len(logged) - rpf.shape[0] + j] = 0.0
        self._metrics[mode]["reward/constant_group_fraction"].append(float(constant[::k].float().mean()))

    def _combined_rewards(self, rpf: Tensor) -> Tensor:
        """``[N]`` TRL's weighted sum of the reward functions ``rpf`` ``[N, num_funcs]``; NaN where none scored."""
        weights = self.reward_weights.to(rpf.device)
        return (rpf * weights).nansum(dim=1).masked_fill(torch.isnan(rpf).all(dim=1), float("nan"))

    def _sampled_mask(self, ids: Tensor, mask: Tensor) -> Tensor:
        """``[B, T]`` mask of the tokens that were sampled, for counting process sets and logging.

        With ``mask_truncated_completions`` TRL zeroes the loss mask of truncated completions, but they were sampled
        and still share prefixes with their group (METHOD.md §2: a completion is a member up to its last token), so
        their tokens are restored here: everything before the trailing padding. Their loss stays masked.
        """
        if not self.mask_truncated_completions:
            return mask
        real = (ids != self._tokenizer.pad_token_id).long()
        length = ids.shape[1] - real.flip(1).cumsum(1).eq(0).sum(1)  # position after the last non-pad token
        full = torch.arange(ids.shape[1], device=ids.device)[None, :] < length[:, None]
        dropped = (mask.sum(1) == 0)[:, None]
        return torch.where(dropped, full.to(mask.dtype), mask)

    def _gather_group_batch(self, ids: Tensor, mask: Tensor, mode: str) -> tuple[Tensor, Tensor, Tensor]:
        """The whole generation batch across processes: ids ``[N, T_max]``, mask ``[N, T_max]``, group ``[N]``.

        TRL's sampler puts the ``num_generations`` copies of a prompt at consecutive *global* positions (process 0's
        rows, then process 1's, ...), so the group of global row ``g`` is ``g // num_generations``. Raises
        ``ValueError`` on every process when the processes hold different numbers of rows.
        """
        acc = self.accelerator
        if acc.num_processes > 1:
            rows = acc.gather(torch.tensor([ids.shape[0]], device=ids.device)).tolist()
            if len(set(rows)) > 1:  # every process raises, rather than abort inside the collective below
                raise ValueError(
                    f"completion_ids: the processes hold {rows} rows of the generation batch; the group gather "
                    "needs the same number on every process (TRL's sampler gives each process the same number of "
                    "prompts × num_generations); check a custom sampler, dataloader or rollout function"
                )
            ids = acc.gather(acc.pad_across_processes(ids, dim=1, pad_index=0))
            mask = acc.gather(acc.pad_across_processes(mask, dim=1, pad_index=0))
        k = self.num_generations if mode == "train" else self.num_generations_eval
        group = torch.arange(ids.shape[0], device=ids.device) // k
        return ids, mask, group

    def _write_rollouts(
        self, inputs: list[dict[str, Any]], batch: dict[str, Any], ids: Tensor, mask: Tensor, group: Tensor
    ) -> None:
        """Append one line per completion of the generation batch to ``rollouts.jsonl`` (main process only)."""
        prompts = gather_object([_prompt_text(x["prompt"]) for x in inputs])
        acc = self.accelerator
        prompt_ids, prompt_mask = batch["prompt_ids"], batch["prompt_mask"]
        if acc.num_processes > 1:  # left-padded per process; the mask picks the real tokens after the gather
            prompt_ids = acc.gather(acc.pad_across_processes(prompt_ids, dim=1, pad_index=0))
            prompt_mask = acc.gather(acc.pad_across_processes(prompt_mask, dim=1, pad_index=0))
        advantages = self.accelerator.gather(batch["advantages"].float().reshape(len(inputs), -1)[:, 0])
        rpf = self._last_rewards_per_func
        if rpf is None or rpf.shape[0] != ids.shape[0]:  # a custom path that bypassed _calculate_rewards
            rewards = torch.full((ids.shape[0],), float("nan"))
        else:
            rewards = self._combined_rewards(rpf)
        if not self.accelerator.is_main_process:
            return
        lengths = mask.sum(1).tolist()
        rows = [r[:n] for r, n in zip(ids.tolist(), lengths)]
        texts = self.processing_class.batch_decode(rows, skip_special_tokens=True)
        prompt_rows = [r[m.bool()].tolist() for r, m in zip(prompt_ids.cpu(), prompt_mask.cpu())]
        step = int(self.state.global_step) + 1  # the optimizer step this batch is first trained on
        # with steps_per_generation < gradient_accumulation_steps one optimizer step sees several generation
        # batches: offset their group ids so that a group stays unique within its step
        offset = self._rollout_groups_logged if step == self._rollout_step else 0
        self._rollout_step, self._rollout_groups_logged = step, offset + int(group.max()) + 1
        os.makedirs(self.args.output_dir, exist_ok=True)
        columns = zip(
            (group + offset).tolist(),
            prompts,
            prompt_rows,
            texts,
            rows,
            rewards.tolist(),
            advantages.tolist(),
        )
        with open(os.path.join(self.args.output_dir, ROLLOUT_LOG), "a", encoding="utf-8") as f:
            for g, prompt, prompt_row, text, row, reward, advantage in columns:
                line = {
                    "step": step,
                    "group": g,
                    "prompt": prompt,
                    "prompt_ids": prompt_row,
                    "completion": text,
                    "completion_ids": row,
                    "reward": None if math.isnan(reward) else reward,
                    "advantage": advantage,
                }
                f.write(json.dumps(line) + "\n")

    # ----------------------------------------------------------------------------------------------------------
    # tree packing: log-probs over each group's process tree

    def _check_tree_packing(self) -> None:
        """Refuse, before any work, what tree packing cannot compute exactly."""
        for which, m in (("model", self.model), ("ref_model", self.ref_model)):
            if m is not None:
                try:
                    check_packable(self.accelerator.unwrap_model(m))
                except ValueError as e:
                    raise ValueError(f"tree_packing=True: {which}: {e}") from None
        if self.aux_loss_enabled:
            raise ValueError(
                "tree_packing=True: the MoE router aux loss counts every padded token; it cannot be packed"
            )

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any):
        out = self._tree_logps_and_entropies(*args, **kwargs)
        if self._keep_logps:  # the policy log-probs of the loss's own forward pass, for _kl_reweighting
            self._kept_logps = out[0]
        return out

    def _tree_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        **kwargs,
    ):
        """TRL's method, computed over process trees when ``tree_packing`` is on: ``([B, T], [B, T] | None, None)``.

        The rows that share a prompt within the call form one tree. In TRL's generation batch the ``k`` completions
        of a prompt are adjacent, so the old-policy and reference passes see whole groups (chunked by whole groups
        into about ``batch_size`` rows); the loss pass sees the micro-batch TRL cut from a shuffled batch, so with
        ``steps_per_generation > 1`` only the members of a group that landed in the same micro-batch share.
        """
        multimodal = any(v is not None for k, v in kwargs.items() if k != "compute_aux_loss")
        if not self.tree_packing or multimodal or kwargs.get("compute_aux_loss"):
            if self.packing_mode != "off" and not multimodal:  # off by the self-check (or by hand): say so
                mode = "train" if self.model.training else "eval"
                self._metrics[mode]["packing/packed_fraction"].append(0.0)
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, **kwargs
            )
        T = logits_to_keep
        prompt_ids, prompt_mask = input_ids[:, :-T], attention_mask[:, :-T]
        ids, mask = input_ids[:, -T:], attention_mask[:, -T:].bool()
        if T > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):  # not a right-padded completion: do not guess
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, **kwargs
            )
        mode = "train" if self.model.training else "eval"
        unwrapped = self.accelerator.unwrap_model(model)
        if not self._packing_checked:
            self._packing_self_check(unwrapped, prompt_ids, prompt_mask, ids, mask)
            if not self.tree_packing:  # the check failed: this call and every later one run padded
                self._metrics[mode]["packing/packed_fraction"].append(0.0)
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, **kwargs
                )
        budget = float(self.args.tree_packing_mask_budget_gb) * 2**30
        cost = pair_cost(unwrapped)  # dense attention: split a group where pairs cost more than sharing saves
        first = "tree" if self.packing_mode == "auto" else self.packing_mode
        chunks = _whole_group_chunks(prompt_ids, prompt_mask, batch_size or input_ids.shape[0])
        logps, entropies = [], []
        for rows in chunks:
            args = (prompt_ids[rows], prompt_mask[rows], ids[rows], mask[rows])
            # "auto" lays out the tree only: a prompt-once layout holds every token of the tree's and more (and a
            # larger mask), so neither its estimate nor its mask can beat the tree's (docs/tree_packing.md)
            layouts = {first: pack_groups(*args, mode=first, pair_cost=cost)}
            if self.args.tree_packing_always:
                use = first
            else:
                shape = (len(rows), input_ids.shape[1])
                use = choose_packing(layouts, shape, unwrapped, mask_budget_bytes=budget)
            self._metrics[mode]["packing/packed_fraction"].append(float(use != "padded"))
            self._metrics[mode]["packing/tree_fraction"].append(float(use == "tree"))
            if use != "padded":
                with self.accelerator.autocast():
                    lp, ent = packed_logps(
                        model,
                        layouts[use],
                        ids[rows],
                        temperature=self.temperature,
                        compute_entropy=compute_entropy,
                    )
            else:
                lp, ent, _ = super()._get_per_token_logps_and_entropies(
                    model, input_ids[rows], attention_mask[rows], T, None, compute_entropy
                )
            logps.append(lp)
            entropies.append(ent)
        back = torch.argsort(torch.cat(chunks))  # chunks hold whole groups: put the rows back in TRL's order
        logp = torch.cat(logps)[back]
        entropy = torch.cat(entropies)[back] if compute_entropy else None
        return logp, entropy, None

    def _packing_self_check(
        self, unwrapped, prompt_ids: Tensor, prompt_mask: Tensor, ids: Tensor, mask: Tensor
    ):
        """Compare the packed log-probs of the call's first group with the padded ones, once per run.

        No gradient, dropout off (eval mode, restored after), in the layout the run packs with (``"auto"``: the
        tree). Tolerance by compute dtype: the mean absolute log-prob difference over the group's tokens must stay
        below 1e-4 in float32 (5e-2 under bfloat16/float16) and the largest below 100× that. On several processes
        rank 0 checks and broadcasts its verdict (every rank makes the same first call). A mismatch sets
        ``tree_packing = False`` for the rest of the run and warns, naming the model type.
        """
        from accelerate.utils import broadcast

        acc = self.accelerator
        verdict = torch.ones(1, device=acc.device)  # 1 ok, 0 mismatch, -1 nothing to check in this call
        err = tol = 0.0
        key = torch.where(prompt_mask.bool(), prompt_ids, -1)
        rows = torch.nonzero((key == key[:1]).all(1)).flatten()  # the first group
        m = mask[rows]
        if acc.is_main_process and not bool(m.any()):
            verdict.fill_(-1)
        elif acc.is_main_process:
            low = acc.mixed_precision in ("bf16", "fp16")
            low = low or next(unwrapped.parameters()).dtype in (torch.bfloat16, torch.float16)
            tol = 5e-2 if low else 1e-4
            layout = "tree" if self.packing_mode == "auto" else self.packing_mode
            full = torch.cat([prompt_ids[rows], ids[rows]], 1)
            att = torch.cat([prompt_mask[rows], m.long()], 1)
            was = unwrapped.training
            unwrapped.eval()
            try:
                packed = pack_groups(prompt_ids[rows], prompt_mask[rows], ids[rows], m, mode=layout)
                with torch.no_grad(), acc.autocast():  # both as the run computes them
                    padded = super()._get_per_token_logps_and_entropies(unwrapped, full, att, ids.shape[1])
                    lp, _ = packed_logps(unwrapped, packed, ids[rows], temperature=self.temperature)
            finally:
                unwrapped.train(was)
            diff = (lp.float() - padded[0].float())[m].abs()
            err = float(diff.mean())
            if not (err <= tol and float(diff.max()) <= 100 * tol):
                verdict.fill_(0)
        if acc.num_processes > 1:
            verdict = broadcast(verdict, from_process=0)
        if int(verdict.item()) == -1:
            return
        self._packing_checked = True
        if int(verdict.item()) == 0:
            self.tree_packing = False
            name = getattr(unwrapped.config, "model_type", type(unwrapped).__name__)
            detail = f" (mean |Δ log-prob| {err:.2e} > {tol:.0e})" if acc.is_main_process else ""
            warnings.warn(
                f"tree_packing: packed log-probs of model type {name!r} differ from the padded ones{detail}; "
                "packing is off for this run (docs/tree_packing.md, self-check)",
                stacklevel=2,
            )

    # ----------------------------------------------------------------------------------------------------------
    # loss

    def _compute_loss(self, model, inputs):
        """TRL's own loss with the policy term weighted through the advantages; β > 0 adds the KL term's weighting.

        For ``w ≥ 0``, ``w·min(P·A, clip(P)·A) = min(P·wA, clip(P)·wA)``, and TRL's token masks, off-policy mask and
        vLLM importance-sampling ratio multiply that term too, so TRL's loss with the ``[B, T]`` advantages ``w·A``
        is the weighted policy term with TRL's normalisers. TRL adds the KL term ``β·D`` unweighted; METHOD.md §6
        weights it too, which :meth:`_kl_reweighting` adds.
        """
        weights = inputs.get("lambda_weights")
        if weights is None:  # weighting="uniform" or lambda_power=0: stock GRPO
            return super()._compute_loss(model, inputs)
        advantages = inputs["advantages"]
        advantages = advantages[:, None] if advantages.dim() == 1 else advantages
        inputs = {**inputs, "advantages": advantages * weights}  # [B, T]
        if self.beta == 0.0:
            return super()._compute_loss(model, inputs)
        self._keep_logps = True
        try:
            loss = super()._compute_loss(model, inputs)
            logp = self._kept_logps
        finally:
            self._keep_logps, self._kept_logps = False, None
        return loss + self._kl_reweighting(logp, inputs, weights)

    def _kl_reweighting(self, logp: Tensor, inputs: dict[str, Any], weights: Tensor) -> Tensor:
        """``β·aggregate((w − 1)·D·c)``: added to TRL's loss, it turns TRL's KL term ``β·D·c`` into ``β·w·D·c``.

        ``logp``, ``weights``: ``[B, T]``; ``D`` is TRL's k3 estimate against ``ref_per_token_logps`` and ``c`` the
        ratio ``exp(logp − old_logp)`` under ``use_bias_correction_kl`` (else 1). The aggregation and normaliser
        are TRL's for the loss type (``lgrpo.objectives.policy_loss`` with zero advantages), scaled for gradient
        accumulation as TRL scales its loss.
        """
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        old_logp = inputs.get("old_per_token_logps")
        old_logp = logp.detach() if old_logp is None else old_logp
        scale = weights - 1.0
        if self.args.use_bias_correction_kl:
            scale = scale * torch.exp(logp - old_logp)
        train = self.model.training
        accumulation = self.current_gradient_accumulation_steps if train else 1
        normalizer = None
        if self.loss_type == "dapo":  # TRL: num_items_in_batch spans the generation batch of all processes
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if train:
                normalizer = normalizer * accumulation / self.args.steps_per_generation
        kl = policy_loss(
            logp,
            torch.zeros_like(logp),
            mask,
            ref_logp=inputs["ref_per_token_logps"],
            weights=scale,
            loss_type=self.loss_type,
            beta=self.beta,
            max_completion_length=self.max_completion_length,
            normalizer=normalizer,
        )
        return kl if self.loss_type == "dapo" else kl / accumulation


class RunFolderLog(TrainerCallback):
    """Keeps ``output_dir`` a run folder (:mod:`lgrpo.experiments.run_folder`) as training goes, main process only.

    TRL writes ``trainer_state.json`` (with the log history) only into its checkpoints; this appends each dict the
    trainer logs to ``<output_dir>/metrics.jsonl`` as ``{"step": global_step, **logs}`` (the end-of-training
    ``train_runtime`` summary excepted), and writes ``trainer_config.json`` (the arguments, with the ``weighting``
    and ``lambda_power`` in effect) when training starts. A resumed run first drops the lines past its checkpoint's
    step (and, with ``rollout_log``, the rollout lines), so no step is logged twice; a fresh run starts the files
    anew.
    """

    def on_train_begin(self, args, state, control, **kwargs):
        folder = RunFolder(args.output_dir, main=state.is_world_process_zero)
        if not folder.main:
            return
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.trim_to(state.global_step, rollout_log=bool(getattr(args, "rollout_log", False)))
        config = {
            **json.loads(args.to_json_string()),
            "weighting": getattr(args, "weighting", "lambda"),
            "lambda_power": float(getattr(args, "lambda_power", 1.0)),
        }
        write_json(folder.path / TRAINER_CONFIG, config)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "train_runtime" not in logs:
            folder = RunFolder(args.output_dir, main=state.is_world_process_zero)
            folder.append_metrics({"step": state.global_step, **logs})


def _unique_token_fraction(
    prompt_mask: Tensor, mask: Tensor, group: Tensor, sizes: Tensor, accelerator
) -> float:
    """Unique tokens / all tokens of the generation batch (prompt + completion): what tree packing runs over.

    Every node of a group's tree is shared by ``|λ(i,t)|`` rows and a prompt by the ``k`` rows of its group, so the
    unique count is ``Σ_i P_i / k_g(i) + Σ_it 1 / |λ(i,t)|``. ``mask``, ``group``, ``sizes`` cover all processes.
    """
    plen = prompt_mask.sum(1).float()
    if accelerator.num_processes > 1:
        plen = accelerator.gather(plen)
    k = torch.bincount(group)[group].float()
    unique = (plen / k).sum() + (mask.float() / sizes.clamp(min=1)).sum()
    return float(unique / (plen.sum() + mask.sum()).clamp(min=1))


def _whole_group_chunks(prompt_ids: Tensor, prompt_mask: Tensor, size: int) -> list[Tensor]:
    """Row indices of the batch in chunks of whole groups (rows with equal prompts), about ``size`` rows each.

    A group larger than ``size`` is one chunk. Groups are taken in the order of their first row (a loop over groups).
    """
    key = torch.where(prompt_mask.bool(), prompt_ids, torch.full_like(prompt_ids, -1))
    _, group = torch.unique(key, dim=0, return_inverse=True)
    order = torch.argsort(group.reshape(-1), stable=True)
    counts = torch.bincount(group.reshape(-1)).tolist()
    first = torch.full((len(counts),), group.numel(), dtype=torch.long, device=group.device)
    first = first.scatter_reduce(
        0, group.reshape(-1), torch.arange(group.numel(), device=group.device), "amin"
    )
    starts = [0, *torch.cumsum(torch.tensor(counts), 0).tolist()]
    chunks: list[Tensor] = []
    current: list[Tensor] = []
    n = 0
    for g in torch.argsort(first).tolist():
        if current and n + counts[g] > size:
            chunks.append(torch.cat(current))
            current, n = [], 0
        current.append(order[starts[g] : starts[g + 1]])
        n += counts[g]
    if current:
        chunks.append(torch.cat(current))
    return chunks


@contextmanager
def _stopping_criteria(model: Any, tokenizer: Any) -> Iterator[None]:
    """While active, ``model.generate`` also stops each row once its first box closes (a speed-up only: the cut
    after generation decides the tokens). TRL calls ``generate`` with a fixed set of arguments, so the criterion
    rides on an instance attribute that is removed again afterwards."""
    own = model.__dict__.get("generate")
    base = model.generate

    def generate(*args: Any, **kwargs: Any):
        criteria = StoppingCriteriaList(list(kwargs.pop("stopping_criteria", None) or []))
        criteria.append(BoxedStoppingCriteria(tokenizer))
        return base(*args, stopping_criteria=criteria, **kwargs)

    model.generate = generate
    try:
        yield
    finally:
        if own is None:
            del model.generate
        else:
            model.generate = own


def _prompt_text(prompt: Any) -> str:
    """A prompt as text: itself, or for a conversational prompt the content of its last user message."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        users = [m for m in prompt if m.get("role") == "user"] or prompt
        content = users[-1].get("content", "")
        if isinstance(content, list):  # multimodal content blocks
            content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
        return str(content)
    return str(prompt)
