"""Tests of the TRL engine: LambdaGRPOConfig validation, loss equivalences, multi-process weights, end-to-end runs.

Everything is built locally (tiny Qwen2 model, char-level tokenizer, see ``trl_helpers.py``); nothing from the Hub.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the suite runs with --import-mode=importlib: make trl_helpers importable

from trl import GRPOConfig, GRPOTrainer  # noqa: E402
from trl_helpers import (  # noqa: E402
    base_args,
    build_dataset,
    build_model,
    build_trainer,
    reward_digits,
)

import lgrpo.engines.trl as trl_engine  # noqa: E402
from lgrpo.engines.trl import LambdaGRPOConfig, LambdaGRPOTrainer  # noqa: E402
from lgrpo.objectives import LOSS_TYPES, lambda_weights  # noqa: E402

# ----------------------------------------------------------------------------------------------------------------
# fixtures


def brute_force_weights(
    ids: torch.Tensor, mask: torch.Tensor, group: torch.Tensor, power: float
) -> torch.Tensor:
    """|λ(i,t)|^-power by direct counting (the definition, METHOD.md §2), 0 on padding."""
    B, T = ids.shape
    w = torch.zeros(B, T)
    for i in range(B):
        for t in range(T):
            if not mask[i, t]:
                continue
            n = sum(
                int(
                    group[j] == group[i]
                    and bool(mask[j, t])
                    and torch.equal(ids[j, : t + 1], ids[i, : t + 1])
                )
                for j in range(B)
            )
            w[i, t] = n ** (-power)
    return w


@pytest.fixture(scope="module")
def pair(tmp_path_factory, model_dir, tok):
    """A stock GRPOTrainer and a LambdaGRPOTrainer on identical weights, and one generation batch of 8 rows (2 prompts
    of different lengths × 4) that gradient accumulation splits into 2 micro-batches of 4. β = 0.04 so the batch
    carries reference log-probs; the sampling and reference log-probs are perturbed so that the clip is active and
    the KL term and its gradient are not 0."""
    out = str(tmp_path_factory.mktemp("pair"))
    common = base_args(
        out,
        beta=0.04,
        top_k=2,
        max_completion_length=10,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
    )
    stock = GRPOTrainer(
        model=model_dir,
        reward_funcs=reward_digits,
        args=GRPOConfig(**common),
        train_dataset=build_dataset(),
        processing_class=tok,
    )
    ours = LambdaGRPOTrainer(
        model=model_dir,
        reward_funcs=reward_digits,
        args=LambdaGRPOConfig(**common),
        train_dataset=build_dataset(),
        processing_class=tok,
    )
    for t in (stock, ours):
        t.model.train()
        t.current_gradient_accumulation_steps = 2  # set by Trainer.train(); the loss divides by it
    torch.manual_seed(0)
    batch = ours._generate_and_score_completions(next(iter(ours.get_train_dataloader())))
    assert batch["completion_ids"].shape[0] == 8 and ours.args.steps_per_generation == 2
    assert bool((batch["prompt_mask"] == 0).any()), "prompts of different lengths: left padding is exercised"
    with torch.no_grad():
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
        att = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
        logp, _, _ = stock._get_per_token_logps_and_entropies(
            stock.model, ids, att, batch["completion_ids"].size(1)
        )
    g = torch.Generator().manual_seed(1)
    batch["old_per_token_logps"] = logp + 0.3 * torch.randn(logp.shape, generator=g)
    batch["ref_per_token_logps"] = logp + 0.5 * torch.randn(logp.shape, generator=g)
    return stock, ours, batch


def micro_batches(batch: dict, n: int = 2) -> list[dict]:
    """The generation batch split row-wise into ``n`` micro-batches, as TRL splits it over accumulation steps."""
    rows = batch["completion_ids"].shape[0]
    size = rows // n
    out = []
    for k in range(n):
        part = {}
        for key, v in batch.items():
            is_rows = isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == rows
            part[key] = v[k * size : (k + 1) * size] if is_rows else v
        out.append(part)
    return out


def loss_and_grads(trainer, batch) -> tuple[float, list[torch.Tensor]]:
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer._compute_loss(trainer.model, dict(batch))
    loss.backward()
    grads = [p.grad.detach().clone() for p in trainer.model.parameters() if p.grad is not None]
    return float(loss), grads


def set_options(trainer, loss_type: str, beta: float, **attrs) -> None:
    trainer.loss_type = loss_type
    trainer.beta = beta
    for k, v in attrs.items():
        setattr(trainer, k, v)


# ----------------------------------------------------------------------------------------------------------------
# config and init validation


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"weighting": "lamda"}, "weighting"),
        ({"lambda_power": -1.0}, "lambda_power"),
        ({"lambda_power": float("nan")}, "lambda_power"),
        ({"lambda_power": "big"}, "lambda_power"),
        ({"loss_type": "sapo"}, "loss_type"),
        ({"loss_type": "cispo"}, "loss_type"),
    ],
)
def test_config_rejects_bad_values(tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field):
        LambdaGRPOConfig(**base_args(str(tmp_path), **kwargs))


def test_config_defaults(tmp_path):
    cfg = LambdaGRPOConfig(**base_args(str(tmp_path)))
    assert (cfg.weighting, cfg.lambda_power, cfg.log_prm_stats, cfg.rollout_log) == (
        "lambda",
        1.0,
        True,
        False,
    )
    assert isinstance(cfg, GRPOConfig)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"importance_sampling_level": "sequence", "loss_type": "grpo"}, "importance_sampling_level"),
        ({"sapo_temperature_neg": 2.0}, "sapo_temperature_neg"),
        ({"vespo_k_pos": 1.0}, "vespo_k_pos"),
    ],
)
def test_trainer_refuses_options_off_the_allow_list(tmp_path, tok, kwargs, name):
    args = LambdaGRPOConfig(**base_args(str(tmp_path), **kwargs))
    with pytest.raises(ValueError, match=name):
        build_trainer(tok, args)


def test_beta_with_a_model_built_in_memory_is_refused_clearly(tmp_path, tok):
    """TRL would fail deep inside with "Repo id must use alphanumeric chars"; the error says what to do."""
    args = LambdaGRPOConfig(**base_args(str(tmp_path), beta=0.04))
    with pytest.raises(ValueError, match=r"model: with beta != 0 .*_name_or_path.*save_pretrained"):
        build_trainer(tok, args)


def test_allow_list_names_real_options_and_refuses_new_ones(tmp_path, monkeypatch):
    """Every allowed name is a GRPOConfig field; a field a later TRL adds is refused once set, by name."""
    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    assert names >= trl_engine.ALLOWED_OPTIONS, trl_engine.ALLOWED_OPTIONS - names

    @dataclasses.dataclass
    class LaterGRPOConfig(GRPOConfig):  # stands for the GRPOConfig of a TRL release after 1.16
        token_bonus: float = 0.0

    monkeypatch.setattr(trl_engine, "GRPOConfig", LaterGRPOConfig)
    assert trl_engine._refused_options(LaterGRPOConfig(**base_args(str(tmp_path)))) == []
    bad = trl_engine._refused_options(LaterGRPOConfig(**base_args(str(tmp_path), token_bonus=0.5)))
    assert len(bad) == 1 and bad[0].startswith("token_bonus=0.5")


def test_trainer_accepts_allowed_options(tmp_path, tok):
    kwargs = dict(
        delta=2.0, entropy_coef=0.01, top_entropy_quantile=0.5, num_iterations=2, scale_rewards="none"
    )
    build_trainer(tok, LambdaGRPOConfig(**base_args(str(tmp_path), **kwargs)))


def test_trainer_rejects_plain_config_with_unsupported_loss(tmp_path, tok):
    args = GRPOConfig(**base_args(str(tmp_path), loss_type="sapo"))
    with pytest.raises(ValueError, match="loss_type"):
        build_trainer(tok, args)


# ----------------------------------------------------------------------------------------------------------------
# (a) uniform == stock TRL (regression); (b) uniform and λ == the loss written out by hand, values and gradients

CASES = [(lt, beta) for lt in LOSS_TYPES for beta in (0.0, 0.04)]


@pytest.mark.parametrize(("loss_type", "beta"), CASES)
def test_uniform_matches_stock_grpo_trainer(pair, loss_type, beta):
    stock, ours, batch = pair
    uniform = {k: v for k, v in batch.items() if k != "lambda_weights"}  # what weighting="uniform" stores
    set_options(stock, loss_type, beta)
    set_options(ours, loss_type, beta)
    ref_loss, ref_grads = loss_and_grads(stock, uniform)
    loss, grads = loss_and_grads(ours, uniform)
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-7)
    assert len(grads) == len(ref_grads) > 0
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-7)
    assert abs(ref_loss) > 1e-6  # the comparison is not vacuous


@pytest.mark.parametrize("bias_correction", [True, False])
def test_uniform_matches_stock_with_token_masks(pair, bias_correction):
    """TRL's entropy mask and off-policy mask multiply the policy term only; folded into the advantages here."""
    stock, ours, batch = pair
    uniform = {k: v for k, v in batch.items() if k != "lambda_weights"}
    for t in (stock, ours):
        set_options(t, "grpo", 0.04, top_entropy_quantile=0.5, off_policy_mask_threshold=0.05)
        t.args.use_bias_correction_kl = bias_correction
    try:
        ref_loss, ref_grads = loss_and_grads(stock, uniform)
        loss, grads = loss_and_grads(ours, uniform)
    finally:
        for t in (stock, ours):
            set_options(t, "grpo", 0.04, top_entropy_quantile=1.0, off_policy_mask_threshold=None)
            t.args.use_bias_correction_kl = True
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-7)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(("loss_type", "beta"), CASES)
def test_uniform_matches_stock_with_tool_mask(pair, loss_type, beta):
    """Tool-output tokens in the middle of a completion (TRL's ``tool_mask`` 0 there) leave the loss mask
    non-contiguous: they are dropped from the loss and from TRL's denominators, as in stock TRL."""
    stock, ours, batch = pair
    uniform = {k: v for k, v in batch.items() if k != "lambda_weights"}
    tool = torch.ones_like(batch["completion_mask"])
    lengths = batch["completion_mask"].sum(1)
    for row in range(0, tool.shape[0], 2):  # a 2-token tool result after the first token of every other row
        if lengths[row] >= 4:
            tool[row, 1:3] = 0
    assert bool((tool == 0).any())
    uniform["tool_mask"] = tool
    set_options(stock, loss_type, beta)
    set_options(ours, loss_type, beta)
    ref_loss, ref_grads = loss_and_grads(stock, uniform)
    loss, grads = loss_and_grads(ours, uniform)
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-7)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-7)


def hand_loss(
    logp: torch.Tensor,
    batch: dict,
    w: torch.Tensor,
    loss_type: str,
    beta: float,
    bias_correction: bool,
    accumulation: int = 2,
    max_len: int = 10,
    kl_weights: torch.Tensor | None = None,
    dapo_tokens: float | None = None,
) -> torch.Tensor:
    """The loss of one optimizer step over the whole generation batch, written out row by row from the definitions
    (METHOD.md §1, §6; TRL's documented aggregation), summed over ``accumulation`` equal micro-batches of rows:

        ℓ_it = w_it · ( −min(P·a_i, clip(P, 0.8, 1.2)·a_i) + β·D_it·(P if bias_correction else 1) )
                                                    (kl_weights replace w_it in the KL term, to test the test)
        grpo:    (1/n_micro) Σ_micro mean_i ( Σ_t ℓ_it / n_i )
        bnpo:    (1/n_micro) Σ_micro Σ ℓ / (tokens of the micro-batch)
        dr_grpo: (1/n_micro) Σ_micro Σ ℓ / (rows of the micro-batch · max_completion_length)
        dapo:    Σ ℓ / (tokens of the whole generation batch, or dapo_tokens)
    """
    mask = batch["completion_mask"] * batch.get("tool_mask", torch.ones_like(batch["completion_mask"]))
    rows = logp.shape[0]
    per_row, counts = [], []  # Σ_t ℓ_it and n_i of each row
    for i in range(rows):
        m = mask[i].bool()
        lp, old, ref = logp[i][m], batch["old_per_token_logps"][i][m], batch["ref_per_token_logps"][i][m]
        a = float(batch["advantages"][i])
        p = torch.exp(lp - old)
        policy = -torch.minimum(p * a, p.clamp(0.8, 1.2) * a)
        d = torch.exp(ref - lp) - (ref - lp) - 1
        kl = beta * d * (p if bias_correction else 1.0)
        kw = w if kl_weights is None else kl_weights
        per_row.append((w[i][m] * policy + kw[i][m] * kl).sum())
        counts.append(int(m.sum()))
    size = rows // accumulation
    micro = [range(k * size, (k + 1) * size) for k in range(accumulation)]
    if loss_type == "dapo":
        return sum(per_row) / (sum(counts) if dapo_tokens is None else dapo_tokens)
    if loss_type == "grpo":
        parts = [sum(per_row[i] / counts[i] for i in r) / len(r) for r in micro]
    elif loss_type == "bnpo":
        parts = [sum(per_row[i] for i in r) / sum(counts[i] for i in r) for r in micro]
    else:  # dr_grpo
        parts = [sum(per_row[i] for i in r) / (len(r) * max_len) for r in micro]
    return sum(parts) / accumulation


def accumulated_loss_and_grads(trainer, batch, n: int = 2) -> tuple[float, list[torch.Tensor]]:
    """The trainer's loss summed over ``n`` micro-batches, and the gradient they accumulate (as Trainer.train does)."""
    trainer.model.zero_grad(set_to_none=True)
    total = 0.0
    for part in micro_batches(batch, n):
        loss = trainer._compute_loss(trainer.model, dict(part))
        loss.backward()
        total += float(loss)
    return total, [p.grad.detach().clone() for p in trainer.model.parameters() if p.grad is not None]


def hand_loss_and_grads(
    stock, batch, w, loss_type, beta, bias_correction, **kw
) -> tuple[float, list[torch.Tensor]]:
    """hand_loss on the log-probs of TRL's own forward pass (stock trainer, same weights), and its gradient."""
    stock.model.zero_grad(set_to_none=True)
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    att = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    logp, _, _ = stock._get_per_token_logps_and_entropies(
        stock.model, ids, att, batch["completion_ids"].size(1)
    )
    loss = hand_loss(logp, batch, w, loss_type, beta, bias_correction, **kw)
    loss.backward()
    return float(loss), [p.grad.detach().clone() for p in stock.model.parameters() if p.grad is not None]


HAND_CASES = [(lt, beta, bc) for lt in LOSS_TYPES for beta, bc in ((0.0, True), (0.04, True), (0.04, False))]


@pytest.mark.parametrize("weighting", ["lambda", "uniform"])
@pytest.mark.parametrize(("loss_type", "beta", "bias_correction"), HAND_CASES)
def test_loss_matches_hand_computation(pair, tok, weighting, loss_type, beta, bias_correction):
    """Values and gradients over a gradient-accumulation window of 2 micro-batches, with a tool-output span in some
    completions (a non-contiguous loss mask), against hand_loss with brute-force λ weights."""
    stock, ours, batch = pair
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    batch = dict(batch)
    tool = torch.ones_like(mask)
    tool[0, 1:3] = tool[5, 2:4] = 0
    batch["tool_mask"] = tool
    batch["num_items_in_batch"] = (
        mask * tool
    ).sum()  # TRL counts the loss mask's tokens of the generation batch
    group = torch.arange(ids.shape[0]) // ours.num_generations
    w = brute_force_weights(
        ids, mask, group, 1.0
    )  # process sets count every sampled token, tool output included
    if weighting == "uniform":
        batch.pop("lambda_weights")
        w = mask.float()
    else:
        torch.testing.assert_close(batch["lambda_weights"], w)
        assert bool((w[mask.bool()] < 1).any()), "the batch should share prefixes, else λ weights are all 1"
    set_options(ours, loss_type, beta)
    ours.args.use_bias_correction_kl = bias_correction
    try:
        loss, grads = accumulated_loss_and_grads(ours, batch)
    finally:
        ours.args.use_bias_correction_kl = True
    ref_loss, ref_grads = hand_loss_and_grads(stock, batch, w, loss_type, beta, bias_correction)
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-7)
    assert len(grads) == len(ref_grads) > 0
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-7)

    # the check can fail: the hand loss with the other weighting, or with an unweighted KL term, is far off
    other = mask.float() if weighting == "lambda" else brute_force_weights(ids, mask, group, 1.0)
    far, far_grads = hand_loss_and_grads(stock, batch, other, loss_type, beta, bias_correction)
    assert abs(far - ref_loss) > 100 * (1e-5 * abs(ref_loss) + 1e-7)
    assert max(float((a - b).abs().max()) for a, b in zip(far_grads, ref_grads)) > 1e-4
    if beta and weighting == "lambda":  # TRL's unweighted KL term would not do
        far, _ = hand_loss_and_grads(
            stock, batch, w, loss_type, beta, bias_correction, kl_weights=mask.float()
        )
        assert abs(far - ref_loss) > 100 * (1e-5 * abs(ref_loss) + 1e-7)


@pytest.mark.parametrize("bias_correction", [True, False])
def test_dapo_when_one_generation_batch_spans_two_optimizer_steps(pair, bias_correction):
    """steps_per_generation=4, gradient_accumulation_steps=2: TRL's dapo divides every optimizer step by half the
    generation batch's tokens (its expected share). First step (rows 0-3, micro-batches of 2 rows), λ and β > 0."""
    stock, ours, batch = pair
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    group = torch.arange(ids.shape[0]) // ours.num_generations
    w = brute_force_weights(ids, mask, group, 1.0)
    first = micro_batches(batch, 2)[0]  # the rows of the first optimizer step
    set_options(ours, "dapo", 0.04)
    ours.args.steps_per_generation, ours.args.use_bias_correction_kl = 4, bias_correction
    try:
        loss, grads = accumulated_loss_and_grads(ours, first)
    finally:
        ours.args.steps_per_generation, ours.args.use_bias_correction_kl = 2, True
    tokens = float(mask.sum()) / 2
    ref_loss, ref_grads = hand_loss_and_grads(
        stock, first, w[:4], "dapo", 0.04, bias_correction, dapo_tokens=tokens
    )
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-7)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-7)
    far, _ = hand_loss_and_grads(stock, first, w[:4], "dapo", 0.04, bias_correction, dapo_tokens=2 * tokens)
    assert abs(far - ref_loss) > 100 * (1e-5 * abs(ref_loss) + 1e-7)


# ----------------------------------------------------------------------------------------------------------------
# (c) two processes whose groups straddle the ranks compute the weights of one process over the whole batch


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The output folder of one torchrun launch of ``trl_dist_worker.py`` (2 processes, gloo)."""
    out = tmp_path_factory.mktemp("two_processes")
    pythonpath = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}
    port = 29500 + os.getpid() % 1000
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(HERE / "trl_dist_worker.py"), str(out)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_two_process_weights_match_one_process(two_processes, tok):
    tmp_path = two_processes
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    k = ranks[0]["num_generations"]
    rows = [r["completion_ids"].shape[0] for r in ranks]
    assert rows[0] % k != 0, "the test needs a group that straddles the two ranks"
    assert ranks[0]["prompts"][-1] == ranks[1]["prompts"][0]
    assert (
        ranks[0]["packing"] == ranks[1]["packing"] == (True, True)
    )  # the self-check ran, passed, was shared

    # the 1-process computation over the whole generation batch, in global (rank-major) order
    T = max(r["completion_ids"].shape[1] for r in ranks)
    pad = lambda x: torch.nn.functional.pad(x, (0, T - x.shape[1]))  # noqa: E731
    ids = torch.cat([pad(r["completion_ids"]) for r in ranks])
    mask = torch.cat([pad(r["completion_mask"]) for r in ranks])
    group = torch.arange(ids.shape[0]) // k
    whole = lambda_weights(ids, mask, group, 1.0)
    torch.testing.assert_close(whole, brute_force_weights(ids, mask, group, 1.0))
    got = torch.cat([pad(r["lambda_weights"]) for r in ranks])
    torch.testing.assert_close(got, whole)
    # counting on each rank alone would have given different weights for the straddling group
    local = torch.cat(
        [pad(lambda_weights(r["completion_ids"], r["completion_mask"], group[: rows[0]] if i == 0 else group[rows[0] :]))
         for i, r in enumerate(ranks)]
    )  # fmt: skip
    assert not torch.allclose(local, whole)
    # both ranks log the same whole-batch tree statistics
    assert ranks[0]["metrics"] == ranks[1]["metrics"] and "prm/path_depth_mean" in ranks[0]["metrics"]
    # the rollout log holds every completion of both ranks once, in global order, with whole-batch group ids
    lines = [json.loads(x) for x in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert len(lines) == ids.shape[0]
    assert [x["group"] for x in lines] == group.tolist() and {x["step"] for x in lines} == {1}
    assert [x["prompt"] for x in lines] == ranks[0]["prompts"] + ranks[1]["prompts"]
    assert [x["prompt_ids"] for x in lines] == ranks[0]["prompt_ids"] + ranks[1]["prompt_ids"]  # as trained
    for x, row, n in zip(lines, ids, mask.sum(1).tolist()):
        assert x["completion_ids"] == row[:n].tolist()
        assert x["reward"] == pytest.approx(reward_digits([x["prompt"]], [x["completion"]])[0])
    for g in set(group.tolist()):
        rewards = torch.tensor([x["reward"] for x in lines if x["group"] == g])
        expected = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
        got_adv = torch.tensor([x["advantage"] for x in lines if x["group"] == g])
        torch.testing.assert_close(got_adv, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["full", "lora"])
def test_two_process_tree_packing_syncs_gradients(two_processes, name):
    """Tree packing under DDP (2 processes), every model call packed, β > 0, full fine-tune and LoRA: the forward
    passes go through the DDP wrapper, so the gradients it averaged are equal on both ranks (and not zero)."""
    logs = [json.loads((two_processes / f"{name}-rank{r}.json").read_text()) for r in range(2)]
    assert len(logs[0]) == 2 and all(h["packing/packed_fraction"] == 1.0 for h in logs[0])
    assert logs[0][1]["kl"] > 0  # β > 0 and the policy has moved from the reference
    for step in (1, 2):
        a, b = (torch.load(two_processes / f"{name}-rank{r}-step{step}.pt") for r in range(2))
        assert a.keys() == b.keys() and len(a) > 0
        assert all(("lora_" in n) == (name == "lora") for n in a)  # LoRA: only the adapter trains
        for n in a:
            torch.testing.assert_close(a[n], b[n], rtol=0, atol=0, msg=n)
        assert sum(float(g.abs().sum()) for g in a.values()) > 0


def test_uneven_rows_per_process_are_a_clear_error(tmp_path):
    """Processes with different numbers of rows (a custom sampler or rollout function) used to abort inside gloo's
    gather; every process now raises a ValueError that names the row counts."""
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    port = 29500 + (os.getpid() + 500) % 1000
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(HERE / "trl_uneven_worker.py"), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rank in range(2):
        message = (tmp_path / f"rank{rank}.txt").read_text()
        assert "hold [6, 5] rows" in message and "same number on every process" in message, message


# ----------------------------------------------------------------------------------------------------------------
# end to end


def test_train_writes_rollouts_and_prm_metrics(tmp_path, tok):
    args = LambdaGRPOConfig(**base_args(str(tmp_path), rollout_log=True, top_k=3))
    trainer = build_trainer(tok, args)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2
    for h in logs:
        for name in ("prm/flat_fraction", "prm/path_depth_mean", "prm/intermediate_proportion_mean",
                     "prm/process_set_size_mean", "prm/shared_token_fraction", "reward", "entropy",
                     "clip_ratio/region_mean"):  # fmt: skip
            assert name in h, name
        assert h["prm/path_depth_mean"] >= 1 and h["prm/process_set_size_mean"] >= 1

    lines = [json.loads(x) for x in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * args.generation_batch_size
    assert {x["step"] for x in lines} == {1, 2}
    for x in lines:
        assert set(x) == {"step", "group", "prompt", "prompt_ids", "completion", "completion_ids", "reward",
                          "advantage"}  # fmt: skip
        assert x["prompt_ids"] == tok(x["prompt"])["input_ids"]  # a plain-text prompt, tokenized as TRL does
        assert isinstance(x["completion_ids"], list) and isinstance(x["completion"], str)
        assert x["completion"] == tok.decode(x["completion_ids"], skip_special_tokens=True)
        assert x["reward"] == pytest.approx(reward_digits([x["prompt"]], [x["completion"]])[0])
    for step in (1, 2):
        rows = [x for x in lines if x["step"] == step]
        by_group: dict[int, list] = {}
        for x in rows:
            by_group.setdefault(x["group"], []).append(x)
        assert all(len(v) == args.num_generations for v in by_group.values())
        assert all(len({x["prompt"] for x in v}) == 1 for v in by_group.values())
        for v in by_group.values():  # the plain GRPO advantage (METHOD.md §1), not a λ-weighted one
            r = torch.tensor([x["reward"] for x in v])
            expected = (r - r.mean()) / (r.std() + 1e-4)
            torch.testing.assert_close(
                torch.tensor([x["advantage"] for x in v]), expected, rtol=1e-4, atol=1e-5
            )


def test_weights_follow_rows_through_buffering(tmp_path, tok):
    """steps_per_generation and num_iterations > 1: the weights are computed once per generation batch and stay
    attached to their rows through TRL's shuffle and split."""
    args = LambdaGRPOConfig(
        **base_args(str(tmp_path), steps_per_generation=2, num_iterations=2, max_steps=4, top_k=2)
    )
    trainer = build_trainer(tok, args)
    generated, seen = [], []
    gen, loss_fn = trainer._generate_and_score_completions, trainer._compute_loss

    def record_gen(inputs):
        out = gen(inputs)
        keys = ("prompt_ids", "completion_ids", "completion_mask", "lambda_weights")
        generated.append({k: out[k].clone() for k in keys})
        return out

    def record_loss(model, inputs):
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)  # a row's identity
        seen.append((ids, inputs["lambda_weights"].clone()))
        return loss_fn(model, inputs)

    trainer._generate_and_score_completions, trainer._compute_loss = record_gen, record_loss
    trainer.train()
    assert len(generated) == 1 and len(seen) == 4  # one generation batch, used by 4 micro-steps
    g = generated[0]
    group = torch.arange(g["completion_ids"].shape[0]) // args.num_generations
    torch.testing.assert_close(
        g["lambda_weights"], brute_force_weights(g["completion_ids"], g["completion_mask"], group, 1.0)
    )
    full = torch.cat([g["prompt_ids"], g["completion_ids"]], 1)
    rows = {tuple(i.tolist()): w for i, w in zip(full, g["lambda_weights"])}
    for ids, w in seen:
        for i, wi in zip(ids, w):
            torch.testing.assert_close(wi, rows[tuple(i.tolist())])


def test_uniform_stores_no_weights_and_can_skip_stats(tmp_path, tok):
    args = LambdaGRPOConfig(**base_args(str(tmp_path), weighting="uniform", log_prm_stats=False, max_steps=1))
    trainer = build_trainer(tok, args)
    trainer.model.train()
    batch = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    assert "lambda_weights" not in batch
    assert not any(k.startswith("prm/") for k in trainer._metrics["train"])
    assert not (tmp_path / "rollouts.jsonl").exists()


def test_truncated_completions_stay_in_process_sets_and_log(tmp_path, tok):
    """mask_truncated_completions removes truncated rows from the loss, not from their group's process tree."""
    args = LambdaGRPOConfig(
        **base_args(
            str(tmp_path), mask_truncated_completions=True, rollout_log=True, top_k=2, max_completion_length=4
        )
    )
    trainer = build_trainer(tok, args)
    trainer.model.train()
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    dropped = mask.sum(1) == 0
    assert bool(dropped.any()), "some completions should be truncated at 4 tokens"
    sampled = (ids != tok.pad_token_id).long()  # no pad token inside a completion in this vocabulary
    group = torch.arange(ids.shape[0]) // args.num_generations
    torch.testing.assert_close(batch["lambda_weights"], brute_force_weights(ids, sampled, group, 1.0))
    lines = [json.loads(x) for x in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert [len(x["completion_ids"]) for x in lines] == sampled.sum(1).tolist()


def test_evaluate_uses_weights_and_logs_prm_metrics(tmp_path, tok):
    args = LambdaGRPOConfig(**base_args(str(tmp_path), per_device_eval_batch_size=4, top_k=2))
    trainer = build_trainer(tok, args, eval_dataset=build_dataset(4, seed=1))
    seen = []
    loss_fn = trainer._compute_loss

    def record_loss(model, inputs):
        seen.append("lambda_weights" in inputs)
        return loss_fn(model, inputs)

    trainer._compute_loss = record_loss
    metrics = trainer.evaluate()
    assert seen and all(seen)
    assert "eval_loss" in metrics and "eval_prm/path_depth_mean" in metrics


def test_rollout_groups_stay_unique_when_one_step_sees_several_generation_batches(tmp_path, tok):
    # gradient_accumulation_steps=2 with steps_per_generation=1: two generation batches per optimizer step
    args = LambdaGRPOConfig(
        **base_args(
            str(tmp_path),
            rollout_log=True,
            max_steps=1,
            gradient_accumulation_steps=2,
            steps_per_generation=1,
        )
    )
    trainer = build_trainer(tok, args)
    trainer.train()
    lines = [json.loads(x) for x in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert {x["step"] for x in lines} == {1}
    assert len(lines) == 2 * args.generation_batch_size
    by_group: dict[int, list] = {}
    for x in lines:
        by_group.setdefault(x["group"], []).append(x)
    assert len(by_group) == len(lines) // args.num_generations
    assert all(
        len(v) == args.num_generations and len({x["prompt"] for x in v}) == 1 for v in by_group.values()
    )


# ----------------------------------------------------------------------------------------------------------------
# output_dir as a run folder: metrics.jsonl as training goes, resumable, drawn by `lgrpo report`


def test_output_dir_holds_the_logged_metrics_once_across_a_resume(tmp_path, tok):
    """TRL writes its log history only into checkpoints; the trainer appends each logged dict to
    ``<output_dir>/metrics.jsonl`` (checked against TRL's own ``log_history``), and a run resumed from an earlier
    checkpoint drops what the first run logged past it, so every step is there once."""
    args = LambdaGRPOConfig(
        **base_args(
            str(tmp_path), max_steps=3, save_strategy="steps", save_steps=1, rollout_log=True, top_k=2
        )
    )
    first = build_trainer(tok, args)
    first.train()
    history = [h for h in first.state.log_history if "train_runtime" not in h]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    for line, h in zip(lines, history):
        assert line.keys() == h.keys() and line["step"] == h["step"]
        for k, v in h.items():
            assert line[k] == pytest.approx(v, nan_ok=True), k
    assert {"reward", "prm/path_depth_mean", "prm/flat_fraction"} <= lines[0].keys()
    config = json.loads((tmp_path / "trainer_config.json").read_text())
    assert (config["weighting"], config["lambda_power"], config["seed"]) == ("lambda", 1.0, 0)

    # as if the first run had been killed after step 3 and restarted from checkpoint-1
    second = build_trainer(tok, args)
    second.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert lines[0]["reward"] == pytest.approx(history[0]["reward"])  # step 1 is the first run's line
    rollouts = [json.loads(x)["step"] for x in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert sorted(rollouts) == [s for s in (1, 2, 3) for _ in range(args.generation_batch_size)]

    # a fresh run in the same output_dir starts the file anew
    build_trainer(tok, LambdaGRPOConfig(**base_args(str(tmp_path), max_steps=1, top_k=2))).train()
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1]


def test_report_draws_a_trainer_output_dir(tmp_path, tok):
    from lgrpo.cli import main

    out = tmp_path / "grpo"
    args = LambdaGRPOConfig(**base_args(str(out), max_steps=2, weighting="uniform", top_k=2))
    build_trainer(tok, args).train()
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| GRPO |" in report and "no held-out accuracy logged" in report
    assert (tmp_path / "report" / "curves.png").is_file() and (tmp_path / "report" / "prm.png").is_file()
    peaks = json.loads((tmp_path / "report" / "report.json").read_text())["peaks"]
    assert peaks[0]["arm"] == "GRPO" and peaks[0]["seeds_with_eval"] == 0


# ----------------------------------------------------------------------------------------------------------------
# a group whose rewards are all equal: advantage exactly 0 in both arms (the one deviation from stock TRL)


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
@pytest.mark.parametrize("weighting", ["lambda", "uniform"])
def test_a_group_of_equal_rewards_gets_exactly_zero_advantage_and_loss(
    tmp_path, tok, weighting, scale_rewards
):
    """Two groups of 8: the first prompt's completions all score 0.2, the other's the digit share. TRL's
    ``(r − mean)/(std + 1e-4)`` gives the first group −1.49e-4 each (a non-zero loss) and its ``frac_reward_zero_std``
    counts no group; here the group's advantages and loss are exactly 0 and ``reward/constant_group_fraction`` is 1/2.
    """
    import statistics

    const_r = torch.full((8,), 0.2)
    assert (const_r - const_r.mean()).abs().max() > 0  # float32 rounding: TRL's formula is not 0 here
    scored: list[float] = []

    def reward(prompts, completions, **kw):
        out = [0.2 if p == prompts[0] else r for p, r in zip(prompts, reward_digits(prompts, completions))]
        scored.extend(out)
        return out

    args = LambdaGRPOConfig(
        **base_args(
            str(tmp_path),
            weighting=weighting,
            scale_rewards=scale_rewards,
            num_generations=8,
            per_device_train_batch_size=16,
            max_completion_length=6,
        )
    )
    trainer = LambdaGRPOTrainer(
        model=build_model(tok), reward_funcs=reward, args=args, train_dataset=build_dataset(),
        processing_class=tok,
    )  # fmt: skip
    trainer.model.train()
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    assert len(scored) == 16 and ("lambda_weights" in batch) == (weighting == "lambda")
    const = (batch["prompt_ids"] == batch["prompt_ids"][0]).all(1)
    assert const.tolist() == [True] * 8 + [False] * 8
    adv = batch["advantages"]
    assert torch.equal(adv[const], torch.zeros(8))
    # the other group by hand (statistics module), with TRL's formula for each scale_rewards
    spread = scored[8:]
    assert len(set(spread)) > 1, "the second group needs reward spread"
    std = {"group": statistics.stdev(spread), "batch": statistics.stdev(scored), "none": None}[scale_rewards]
    mean = statistics.fmean(spread)
    expect = [(r - mean) / (std + 1e-4) if std is not None else r - mean for r in spread]
    torch.testing.assert_close(
        adv[~const].double(), torch.tensor(expect, dtype=torch.float64), rtol=1e-5, atol=1e-6
    )
    metrics = trainer._metrics["train"]
    assert metrics["reward/constant_group_fraction"] == [0.5]
    assert metrics["frac_reward_zero_std"] == [0.0]  # TRL's isclose misses the constant group
    assert list(trainer._logs["advantages"])[:8] == [0.0] * 8  # TRL's completions table
    # the constant group's loss and gradients are exactly 0, in either arm
    rows = {
        k: v[:8] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == 16 else v
        for k, v in batch.items()
    }
    trainer.current_gradient_accumulation_steps = 1
    loss, grads = loss_and_grads(trainer, rows)
    assert loss == 0.0 and all(not g.any() for g in grads)
