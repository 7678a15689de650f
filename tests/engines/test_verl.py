"""The verl plug-in against verl 0.9.1's real code (``make test`` runs this file in .venv-verl).

The references are worked out apart from the plug-in: :func:`lgrpo.objectives.policy_loss` (our one loss) with the
weights and the matching aggregation, and verl's own functions (its GRPO advantage, loss functions, ``agg_loss``,
``ppo_loss``, hydra configs, TensorDict/DataProto containers).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

if importlib.util.find_spec("verl") is None:  # the TRL environment; `make test` runs this file in .venv-verl
    pytest.skip(
        "verl is not installed here: `make test-verl` runs these tests in .venv-verl", allow_module_level=True
    )

import numpy as np
import verl  # loads the plug-in through its entry point
from omegaconf import OmegaConf
from tensordict import TensorDict
from verl.trainer.ppo import core_algos
from verl.utils import tensordict_utils as tu
from verl.workers.config import ActorConfig, PolicyLossConfig
from verl.workers.utils import losses

from lgrpo.engines import verl as plugin
from lgrpo.objectives import lambda_weights, policy_loss

VERL_CONFIG_DIR = Path(verl.__file__).parent / "trainer" / "config"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "verl"

# lgrpo's aggregation for each of verl's loss_agg_modes: (loss_type, normalizer(mask, rows) or None)
AGGREGATIONS = {
    "token-mean": ("dapo", None),
    "seq-mean-token-mean": ("grpo", None),
    "seq-mean-token-sum-norm": ("dr_grpo", None),
    # sum / number of sequences and plain sum: dapo's sum over a given denominator
    "seq-mean-token-sum": ("dapo", lambda mask: float(mask.shape[0])),
    "token-sum": ("dapo", lambda mask: 1.0),
}


def test_entry_point_loads_the_plugin_and_patches_verl():
    assert verl.__version__ == plugin.VERL_VERSION
    assert "lgrpo.engines.verl" in sys.modules  # loaded by `import verl`, not by this file
    assert "verl.workers.utils.losses" in plugin.patched_modules()
    assert losses.ppo_loss.__wrapped__ is not losses.ppo_loss


def test_check_plugin_names_what_would_keep_verl_from_loading_it(monkeypatch):
    plugin.check_plugin()  # this environment: registered, allowed, verl 0.9.1
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "none")
    with pytest.raises(RuntimeError, match="VERL_USE_EXTERNAL_PLUGINS"):
        plugin.check_plugin()
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "other_plugin")
    with pytest.raises(RuntimeError, match="VERL_USE_EXTERNAL_PLUGINS"):
        plugin.check_plugin()
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "other_plugin,lgrpo")
    plugin.check_plugin()


def test_other_verl_versions_are_not_patched(monkeypatch, caplog):
    monkeypatch.setattr(plugin.importlib.metadata, "version", lambda name: "0.9.2")
    with caplog.at_level(logging.WARNING, logger="lgrpo.engines.verl"):
        assert plugin.install() is False
    assert "tested with verl 0.9.1, found verl 0.9.2" in caplog.text


# --------------------------------------------------------------------------------------------------------------
# a batch with shared prefixes


def _batch(seed: int = 0, holes: bool = True, random_shape: bool = False):
    """Three groups (uids interleaved) whose responses share prefixes; lengths vary, one response is empty.

    ``random_shape`` draws the lengths and shared-prefix lengths from ``seed`` too (else a fixed layout).
    """
    g = torch.Generator().manual_seed(seed)
    trunk = torch.randint(3, 50, (16,), generator=g)
    lengths_, shared_ = [9, 9, 5, 12, 7, 0, 11, 6, 10, 3], [6, 6, 3, 8, 0, 0, 2, 11, 5, 3]
    if random_shape:
        lengths_ = torch.randint(1, 17, (10,), generator=g).tolist()
        lengths_[5] = 0
        shared_ = torch.randint(0, 17, (10,), generator=g).tolist()
    rows, uid = [], []
    for k, length in enumerate(lengths_):
        shared = shared_[k]
        tail = torch.randint(3, 50, (length,), generator=g)
        row = torch.cat([trunk[:shared], tail])[:length]
        if k % 3 == 1:
            row = row.flip(0)  # a different prefix in group 1
        rows.append(row)
        uid.append(f"prompt-{k % 3}")
    T = max(len(r) for r in rows)
    B = len(rows)
    responses = torch.zeros(B, T, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows])
    for i, r in enumerate(rows):
        responses[i, : len(r)] = r
    seq = torch.arange(T)[None, :] < lengths[:, None]
    loss_mask = seq.clone()
    if holes:  # tokens the loss leaves out inside a response (e.g. tool output in an agent loop)
        loss_mask[3, 2:4] = False
        loss_mask[6, 5] = False
        loss_mask &= seq
    scores = torch.randint(0, 2, (B,), generator=g).float()
    scores[:3] = torch.tensor([1.0, 0.0, 1.0])
    logp = -torch.rand(B, T, generator=g) * 2 - 0.1
    old = logp + 0.15 * torch.randn(B, T, generator=g)
    ref = logp + 0.3 * torch.randn(B, T, generator=g)
    return SimpleNamespace(
        responses=responses, lengths=lengths, seq=seq, mask=loss_mask, uid=uid, scores=scores,
        logp=logp, old=old, ref=ref, prompt_lengths=torch.randint(1, 5, (B,), generator=g),
    )  # fmt: skip


def _grpo_advantages(b) -> torch.Tensor:
    """verl's own GRPO advantage [B, T] (outcome score on the last token, grouped by uid)."""
    B, T = b.responses.shape
    token_level = torch.zeros(B, T)
    last = (b.lengths - 1).clamp(min=0)
    token_level[torch.arange(B), last] = b.scores * (b.lengths > 0)
    adv, _ = core_algos.compute_grpo_outcome_advantage(
        token_level_rewards=token_level, response_mask=b.mask.float(), index=np.array(b.uid, dtype=object)
    )
    return adv


def _nested(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return torch.nested.as_nested_tensor([x[i, : int(n)] for i, n in enumerate(lengths)], layout=torch.jagged)


def _actor_call(
    b, rows, advantages, weights, logp, config, dp_size=1, batch_num_tokens=None, global_batch_size=None
):
    """Call verl's (patched) ``ppo_loss`` the way its FSDP engine does: nested fields, nested model log-probs, and
    the global token and row counts (defaults: those of ``rows``) that the engine and trainer put in the batch."""
    rows = torch.as_tensor(rows)
    batch_num_tokens = int(b.mask[rows].sum()) if batch_num_tokens is None else batch_num_tokens
    global_batch_size = len(rows) if global_batch_size is None else global_batch_size
    lengths = b.lengths[rows]
    P = b.prompt_lengths[rows]
    prompts = [torch.full((int(p),), 1) for p in P]
    fields = {
        "prompts": torch.nested.as_nested_tensor(prompts, layout=torch.jagged),
        "responses": _nested(b.responses[rows], lengths),
        "response_mask": _nested(b.mask[rows].long(), lengths),
        "old_log_probs": _nested(b.old[rows], lengths),
        "ref_log_prob": _nested(b.ref[rows], lengths),
        "advantages": _nested(advantages[rows], lengths),
    }
    if weights is not None:
        fields[plugin.WEIGHTS_FIELD] = _nested(weights[rows], lengths)
    data = TensorDict(fields, batch_size=[len(rows)])
    tu.assign_non_tensor_data(data, "dp_size", dp_size)
    tu.assign_non_tensor_data(data, "batch_num_tokens", batch_num_tokens)
    tu.assign_non_tensor_data(data, "global_batch_size", global_batch_size)
    # the model's log-probs over prompt + response; position p-1+t holds the log-prob of response token t
    seqs = []
    for k, i in enumerate(rows.tolist()):
        n, p = int(lengths[k]), int(P[k])
        seqs.append(torch.cat([torch.zeros(p - 1), logp[i, :n], torch.zeros(1)]))
    model_output = {"log_probs": torch.nested.as_nested_tensor(seqs, layout=torch.jagged)}
    loss, metrics = losses.ppo_loss(config, model_output, data)
    return loss, metrics


def _actor_config(loss_agg_mode: str, beta: float, loss_mode: str = "vanilla") -> ActorConfig:
    return ActorConfig(
        strategy="fsdp",
        ppo_mini_batch_size=4,
        ppo_micro_batch_size_per_gpu=4,
        loss_agg_mode=loss_agg_mode,
        use_kl_loss=beta > 0,
        kl_loss_coef=beta,
        kl_loss_type="k3",
        clip_ratio=0.2,
        # ratios large enough that kl_cov / clip_cov select tokens in a batch this small
        policy_loss=PolicyLossConfig(
            loss_mode=loss_mode,
            dro_beta=0.1,
            kl_cov_ratio=0.2,
            clip_cov_ratio=0.2,
            clip_cov_lb=0.0,
            clip_cov_ub=5.0,
        ),
        rollout_n=1,
    )


def _reference(b, advantages, weights, loss_agg_mode, beta, logp, rows=None):
    """lgrpo.objectives.policy_loss with the weights and the aggregation matching verl's loss_agg_mode."""
    rows = torch.arange(len(b.uid)) if rows is None else torch.as_tensor(rows)
    T = int(b.lengths[rows].max())
    mask = b.mask[rows, :T]
    loss_type, normalizer = AGGREGATIONS[loss_agg_mode]
    return policy_loss(
        logp[rows, :T],
        advantages[rows, :T],
        mask,
        old_logp=b.old[rows, :T],
        ref_logp=b.ref[rows, :T],
        weights=None if weights is None else weights[rows, :T],
        loss_type=loss_type,
        beta=beta,
        epsilon_low=0.2,
        epsilon_high=0.2,
        normalizer=None if normalizer is None else normalizer(mask),
    )


# --------------------------------------------------------------------------------------------------------------
# the loss: plug-in on equals λ-weighted policy_loss; off equals verl


@pytest.mark.parametrize("random_shape", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("loss_agg_mode", list(AGGREGATIONS))
def test_ppo_loss_with_the_plugin_equals_weighted_policy_loss(loss_agg_mode, beta, random_shape):
    b = _batch(seed=1, random_shape=random_shape)
    adv = _grpo_advantages(b)
    w, _ = plugin.lambda_grpo_weights(b.responses, b.lengths, b.uid, power=1.0)
    # the weights are lgrpo's λ weights over whole groups, and not all 1 on this batch
    group = torch.tensor([int(u[-1]) for u in b.uid])
    assert torch.equal(w, lambda_weights(b.responses, b.seq, group, 1.0))
    assert bool((w[b.seq] < 1).any())

    config = _actor_config(loss_agg_mode, beta)
    logp = b.logp.clone().requires_grad_(True)
    loss, metrics = _actor_call(b, range(len(b.uid)), adv * w, w, logp, config)
    (grad,) = torch.autograd.grad(loss, logp)

    logp_ref = b.logp.clone().requires_grad_(True)
    expected = _reference(b, adv, w, loss_agg_mode, beta, logp_ref)
    (grad_ref,) = torch.autograd.grad(expected, logp_ref)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-7)
    if beta > 0:  # the KL term verl reports is the weighted one
        assert "kl_loss" in metrics


@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("loss_agg_mode", list(AGGREGATIONS))
def test_ppo_loss_without_weights_is_verl_unchanged(loss_agg_mode, beta):
    b = _batch(seed=2)
    adv = _grpo_advantages(b)
    config = _actor_config(loss_agg_mode, beta)
    logp = b.logp.clone().requires_grad_(True)
    loss, _ = _actor_call(b, range(len(b.uid)), adv, None, logp, config)
    (grad,) = torch.autograd.grad(loss, logp)

    # verl's own ppo_loss and kl_penalty, as verl ships them
    patched = losses.ppo_loss, losses.kl_penalty
    try:
        losses.ppo_loss, losses.kl_penalty = losses.ppo_loss.__wrapped__, losses.kl_penalty.__wrapped__
        logp_v = b.logp.clone().requires_grad_(True)
        loss_v, _ = _actor_call(b, range(len(b.uid)), adv, None, logp_v, config)
        (grad_v,) = torch.autograd.grad(loss_v, logp_v)
    finally:
        losses.ppo_loss, losses.kl_penalty = patched
    assert torch.equal(loss, loss_v) and torch.equal(grad, grad_v)
    # and both are GRPO: policy_loss with uniform weights
    logp_ref = b.logp.clone().requires_grad_(True)
    expected = _reference(b, adv, None, loss_agg_mode, beta, logp_ref)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_groups_split_across_two_data_parallel_ranks_get_the_same_weights():
    b = _batch(seed=3, holes=False)
    adv = _grpo_advantages(b)
    # the driver weighs the whole batch once; the ranks get rows of every group (interleaved uids)
    w, _ = plugin.lambda_grpo_weights(b.responses, b.lengths, b.uid, power=1.0)
    ranks = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    for rows in ranks:  # weights computed on one rank's rows alone would be wrong
        alone, _ = plugin.lambda_grpo_weights(
            b.responses[rows], b.lengths[rows], [b.uid[i] for i in rows], 1.0
        )
        assert not torch.equal(alone, w[rows])

    config = _actor_config("token-mean", 0.04)
    tokens = int(b.mask.sum())
    logp = b.logp.clone().requires_grad_(True)
    grads = []
    for rows in ranks:
        loss, _ = _actor_call(b, rows, adv * w, w, logp, config, 2, tokens, len(b.uid))
        (g,) = torch.autograd.grad(loss, logp)
        grads.append(g)
    grad_ddp = (grads[0] + grads[1]) / 2  # data parallel averages the ranks' gradients

    logp_ref = b.logp.clone().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad(_reference(b, adv, w, "token-mean", 0.04, logp_ref), logp_ref)
    torch.testing.assert_close(grad_ddp, grad_ref, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------------------------------
# loss modes: weighting the advantage is exact for the accepted ones


def _loss_mode_runs(mode: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """verl's loss ``mode`` (loss, gradient) on ``A·w``, on ``A`` with ``w`` as per-token weights, and on ``A``."""
    b = _batch(seed=4)
    adv = _grpo_advantages(b)
    w, _ = plugin.lambda_grpo_weights(b.responses, b.lengths, b.uid, power=1.0)
    fn = core_algos.get_policy_loss_fn(mode)
    config = _actor_config("token-mean", 0.0, loss_mode=mode)

    def run(a, is_weights):
        torch.manual_seed(0)  # kl_cov / clip_cov may draw tokens at random
        logp = b.logp.clone().requires_grad_(True)
        loss, _ = fn(
            b.old, logp, a, b.mask, loss_agg_mode="token-mean", config=config, rollout_is_weights=is_weights
        )
        return loss, torch.autograd.grad(loss, logp)[0]

    return {"advantage": run(adv * w, None), "loss": run(adv, w), "unweighted": run(adv, None)}


@pytest.mark.parametrize("mode", plugin.EXACT_LOSS_MODES)
def test_weighting_the_advantage_weights_the_per_token_loss(mode):
    """verl's loss on ``A·w`` equals the same loss with ``w`` as its per-token weights (``rollout_is_weights``)."""
    runs = _loss_mode_runs(mode)
    (loss_a, grad_a), (loss_w, grad_w) = runs["advantage"], runs["loss"]
    torch.testing.assert_close(loss_a, loss_w, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad_a, grad_w, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(grad_a, runs["unweighted"][1])  # and the weights do change the gradient


@pytest.mark.parametrize("mode", plugin.REFUSED_LOSS_MODES)
def test_refused_loss_modes_are_not_exact(mode):
    """Why they are refused: on these, weighting the advantage is not weighting the per-token loss."""
    runs = _loss_mode_runs(mode)
    assert not torch.allclose(runs["advantage"][1], runs["loss"][1], rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------------------------
# the switch: verl's own hydra config


def _compose(overrides: list[str], config_name: str = "ppo_trainer", config_dir: Path = VERL_CONFIG_DIR):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def test_verl_config_takes_the_switch_with_a_plus():
    cfg = _compose(["algorithm.adv_estimator=grpo", "+algorithm.lambda_grpo.enable=true",
                    "+algorithm.lambda_grpo.power=0.5"])  # fmt: skip
    settings = plugin.LambdaGRPOSettings.from_verl_config(cfg)
    assert settings == plugin.LambdaGRPOSettings(enable=True, power=0.5, log_prm_stats=True)
    # without it, stock verl: nothing changes
    off = plugin.LambdaGRPOSettings.from_verl_config(_compose(["algorithm.adv_estimator=grpo"]))
    assert not off.enable and not off.log_prm_stats
    # verl's config is a struct: a key it does not define needs hydra's `+`
    with pytest.raises(Exception, match="lambda_grpo"):
        _compose(["algorithm.lambda_grpo.enable=true"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["algorithm.adv_estimator=gae"], "algorithm.adv_estimator"),
        (["actor_rollout_ref.actor.policy_loss.loss_mode=geo_mean"], "not exact"),
        (["actor_rollout_ref.actor.policy_loss.loss_mode=clip_cov"], "not exact"),
        (["actor_rollout_ref.actor.policy_loss.loss_mode=bypass_mode"], "was not checked"),
        (["trainer.use_v1=false"], "trainer.use_v1"),
        (["+algorithm.lambda_grpo.power=-1"], "power"),
        (["+algorithm.lambda_grpo.alpha=1"], "unknown keys"),
    ],
)
def test_verl_config_refusals(overrides, message):
    cfg = _compose(["algorithm.adv_estimator=grpo", "+algorithm.lambda_grpo.enable=true", *overrides])
    with pytest.raises(ValueError, match=message):
        plugin.LambdaGRPOSettings.from_verl_config(cfg)


def test_example_config_composes_through_verl_and_turns_the_plugin_on():
    cfg = _compose([], config_name="lambda_grpo_qwen1.5b", config_dir=EXAMPLES)
    settings = plugin.LambdaGRPOSettings.from_verl_config(cfg)
    assert settings.enable and settings.power == 1.0
    # the paper's setting (METHOD.md §10)
    assert cfg.algorithm.adv_estimator == "grpo"
    assert cfg.actor_rollout_ref.rollout.n == 6
    assert cfg.actor_rollout_ref.rollout.temperature == 0.75
    assert cfg.data.max_response_length == 1200
    assert cfg.actor_rollout_ref.actor.optim.lr == 1e-6
    assert cfg.actor_rollout_ref.model.lora_rank == 64 and cfg.actor_rollout_ref.model.lora_alpha == 128
    assert cfg.actor_rollout_ref.actor.loss_agg_mode == "seq-mean-token-mean"
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


# --------------------------------------------------------------------------------------------------------------
# the driver: verl's real v1 `_compute_advantage`, on a TransferQueue held in memory


class MemoryTQ:
    """``kv_batch_get``/``kv_batch_put`` of transfer_queue over a dict (the real one runs Ray actors)."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def kv_batch_put(self, keys, partition_id, fields=None, tags=None):
        from transfer_queue import KVBatchMeta

        for name in fields.keys():  # noqa: SIM118 (iterating a TensorDict walks its rows)
            value = fields[name]
            items = value.unbind(0) if isinstance(value, torch.Tensor) else list(value)
            for key, item in zip(keys, items, strict=True):
                self.rows.setdefault(key, {})[name] = item
        tags = [{} for _ in keys] if tags is None else tags
        return KVBatchMeta(keys=list(keys), tags=tags, partition_id=partition_id)

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        from tensordict import NonTensorStack

        out = {}
        for name in select_fields:
            if not all(name in self.rows[k] for k in keys):
                continue  # a field this batch does not have (e.g. values without a critic)
            values = [self.rows[k][name] for k in keys]
            if isinstance(values[0], str):
                out[name] = NonTensorStack(*values)
            else:
                out[name] = torch.nested.as_nested_tensor(list(values), layout=torch.jagged)
        return TensorDict(out, batch_size=[len(keys)])


def _real_rows(b) -> SimpleNamespace:
    """The rows of ``b`` with a response (verl's responses hold at least one token)."""
    rows = [i for i in range(len(b.uid)) if b.lengths[i] > 0]
    sub = SimpleNamespace(uid=[b.uid[i] for i in rows])
    for name in ("responses", "lengths", "seq", "mask", "scores", "old"):
        setattr(sub, name, getattr(b, name)[rows])
    return sub


def _driver_batch(monkeypatch, b):
    """``b`` in a TransferQueue as verl's rollout leaves it, plus one padding row (a copy of row 0 in its own group,
    with no loss tokens, as verl adds to fill data-parallel shards)."""
    import verl.trainer.ppo.v1.trainer_base as trainer_base
    from tensordict import NonTensorStack

    store = MemoryTQ()
    monkeypatch.setattr(trainer_base, "tq", store)
    B = len(b.uid)
    responses = torch.cat([b.responses, b.responses[:1]])
    lengths = torch.cat([b.lengths, b.lengths[:1]])
    mask = torch.cat([b.mask, torch.zeros_like(b.mask[:1])]).long()
    uid = [*b.uid, "pad0"]
    scores = torch.zeros(B + 1, b.responses.shape[1])
    scores[torch.arange(B), b.lengths - 1] = b.scores
    keys = [f"{u}_{i}_0" for i, u in enumerate(uid)]  # verl's "{uid}_{session}_{output}"
    fields = TensorDict(
        {
            "uid": NonTensorStack(*uid),
            "responses": _nested(responses, lengths),
            "response_mask": _nested(mask, lengths),
            "rm_scores": _nested(scores, lengths),
            "old_log_probs": _nested(torch.cat([b.old, b.old[:1]]), lengths),
        },
        batch_size=[B + 1],
    )
    tags = [{}] * B + [{"is_padding": True}]
    return trainer_base, store, store.kv_batch_put(keys, "train", fields=fields, tags=tags)


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_compute_advantage_weights_the_advantages_over_whole_groups(monkeypatch, power):
    from lgrpo.process import tree_stats

    b = _real_rows(_batch(seed=5))
    trainer_base, store, batch = _driver_batch(monkeypatch, b)
    cfg = _compose(["algorithm.adv_estimator=grpo", "+algorithm.lambda_grpo.enable=true",
                    f"+algorithm.lambda_grpo.power={power}"])  # fmt: skip
    metrics: dict = {}
    out = trainer_base.PPOTrainer._compute_advantage(SimpleNamespace(config=cfg), batch, metrics)

    got = store.kv_batch_get(out.keys, "train", ["advantages", plugin.WEIGHTS_FIELD]).to_padded_tensor()
    group = torch.tensor([int(u[-1]) for u in b.uid])
    w = lambda_weights(b.responses, b.seq, group, power)  # lgrpo's weights over the whole batch
    T = got["advantages"].shape[1]
    torch.testing.assert_close(got[plugin.WEIGHTS_FIELD][:-1], w[:, :T])
    torch.testing.assert_close(got["advantages"][:-1], (_grpo_advantages(b) * w)[:, :T])
    assert not got[plugin.WEIGHTS_FIELD][-1].any()  # the padding row
    expected = tree_stats(b.responses, b.seq, group).summary()  # the padding row is not counted
    expected["prm/weight_mean"] = float(w[b.mask].mean())  # over the tokens the loss sees
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value)


def test_compute_advantage_without_the_switch_is_verl_unchanged(monkeypatch):
    b = _real_rows(_batch(seed=6))
    trainer_base, store, batch = _driver_batch(monkeypatch, b)
    cfg = _compose(["algorithm.adv_estimator=grpo"])
    metrics: dict = {}
    out = trainer_base.PPOTrainer._compute_advantage(SimpleNamespace(config=cfg), batch, metrics)
    assert not any(name.startswith("prm/") for name in metrics)
    got = store.kv_batch_get(out.keys, "train", ["advantages", plugin.WEIGHTS_FIELD])
    assert plugin.WEIGHTS_FIELD not in got.keys()  # noqa: SIM118
    advantages = got.to_padded_tensor()["advantages"]
    torch.testing.assert_close(advantages[:-1], _grpo_advantages(b)[:, : advantages.shape[1]])


def test_trainer_refuses_a_bad_config_before_verl_builds_anything():
    import verl.trainer.ppo.v1.trainer_base as trainer_base

    cfg = _compose(["algorithm.adv_estimator=grpo", "+algorithm.lambda_grpo.enable=true",
                    "actor_rollout_ref.actor.policy_loss.loss_mode=dro"])  # fmt: skip
    with pytest.raises(ValueError, match="'dro' is not exact"):
        trainer_base.PPOTrainer.__init__(SimpleNamespace(), cfg)


def test_v0_trainer_refuses_the_switch_instead_of_ignoring_it():
    import verl.trainer.ppo.ray_trainer as ray_trainer

    cfg = _compose(
        ["algorithm.adv_estimator=grpo", "+algorithm.lambda_grpo.enable=true", "trainer.use_v1=false"]
    )
    with pytest.raises(ValueError, match=r"trainer\.use_v1"):
        ray_trainer.RayPPOTrainer.__init__(SimpleNamespace(), cfg, tokenizer=None, role_worker_mapping={})


def test_multi_output_trajectories_are_refused():
    with pytest.raises(ValueError, match="several outputs"):
        plugin._check_one_output_per_trajectory(["u1_0_0", "u1_0_1", "u1_1_0"])


# --------------------------------------------------------------------------------------------------------------
# groups: equal rewards get advantage exactly 0; per-trajectory uids are refused


def _groups_batch(scores: list[list[float]], seed: int = 7) -> SimpleNamespace:
    """One group per list of ``scores`` (uid ``prompt-g``, rows interleaved across groups), responses of 1 to 9
    tokens from a 3-token vocabulary so that prefixes are shared."""
    g = torch.Generator().manual_seed(seed)
    order = sorted(((i, k) for k, s in enumerate(scores) for i in range(len(s))))  # interleave the groups
    uid = [f"prompt-{k}" for _, k in order]
    flat = torch.tensor([scores[k][i] for i, k in order])
    B, T = len(order), 9
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    responses = torch.randint(3, 6, (B, T), generator=g) * (torch.arange(T)[None, :] < lengths[:, None])
    seq = torch.arange(T)[None, :] < lengths[:, None]
    return SimpleNamespace(
        uid=uid, responses=responses, lengths=lengths, seq=seq, mask=seq.clone(), scores=flat,
        old=-torch.rand(B, T, generator=g),
    )  # fmt: skip


@pytest.mark.parametrize("norm_by_std", [True, False])
@pytest.mark.parametrize("estimator", plugin.SUPPORTED_ADV_ESTIMATORS)
def test_a_group_of_equal_rewards_gets_exactly_zero_advantage(monkeypatch, estimator, norm_by_std):
    """verl's estimator (eps 1e-6) gives −0.0147 to 8 × 0.2 and +0.056 to 8 × 0.7: with the plug-in, exactly 0."""
    b = _groups_batch([[0.2] * 8, [0.7] * 8, [1.0, 0.0, 0.0, 1.0, 0.5, 0.0, 0.2, 0.0]])
    trainer_base, store, batch = _driver_batch(monkeypatch, b)
    cfg = _compose([f"algorithm.adv_estimator={estimator}", f"algorithm.norm_adv_by_std_in_grpo={norm_by_std}",
                    "+algorithm.lambda_grpo.enable=true"])  # fmt: skip
    metrics: dict = {}
    out = trainer_base.PPOTrainer._compute_advantage(SimpleNamespace(config=cfg), batch, metrics)
    got = store.kv_batch_get(out.keys, "train", ["advantages", plugin.WEIGHTS_FIELD]).to_padded_tensor()
    T = got["advantages"].shape[1]
    group = torch.tensor([int(u[-1]) for u in b.uid])
    constant = group < 2
    assert not got["advantages"][:-1][constant].any()
    # the group with spread: (r − mean) / (std + 1e-6) by hand (statistics module), times lgrpo's weights
    import statistics

    spread = b.scores[~constant].tolist()
    mean, std = statistics.fmean(spread), statistics.stdev(spread)
    # verl 0.9.1 passes norm_adv_by_std_in_grpo to its grpo estimator only; grpo_vectorized always divides
    divide = norm_by_std or estimator == "grpo_vectorized"
    a = torch.tensor([(r - mean) / (std + 1e-6) if divide else r - mean for r in spread])
    w = lambda_weights(b.responses, b.seq, group, 1.0)[~constant, :T]
    torch.testing.assert_close(got["advantages"][:-1][~constant], a[:, None] * w, rtol=1e-5, atol=1e-6)
    assert metrics["reward/constant_group_fraction"] == pytest.approx(2 / 3)  # the padding row is not a group


def test_per_trajectory_uids_are_refused_naming_the_fix(monkeypatch):
    b = _groups_batch([[1.0], [0.0], [1.0], [0.5], [0.0], [1.0]])  # every row its own uid
    trainer_base, _, batch = _driver_batch(monkeypatch, b)
    overrides = ["algorithm.adv_estimator=grpo", "+algorithm.lambda_grpo.enable=true"]
    with pytest.raises(ValueError, match=r"uid.*actor_rollout_ref\.rollout\.n=3"):
        cfg = _compose([*overrides, "actor_rollout_ref.rollout.n=3"])
        trainer_base.PPOTrainer._compute_advantage(SimpleNamespace(config=cfg), batch, {})
    # with rollout.n = 1 every prompt has one response: singletons are what was asked for
    trainer_base, _, batch = _driver_batch(monkeypatch, b)
    trainer_base.PPOTrainer._compute_advantage(SimpleNamespace(config=_compose(overrides)), batch, {})


def test_groups_smaller_than_rollout_n_are_weighted_over_what_is_there(monkeypatch):
    # rollout.n = 4, but filtered or failed rollouts left groups of 4, 3, 2 and 1
    b = _groups_batch([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0], [1.0]])
    trainer_base, store, batch = _driver_batch(monkeypatch, b)
    cfg = _compose(["algorithm.adv_estimator=grpo", "+algorithm.lambda_grpo.enable=true",
                    "actor_rollout_ref.rollout.n=4"])  # fmt: skip
    out = trainer_base.PPOTrainer._compute_advantage(SimpleNamespace(config=cfg), batch, {})
    got = store.kv_batch_get(out.keys, "train", ["advantages", plugin.WEIGHTS_FIELD]).to_padded_tensor()
    group = torch.tensor([int(u[-1]) for u in b.uid])
    T = got["advantages"].shape[1]
    torch.testing.assert_close(got[plugin.WEIGHTS_FIELD][:-1], brute_force_lambda(b, group)[:, :T])
    # verl's own advantage for the singleton (its rule: the raw score) is kept, weighted by 1
    single = group == 3
    torch.testing.assert_close(got["advantages"][:-1][single][:, 0], b.scores[single] / (1 + 1e-6))


def brute_force_lambda(b, group: torch.Tensor) -> torch.Tensor:
    """``1/|λ(i,t)|`` by direct counting over the rows of the same group (METHOD.md §2)."""
    B, T = b.responses.shape
    w = torch.zeros(B, T)
    for i in range(B):
        for t in range(int(b.lengths[i])):
            n = sum(
                int(group[j] == group[i] and b.lengths[j] > t and torch.equal(b.responses[j, : t + 1], b.responses[i, : t + 1]))
                for j in range(B)
            )  # fmt: skip
            w[i, t] = 1.0 / n
    return w


# --------------------------------------------------------------------------------------------------------------
# Dr. GRPO's aggregation needs a fixed loss_scale_factor


def test_seq_mean_token_sum_norm_without_loss_scale_factor_depends_on_the_split():
    """Why it is refused: verl's agg_loss divides each micro-batch by its own padded length."""
    b = _batch(seed=8, holes=False)
    loss_mat = torch.randn(b.responses.shape, generator=torch.Generator().manual_seed(0))
    mask = b.mask.float()
    B = mask.shape[0]

    def split_loss(parts, factor):
        total = 0.0
        for rows in parts:
            T = int(b.lengths[rows].max())  # each micro-batch is padded to its own longest response
            total += core_algos.agg_loss(
                loss_mat[rows, :T], mask[rows, :T], "seq-mean-token-sum-norm", global_batch_size=B,
                loss_scale_factor=factor,
            )  # fmt: skip
        return float(total)

    splits = [
        [list(range(B))],
        [list(range(0, B, 2)), list(range(1, B, 2))],
        [list(range(5)), list(range(5, B))],
    ]
    # by hand: Σ_i Σ_t loss / (B · factor), the same for every split
    by_hand = float((loss_mat * mask).sum()) / (B * 16)
    for parts in splits:
        assert split_loss(parts, 16) == pytest.approx(by_hand, rel=1e-5)
    unscaled = {round(split_loss(parts, None), 6) for parts in splits}
    assert len(unscaled) > 1


@pytest.mark.parametrize("factor", [None, 1200])
def test_seq_mean_token_sum_norm_needs_loss_scale_factor(factor):
    overrides = ["algorithm.adv_estimator=grpo", "+algorithm.lambda_grpo.enable=true",
                 "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm"]  # fmt: skip
    if factor is None:
        cfg = _compose(overrides)
        with pytest.raises(ValueError, match=r"actor_rollout_ref\.actor\.loss_scale_factor"):
            plugin.LambdaGRPOSettings.from_verl_config(cfg)
    else:
        cfg = _compose([*overrides, f"actor_rollout_ref.actor.loss_scale_factor={factor}"])
        assert plugin.LambdaGRPOSettings.from_verl_config(cfg).enable
