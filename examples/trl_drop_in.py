"""λ-GRPO as a drop-in for TRL's GRPOTrainer: your own dataset and reward function, on a tiny local model.

    python examples/trl_drop_in.py --out runs/drop_in --steps 20

What TRL needs, and what lgrpo changes:

- The dataset has a ``prompt`` column (a string, or a list of chat messages). Every other column (here ``target``)
  is handed to each reward function as a keyword argument: a list with one entry per completion, aligned with
  ``completions`` (TRL repeats a prompt's row for each of its ``num_generations`` completions).
- A reward function is a plain callable ``f(prompts, completions, **columns) -> list[float]``.
- Swap ``GRPOConfig``/``GRPOTrainer`` for ``LambdaGRPOConfig``/``LambdaGRPOTrainer``; everything else is TRL's.

The model here is a tiny randomly initialised Qwen2 over characters (lgrpo.models), so the script runs anywhere in
seconds and learns little; pass ``model="path/or/hub-id"`` and its tokenizer for a real run.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from datasets import Dataset

from lgrpo.engines.trl import LambdaGRPOConfig, LambdaGRPOTrainer
from lgrpo.models import char_tokenizer, tiny_causal_lm


def make_dataset(n: int = 64, seed: int = 0) -> Dataset:
    """Prompts "copy: <word>=" of varying length; the ``target`` column is the word to write back."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcde") for _ in range(rng.randint(1, 4))) for _ in range(n)]
    return Dataset.from_dict({"prompt": [f"copy: {w}=" for w in words], "target": words})


def copy_reward(prompts: list[str], completions: list[str], target: list[str], **kwargs) -> list[float]:
    """1 for a completion that starts with its target word, else the share of the target's characters matched.

    ``target`` is the dataset column of the same name, one entry per completion; ``kwargs`` holds TRL's other
    arguments (e.g. ``completion_ids``, ``trainer_state``) and any further columns.
    """
    scores = []
    for completion, word in zip(completions, target):
        matched = sum(a == b for a, b in zip(completion, word))
        scores.append(1.0 if completion.startswith(word) else matched / len(word))
    return scores


def main(argv: list[str] | None = None) -> LambdaGRPOTrainer:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/drop_in", help="output_dir (rollouts.jsonl is written there)")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps")
    args = parser.parse_args(argv)

    tokenizer = char_tokenizer()
    model = tiny_causal_lm(tokenizer, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    config = LambdaGRPOConfig(
        output_dir=args.out,
        weighting="lambda",  # "uniform" is stock GRPO through the same code path
        lambda_power=1.0,
        rollout_log=True,
        num_generations=4,
        per_device_train_batch_size=8,  # completions per step: 2 prompts x 4
        max_completion_length=6,
        max_steps=args.steps,
        learning_rate=1e-3,
        top_k=4,  # a narrow sampler on a tiny vocabulary: completions share prefixes
        beta=0.0,  # beta > 0 loads a reference model from `model`'s path: pass a path, not an object
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = LambdaGRPOTrainer(
        model=model,
        reward_funcs=copy_reward,
        args=config,
        train_dataset=make_dataset(),
        processing_class=tokenizer,
    )
    trainer.train()
    last = [h for h in trainer.state.log_history if "reward" in h][-1]
    print(json.dumps({k: last[k] for k in ("step", "reward", "loss", "prm/process_set_size_mean")}))
    with open(Path(args.out) / "rollouts.jsonl", encoding="utf-8") as f:
        # one completion of the first step, with its reward and plain GRPO advantage
        print(f.readline().strip())
    return trainer


if __name__ == "__main__":
    main()
