"""Tree packing in the TRL engine: packed log-probs, losses and gradients equal TRL's padded ones; training runs.

The reference is TRL's own ``GRPOTrainer._get_per_token_logps_and_entropies`` (the padded batch, fused LM head).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from transformers import Qwen2ForCausalLM
from trl import GRPOTrainer
from trl_helpers import base_args, build_dataset, build_model, reward_digits

from lgrpo.engines.trl import LambdaGRPOConfig, LambdaGRPOTrainer

RTOL = 1e-5


def trainer(tok, out, model=None, **overrides):
    args = LambdaGRPOConfig(**base_args(str(out), **overrides))
    return LambdaGRPOTrainer(
        model=model if model is not None else build_model(tok, layers=2),
        reward_funcs=reward_digits,
        args=args,
        train_dataset=build_dataset(),
        processing_class=tok,
    )


def rel(a, b) -> float:
    return float(((a - b).abs().max() / b.abs().max().clamp(min=1e-6)).detach())


def generation_batch(t):
    t.model.train()
    torch.manual_seed(0)
    return t._generate_and_score_completions(next(iter(t.get_train_dataloader())))


@pytest.mark.parametrize("mode", ["tree", "prompt_once"])
@pytest.mark.parametrize("lora", [False, True])
def test_packed_loss_and_grads_equal_unpacked(tmp_path, tok, model_dir, lora, mode):
    """One generation batch (8 rows = 2 groups of 4, β = 0.04, perturbed old log-probs so the clip acts): packed log-probs,
    reference log-probs (LoRA: adapter disabled), loss and gradients equal the padded path's."""
    kw = dict(beta=0.04, top_k=2, max_completion_length=10, per_device_train_batch_size=8, tree_packing=mode)
    kw["entropy_coef"] = 0.05  # TRL's entropy bonus: its gradient flows through the packed entropies
    kw["tree_packing_always"] = True
    if lora:
        from peft import LoraConfig

        model = build_model(tok, layers=2)
        t = LambdaGRPOTrainer(
            model=model,
            reward_funcs=reward_digits,
            args=LambdaGRPOConfig(**base_args(str(tmp_path), **kw)),
            train_dataset=build_dataset(),
            processing_class=tok,
            peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False),
        )
    else:
        t = trainer(tok, tmp_path, model=model_dir, **kw)
    batch = generation_batch(t)
    assert t._metrics["train"]["packing/packed_fraction"] == [1.0]  # the reference pass ran packed
    assert t._metrics["train"]["packing/tree_fraction"] == [float(mode == "tree")]
    assert t._packing_checked and t.tree_packing  # the first-use self-check ran and passed
    assert 0 < t._metrics["train"]["packing/completion_unique_fraction"][0] <= 1
    assert 0 < t._metrics["train"]["packing/unique_token_fraction"][0] < 1
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    att = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    T = batch["completion_ids"].shape[1]
    with torch.no_grad():
        logp, ent, _ = t._get_per_token_logps_and_entropies(
            t.model, ids, att, T, batch_size=4, compute_entropy=True
        )
        stock_logp, stock_ent, _ = GRPOTrainer._get_per_token_logps_and_entropies(
            t, t.model, ids, att, T, compute_entropy=True
        )
    m = batch["completion_mask"].bool()
    assert rel(logp[m], stock_logp[m]) <= RTOL and rel(ent[m], stock_ent[m]) <= RTOL
    # reference log-probs of the batch (computed packed) against TRL's padded reference pass
    if lora:
        with t.model.disable_adapter(), torch.no_grad():
            ref = GRPOTrainer._get_per_token_logps_and_entropies(t, t.model, ids, att, T)[0]
        assert rel(batch["ref_per_token_logps"][m], ref[m]) <= RTOL
    g = torch.Generator().manual_seed(1)
    batch["old_per_token_logps"] = stock_logp + 0.3 * torch.randn(stock_logp.shape, generator=g)
    batch["ref_per_token_logps"] = stock_logp + 0.1 * torch.randn(stock_logp.shape, generator=g)

    t.current_gradient_accumulation_steps = 2  # set by TRL's training loop
    results = {}
    for packed in (True, False):
        t.tree_packing = packed
        for loss_type in ("grpo", "dapo"):
            t.loss_type = loss_type
            t.model.zero_grad(set_to_none=True)
            loss = t._compute_loss(t.model, dict(batch))
            loss.backward()
            grads = [p.grad.clone() for p in t.model.parameters() if p.grad is not None]
            results[packed, loss_type] = (loss.detach(), grads)
    for loss_type in ("grpo", "dapo"):
        (lp, gp), (lu, gu) = results[True, loss_type], results[False, loss_type]
        assert rel(lp, lu) <= RTOL, loss_type
        assert len(gp) == len(gu) > 0
        assert max(rel(a, b) for a, b in zip(gp, gu)) <= RTOL, loss_type


def test_train_first_step_loss_same_with_and_without_packing(tmp_path, tok, model_dir):
    """A short run with μ = 2, two micro-batches per generation (shuffled rows) and gradient accumulation: the same
    first-step loss and entropy, and (plain SGD, so the update is the gradient) the same parameter update."""
    kw = dict(steps_per_generation=2, num_iterations=2, gradient_accumulation_steps=2, max_steps=1, top_k=2)
    kw.update(beta=0.02, optim="sgd", learning_rate=0.5)
    logs, updates = {}, {}
    for packed in (False, True):
        torch.manual_seed(0)
        t = trainer(
            tok, tmp_path / str(packed), model_dir, tree_packing=packed, tree_packing_always=True, **kw
        )
        before = [p.detach().clone() for p in t.model.parameters()]
        t.train()
        logs[packed] = next(h for h in t.state.log_history if "loss" in h)
        updates[packed] = torch.cat(
            [(p.detach() - b).flatten() for p, b in zip(t.model.parameters(), before)]
        )
    assert logs[True]["loss"] == pytest.approx(logs[False]["loss"], abs=2e-4)
    assert logs[True]["entropy"] == pytest.approx(logs[False]["entropy"], rel=RTOL)
    assert float(updates[False].abs().max()) > 1e-4  # the step did move the weights
    assert rel(updates[True], updates[False]) <= 1e-4
    assert "packing/unique_token_fraction" not in logs[False]
    assert 0 < logs[True]["packing/unique_token_fraction"] < 1
    assert logs[True]["packing/packed_fraction"] == 1.0


def test_tree_packing_refuses_3d_rotary(tmp_path, tok):
    model = build_model(tok)
    model.config.rope_parameters = {**model.config.rope_parameters, "mrope_section": [4, 2, 2]}
    with pytest.raises(ValueError, match=r"tree_packing=True: model: .*3D"):
        trainer(tok, tmp_path, model=model, tree_packing=True)
    with pytest.raises(ValueError, match="tree_packing_mask_budget_gb"):
        LambdaGRPOConfig(**base_args(str(tmp_path), tree_packing=True, tree_packing_mask_budget_gb=0))


def test_automatic_fallback_runs_unpacked_when_packing_does_not_pay(tmp_path, tok):
    t = trainer(tok, tmp_path, tree_packing=True, tree_packing_mask_budget_gb=1e-12, max_steps=1)
    t.train()
    h = next(h for h in t.state.log_history if "loss" in h)
    assert h["packing/packed_fraction"] == 0.0


class IgnoresTreeMask(Qwen2ForCausalLM):
    """A model whose packed path is wrong: it drops any 4D attention mask (plain causal attention over the row)."""

    def forward(self, *args, attention_mask=None, **kwargs):
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = None
        return super().forward(*args, attention_mask=attention_mask, **kwargs)


@pytest.mark.parametrize("mode", ["auto", "prompt_once"])
def test_self_check_turns_packing_off_for_a_wrong_packed_path(tmp_path, tok, mode):
    model = build_model(tok, layers=2)
    model.__class__ = IgnoresTreeMask  # same weights, packed path broken
    kw = dict(top_k=2, max_completion_length=10, per_device_train_batch_size=8, tree_packing_always=True)
    t = trainer(tok, tmp_path, model=model, tree_packing=mode, **kw)
    batch = generation_batch(t)
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    att = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    T = batch["completion_ids"].shape[1]
    m = batch["completion_mask"].bool()
    with torch.no_grad():
        stock = GRPOTrainer._get_per_token_logps_and_entropies(t, t.model, ids, att, T)[0]
        with pytest.warns(
            UserWarning, match="model type 'qwen2' differ from the padded ones.*packing is off"
        ):
            logp = t._get_per_token_logps_and_entropies(t.model, ids, att, T)[0]
        assert not t.tree_packing and t._packing_checked
        assert rel(logp[m], stock[m]) <= RTOL  # the call itself ran padded
        # without the check the packed path would have been used, and it is wrong
        t.tree_packing = True
        wrong = t._get_per_token_logps_and_entropies(t.model, ids, att, T)[0]
        assert rel(wrong[m], stock[m]) > 1e-2
    # a run trains on, unpacked, after the check turned packing off
    t.tree_packing, t._packing_checked = True, False
    t._metrics["train"].clear()  # the forced call above logged a packed call
    with pytest.warns(UserWarning, match="packing is off"):
        t.train()
    h = next(h for h in t.state.log_history if "loss" in h)
    assert h["packing/packed_fraction"] == 0.0


def test_tree_packing_modes_in_config(tmp_path):
    from lgrpo.engines.trl import packing_mode

    for value, mode in [(True, "auto"), (False, "off"), ("true", "auto"), ("tree", "tree"), (None, "off")]:
        assert packing_mode(value) == mode
        assert LambdaGRPOConfig(**base_args(str(tmp_path), tree_packing=value)).tree_packing == mode
    assert (
        LambdaGRPOConfig(**base_args(str(tmp_path), tree_packing="prompt_once")).tree_packing == "prompt_once"
    )
    with pytest.raises(ValueError, match="tree_packing: expected one of"):
        LambdaGRPOConfig(**base_args(str(tmp_path), tree_packing="trie"))
