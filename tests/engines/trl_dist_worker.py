"""Worker for the 2-process test of LambdaGRPOTrainer (run under torchrun with gloo on CPU).

Each rank generates and scores one generation batch whose prompt groups straddle the two ranks, and saves its local
completion ids, mask and λ weights to ``<out>/rank<R>.pt``. The test compares them with a 1-process computation over
the concatenated batch.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from trl_helpers import base_args, build_tokenizer, build_trainer

from lgrpo.engines.trl import LambdaGRPOConfig


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
        )
    )
    trainer = build_trainer(tok, args)
    acc = trainer.accelerator
    assert acc.num_processes == 2, f"expected 2 processes, got {acc.num_processes}"
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))  # this rank's rows of the generation batch
    out_batch = trainer._generate_and_score_completions(batch)
    torch.save(
        {
            "prompts": [x["prompt"] for x in batch],
            "completion_ids": out_batch["completion_ids"].cpu(),
            "completion_mask": out_batch["completion_mask"].cpu(),
            "lambda_weights": out_batch["lambda_weights"].cpu(),
            "num_generations": trainer.num_generations,
            "metrics": {k: v[-1] for k, v in trainer._metrics["train"].items() if k.startswith("prm/")},
        },
        os.path.join(out, f"rank{acc.process_index}.pt"),
    )
    acc.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
