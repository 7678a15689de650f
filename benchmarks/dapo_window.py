"""How far TRL's ``dapo`` normaliser is from the exact token mean of an optimizer step when
``steps_per_generation != gradient_accumulation_steps``.

TRL 1.16 divides each micro-batch's token sum by ``num_items_in_batch / num_processes · G / S``, where
``num_items_in_batch`` counts the loss tokens of the whole generation batch (all processes), ``G`` is
``gradient_accumulation_steps`` and ``S`` is ``steps_per_generation``. The exact token mean of an optimizer step
divides by the tokens of its window (the ``G`` micro-batches it accumulates, on every process). With ``S = G`` the two
are the same; otherwise every token of micro-batch ``m`` is weighted ``T_window / (N_gen(m) · G / S)`` times its exact
weight: ``G < S``, the window is part of a generation batch and holds more or fewer than its share of tokens;
``G > S``, it spans several generation batches with different token counts. lgrpo's KL reweighting for ``dapo`` uses
the same normaliser (``LambdaGRPOTrainer._kl_reweighting``), so the weighted KL term and TRL's policy term stay
consistent with each other.

This script trains the tiny model of the engine tests (``tests/engines/trl_helpers.py``: a 1-layer Qwen2 over a
14-character vocabulary, the digit-share reward, completions of up to ``--max-completion-length`` tokens that end
where the model samples EOS) with ``LambdaGRPOTrainer`` for each (G, S) on one process, records every training
micro-batch's ``num_items_in_batch`` and its own loss-token count, and prints the per-token factor − 1 over all
micro-batches of all seeds: its minimum, maximum and token-weighted mean absolute value.

    python benchmarks/dapo_window.py                      # the settings in the docs
    python benchmarks/dapo_window.py --steps 20 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engines"))

from trl_helpers import base_args, build_tokenizer, build_trainer

from lgrpo.engines.trl import LambdaGRPOConfig


def micro_batches(G: int, S: int, steps: int, seed: int, max_len: int) -> list[tuple[int, int]]:
    """``(num_items_in_batch, tokens of the micro-batch)`` of every training micro-batch, in order."""
    tok = build_tokenizer()
    with tempfile.TemporaryDirectory() as out:
        args = LambdaGRPOConfig(
            **base_args(
                out,
                loss_type="dapo",
                gradient_accumulation_steps=G,
                steps_per_generation=S,
                max_steps=steps,
                max_completion_length=max_len,
                seed=seed,
                logging_steps=10**6,
            )
        )
        trainer = build_trainer(tok, args)
        seen: list[tuple[int, int]] = []
        loss_fn = trainer._compute_loss

        def record(model, inputs):
            if model.training:
                mask = inputs["completion_mask"]
                if "tool_mask" in inputs:
                    mask = mask * inputs["tool_mask"]
                seen.append((int(inputs["num_items_in_batch"]), int(mask.sum())))
            return loss_fn(model, inputs)

        trainer._compute_loss = record
        trainer.train()
    return seen


def deviations(seen: list[tuple[int, int]], G: int, S: int) -> list[tuple[float, int]]:
    """``(factor − 1, tokens)`` of each micro-batch: its tokens' TRL weight over their exact weight, minus 1."""
    out = []
    for start in range(0, len(seen) - G + 1, G):
        window = seen[start : start + G]
        total = sum(n for _, n in window)
        out += [(total / (items * G / S) - 1.0, n) for items, n in window]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=["1,2", "2,4", "2,1", "4,2", "2,2"], help="G,S pairs")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-completion-length", type=int, default=8)
    a = p.parse_args()
    torch.set_num_threads(1)
    print(f"steps {a.steps}, seeds {a.seeds}, max_completion_length {a.max_completion_length}, 1 process")
    print(
        "| G (grad. accumulation) | S (steps_per_generation) | micro-batches | min | max | mean abs (token-weighted) |"
    )
    print("|---|---|---|---|---|---|")
    for setting in a.settings:
        G, S = (int(x) for x in setting.split(","))
        dev = [
            d
            for seed in a.seeds
            for d in deviations(micro_batches(G, S, a.steps, seed, a.max_completion_length), G, S)
        ]
        tokens = sum(n for _, n in dev)
        mean_abs = sum(abs(x) * n for x, n in dev) / max(tokens, 1)
        lo, hi = min(x for x, _ in dev), max(x for x, _ in dev)
        print(f"| {G} | {S} | {len(dev)} | {lo:+.1%} | {hi:+.1%} | {mean_abs:.1%} |")


if __name__ == "__main__":
    main()
