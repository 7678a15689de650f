"""Worker for the 2-process test of LambdaGRPOTrainer (run under torchrun with gloo on CPU).

Each rank generates and scores one generation batch whose prompt groups straddle the two ranks, and saves its local
completion ids, mask and λ weights to ``<out>/rank<R>.pt``. The test compares them with a 1-process computation over
the concatenated batch.

Then it trains two optimizer steps with tree packing on every model call and β > 0, a full fine-tune and with LoRA,
saving each rank's gradients (after DDP's averaging) to ``<out>/<full|lora>-rank<R>-step<S>.pt`` and its logged
metrics to ``<out>/<full|lora>-rank<R>.json``.
"""

from __future__ import annotations

import json
import os
import sys

import torch
from transformers import Qwen2ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from trl_helpers import (
    SaveGrads,
    base_args,
    build_dataset,
    build_model,
    build_tokenizer,
    build_trainer,
    reward_digits,
)

from lgrpo.engines.trl import LambdaGRPOConfig, LambdaGRPOTrainer


def main(out: str) -> None:
    tok = build_tokenizer()
    args = LambdaGRPOConfig(
        **base_args(
            out,
            per_device_train_batch_size=6,
            num_generations=4,
            top_k=2,
            max_completion_length=10,
            rollout_log=True,
            tree_packing="auto",  # with the first-use self-check: rank 0 decides, both ranks follow
            tree_packing_always=True,
        )
    )
    trainer = build_trainer(tok, args)
    acc = trainer.accelerator
    assert acc.num_processes == 2, f"expected 2 processes, got {acc.num_processes}"
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))  # this rank's rows of the generation batch
    out_batch = trainer._generate_and_score_completions(batch)
    ids = torch.cat([out_batch["prompt_ids"], out_batch["completion_ids"]], 1)
    att = torch.cat([out_batch["prompt_mask"], out_batch["completion_mask"]], 1)
    with torch.no_grad():
        trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, att, out_batch["completion_ids"].shape[1]
        )
    torch.save(
        {
            "packing": (trainer._packing_checked, trainer.tree_packing),
            "prompts": [x["prompt"] for x in batch],
            "prompt_ids": [
                r[m.bool()].tolist()
                for r, m in zip(out_batch["prompt_ids"].cpu(), out_batch["prompt_mask"].cpu())
            ],
            "completion_ids": out_batch["completion_ids"].cpu(),
            "completion_mask": out_batch["completion_mask"].cpu(),
            "lambda_weights": out_batch["lambda_weights"].cpu(),
            "num_generations": trainer.num_generations,
            "metrics": {k: v[-1] for k, v in trainer._metrics["train"].items() if k.startswith("prm/")},
        },
        os.path.join(out, f"rank{acc.process_index}.pt"),
    )
    if acc.is_main_process:  # β > 0 without PEFT: TRL loads the reference from the policy's folder
        build_model(tok).save_pretrained(os.path.join(out, "model"))
    acc.wait_for_everyone()
    for lora in (False, True):
        train_packed(tok, out, lora)


def train_packed(tok, out: str, lora: bool) -> None:
    """Two optimizer steps, tree packing on every model call, β > 0, an entropy bonus (non-zero gradients even when
    the rewards of a group are equal); full fine-tune (the reference loaded from the model's folder) or LoRA."""
    name, rank = ("lora" if lora else "full"), int(os.environ["RANK"])
    model = Qwen2ForCausalLM.from_pretrained(os.path.join(out, "model"))
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    args = LambdaGRPOConfig(
        **base_args(
            os.path.join(out, name),
            per_device_train_batch_size=4,
            num_generations=4,
            top_k=2,
            max_completion_length=10,
            beta=0.04,
            entropy_coef=0.05,
            tree_packing=True,
            tree_packing_always=True,
        )
    )
    trainer = LambdaGRPOTrainer(
        model=model,
        reward_funcs=reward_digits,
        args=args,
        train_dataset=build_dataset(),
        processing_class=tok,
        peft_config=peft_config,
        callbacks=[SaveGrads(os.path.join(out, name))],
    )
    trainer.train()
    with open(os.path.join(out, f"{name}-rank{rank}.json"), "w") as f:
        json.dump([h for h in trainer.state.log_history if "loss" in h], f)


if __name__ == "__main__":
    main(sys.argv[1])
