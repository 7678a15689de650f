"""The real pretrained model end to end: SmolLM2-135M-Instruct from its GGUF file (fetched once, `make smollm2`).

A λ-GRPO step with LoRA through ``LambdaGRPOTrainer`` on the dequantised model, then ``lgrpo eval --model`` on the
same ``.gguf`` file. These tests fail, never skip, when the model cannot be had (the ``smollm2_gguf`` fixture).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "engines"))
from trl_helpers import base_args

from lgrpo.models import LoadError, dequantised_dir, load_model

pytestmark = pytest.mark.real_model

# the reasoning recipe in CI: two RL steps; the warm start and held-out set made smaller to fit the suite's budget
REASONING_CI = [
    "rl.max_steps=2",
    "sft.steps=15",  # half the recipe's warm start at twice its learning rate
    "sft.learning_rate=0.0001",
    "sft.warmup_steps=3",
    "sft.batch_size=4",
    "data.train_size=200",
    "data.eval_size=4",
    "eval.every=0",
    "eval.batch_size=4",
    "rl.save_steps=100",
]
# bfloat16 against float32 per-token log-probs (nats) of worked solutions on SmolLM2: mean and largest |Δ| over the
# tokens, and |Δ| of each completion's mean NLL (the loss's scale); measured here (AVX512-BF16 CPU):
BF16_TOL = {"mean": 0.05, "max": 0.6, "loss": 0.03}  # measured: 0.029, 0.36, 0.012


@pytest.fixture(scope="module")
def real(smollm2_gguf):
    model, tok = load_model(str(smollm2_gguf))
    return model, tok


def test_gguf_loads_dequantised_and_trainable(real, smollm2_gguf):
    from transformers.trainer_utils import validate_quantization_for_training

    model, tok = real
    assert model.dtype == torch.float32
    assert getattr(model.config, "quantization_config", None) is None
    validate_quantization_for_training(model)  # transformers refuses GGUF-quantised models; this one is plain
    # TRL (β > 0 reference), PEFT (adapter base) and vLLM reload the policy from here: a plain folder
    assert model.config._name_or_path == str(dequantised_dir(smollm2_gguf, "float32"))
    assert tok.padding_side == "left" and tok.pad_token_id == tok.eos_token_id
    assert tok.chat_template and "<|im_start|>" in tok.chat_template


def test_gguf_load_errors_name_the_argument(tmp_path):
    with pytest.raises(LoadError, match=r"model\.name_or_path=.*no such \.gguf file.*make smollm2"):
        load_model(str(tmp_path / "missing.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(LoadError, match=r"--model=.*bad\.gguf"):
        load_model(str(bad), what="--model")


def _reward_digits(prompts, completions, **_):
    """A dense reward, so that groups' rewards differ and the first steps move the adapter."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]


def test_lambda_grpo_steps_with_lora_on_the_real_model(real, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig

    from lgrpo.engines.trl import LambdaGRPOConfig, LambdaGRPOTrainer
    from lgrpo.tasks.math_answers import SYSTEM_PROMPT

    model, tok = real
    problems = ["What is 12+56?", "Add 7 and 35.", "What is 3+4+5?", "Compute 20+22."]
    data = Dataset.from_dict(
        {
            "prompt": [
                [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": p}]
                for p in problems
            ]
        }
    )
    args = LambdaGRPOConfig(
        **base_args(
            str(tmp_path),
            rollout_log=True,
            stop_after_boxed=True,
            max_completion_length=10,
            max_steps=3,
            learning_rate=5e-3,
            gradient_checkpointing=False,  # TRL's default on: no KV cache in generation, minutes on a CPU
        )
    )
    peft = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = LambdaGRPOTrainer(
        model=model,
        reward_funcs=_reward_digits,
        args=args,
        train_dataset=data,
        processing_class=tok,
        peft_config=peft,
    )
    enc = tok(["<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n"], return_tensors="pt")

    def logits(disable_adapter: bool) -> torch.Tensor:
        policy = trainer.model
        with torch.no_grad():
            if disable_adapter:
                with policy.disable_adapter():
                    return policy(**enc).logits
            return policy(**enc).logits

    assert torch.equal(logits(False), logits(True))  # LoRA starts as the identity: reference == policy
    trainer.train()

    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3 and all(math.isfinite(h["loss"]) for h in logs)
    for key in ("prm/flat_fraction", "prm/path_depth_mean", "prm/process_set_size_mean"):
        assert all(key in h and math.isfinite(h[key]) for h in logs), key
    # the reference (adapter disabled) is the base model; the policy has moved away from it
    assert (logits(False) - logits(True)).abs().max() > 1e-4

    lines = [json.loads(x) for x in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert len(lines) == 12  # three steps, one generation batch of 4 completions each
    for line in lines:
        assert line["completion"] == tok.decode(line["completion_ids"], skip_special_tokens=True)
        assert len(line["completion_ids"]) <= 10 + 1  # the cut may add an EOS
    text = " ".join(line["completion"] for line in lines)
    assert sum(ch.isalpha() for ch in text) > 10  # real decoded words, not ids or byte pieces
    assert any(line["prompt"] in problems for line in lines)


def test_lgrpo_eval_on_the_gguf_file(smollm2_gguf, tmp_path):
    from lgrpo.cli import main

    data = tmp_path / "data"
    data.mkdir()
    problems = [("What is 2+3?", "5"), ("What is 10+20?", "30")]
    with open(data / "math500.jsonl", "w") as f:
        for i, (problem, answer) in enumerate(problems):
            f.write(json.dumps({"id": i, "problem": problem, "answer": answer}) + "\n")
    out = tmp_path / "out"
    argv = ["eval", "--model", str(smollm2_gguf), "--benchmarks", "math500", "--data-dir", str(data)]
    assert main([*argv, "--max-new-tokens", "16", "--batch-size", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"]["math500"]["n"] == 2
    predictions = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 2 and all(p["completion"].strip() for p in predictions)
    scored = [1.0 if p.get("correct") else 0.0 for p in predictions]
    assert results["benchmarks"]["math500"]["accuracy"] == pytest.approx(sum(scored) / 2)


def test_bfloat16_costs_little_precision_on_the_real_model(real):
    """model.dtype=auto runs SmolLM2 in bfloat16 on a CPU with AVX512-BF16: the per-token log-probs of a worked
    solution (what the loss and λ-GRPO weight) move by at most BF16_TOL from float32's, measured here independently
    (float64 log-softmax of each model's logits)."""
    import copy

    from lgrpo.tasks import arithmetic
    from lgrpo.tasks.math_answers import SYSTEM_PROMPT

    model, tok = real
    half = copy.deepcopy(model).to(torch.bfloat16)
    rows = []
    for terms, ops in (([37, 45], ["+"]), ([82, 18], ["-"]), ([9, 68, 23], ["+", "-"])):
        p = arithmetic.make_problem(terms, ops, "columns")
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": p.prompt}]
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        rows.append((tok(prompt)["input_ids"], tok(p.solution)["input_ids"]))

    def logps(m, ids: torch.Tensor, start: int) -> torch.Tensor:
        with torch.no_grad():
            logits = m(input_ids=ids[None]).logits[0, start - 1 : -1].double()
        return logits.log_softmax(-1).gather(-1, ids[start:, None])[:, 0]  # [T_completion]

    diffs, nll = [], []
    for prompt_ids, completion_ids in rows:
        ids = torch.tensor(prompt_ids + completion_ids)
        full, low = logps(model, ids, len(prompt_ids)), logps(half, ids, len(prompt_ids))
        diffs.append((full - low).abs())
        nll.append((-full.mean().item(), -low.mean().item()))
    diff = torch.cat(diffs)
    assert diff.mean() < BF16_TOL["mean"] and diff.max() < BF16_TOL["max"], (diff.mean(), diff.max())
    for full, low in nll:  # the mean NLL over a completion, the loss's scale
        assert abs(full - low) < BF16_TOL["loss"], nll


def test_reasoning_recipe_two_steps_have_signal(smollm2_gguf, tmp_path):
    """configs/smollm2-135m-reasoning.yaml, seed 0, two RL steps (a smaller warm start batch and held-out set so it
    fits the suite): the completions are worked solutions (tens of tokens, not a copied sum), some group's rewards
    differ, and a step with such a group has a non-zero gradient."""
    from lgrpo.experiments.config import load_config
    from lgrpo.experiments.run_folder import RunFolder
    from lgrpo.experiments.train import train

    recipe = Path(__file__).resolve().parents[2] / "configs" / "smollm2-135m-reasoning.yaml"
    cfg = load_config(recipe, [f"model.name_or_path={smollm2_gguf}", *REASONING_CI])
    train(cfg, tmp_path / "run")
    folder = RunFolder(tmp_path / "run")
    lines = [json.loads(x) for x in folder.rollouts.read_text().splitlines()]
    assert len(lines) == 2 * 16
    lengths = sorted(len(line["completion_ids"]) for line in lines)
    assert lengths[len(lengths) // 2] >= 40, lengths  # the worked solution, not `a+b=c`
    assert sum("Ones:" in line["completion"] for line in lines) >= len(lines) // 2
    rewards: dict[tuple[int, int], set] = {}
    for line in lines:
        rewards.setdefault((line["step"], line["group"]), set()).add(line["reward"])
    spread = {step for (step, _), r in rewards.items() if len(r) > 1}
    assert spread, rewards
    metrics = {m["step"]: m for m in folder.read_metrics() if "grad_norm" in m}
    assert all(metrics[s]["grad_norm"] > 0 for s in spread), metrics
