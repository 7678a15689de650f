"""Seconds per RL step of a real-model recipe, before and after the CPU speed-ups, side by side in one run.

Each arm is ``lgrpo train`` (``experiments.train.train``) on the recipe with its own overrides, no warm start, a tiny
held-out set, every completion forced to ``--length`` tokens (``min_new_tokens``, no stop after the box) so that both
arms time the same work. One RL step is split into where its time goes:

- ``generate``: sampling the completions (``transformers.generate``, KV cache);
- ``rewards``: the reward functions;
- ``logps_no_grad``: log-prob passes without gradient (old policy / reference; none at μ = 1, β = 0);
- ``prepare_other``: the rest of TRL's ``_prepare_inputs`` (tokenising, advantages, λ weights, tree statistics);
- ``loss_fwd_bwd``: the loss forward and backward (``training_step`` minus ``_prepare_inputs``);
- ``step``: TRL's ``step_time`` (the whole ``training_step``); ``optimizer`` steps are outside it and tiny (LoRA).

    python benchmarks/cpu_step.py                                  # before = float32, after = model.dtype=auto
    python benchmarks/cpu_step.py --steps 3 --length 128 --out runs/bench/cpu_step

The first step of each arm is reported but left out of the medians (one-off warm-up). Results: OUT/cpu_step.json
and a table on stdout. Run it on a quiet machine (``flock /tmp/lgrpo-cpu.lock ...`` here).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "smollm2-135m-reasoning.yaml"
ARMS = {  # arm: its overrides on top of the recipe
    "before": ["model.dtype=float32"],
    "after": ["model.dtype=auto"],
}
PARTS = ("generate", "rewards", "logps_no_grad", "prepare_other", "loss_fwd_bwd", "step")


def timed_trainer(times: list[dict[str, float]]):
    """Patch ``LambdaGRPOTrainer`` so that every training step appends its split (seconds) to ``times``."""
    import torch

    from lgrpo.engines.trl import LambdaGRPOTrainer as T

    def wrap(name: str, key):
        original = getattr(T, name)

        def timed(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                part = key() if callable(key) else key
                times[-1][part] += time.perf_counter() - t0

        timed.__wrapped__ = original
        setattr(T, name, timed)

    originals = {
        n: getattr(T, n)
        for n in (
            "training_step",
            "_prepare_inputs",
            "_generate_single_turn",
            "_calculate_rewards",
            "_get_per_token_logps_and_entropies",
        )
    }
    step_original = originals["training_step"]

    def training_step(self, *args, **kwargs):
        times.append(defaultdict(float))
        t0 = time.perf_counter()
        out = step_original(self, *args, **kwargs)
        times[-1]["step"] = time.perf_counter() - t0
        return out

    T.training_step = training_step
    wrap("_prepare_inputs", "prepare")
    wrap("_generate_single_turn", "generate")
    wrap("_calculate_rewards", "rewards")
    wrap(
        "_get_per_token_logps_and_entropies",
        lambda: "logps_grad" if torch.is_grad_enabled() else "logps_no_grad",
    )
    return lambda: [setattr(T, n, f) for n, f in originals.items()]


def split(raw: dict[str, float]) -> dict[str, float]:
    prepare = raw.get("prepare", 0.0)
    inner = raw.get("generate", 0.0) + raw.get("rewards", 0.0) + raw.get("logps_no_grad", 0.0)
    return {
        "generate": raw.get("generate", 0.0),
        "rewards": raw.get("rewards", 0.0),
        "logps_no_grad": raw.get("logps_no_grad", 0.0),
        "prepare_other": prepare - inner,
        "loss_fwd_bwd": raw["step"] - prepare,
        "step": raw["step"],
    }


def run_arm(arm: str, overrides: list[str], args, out: Path) -> dict:
    from lgrpo.experiments.config import load_config
    from lgrpo.experiments.train import train
    from lgrpo.models import resolve_dtype

    cfg = load_config(
        args.config,
        [
            f"rl.max_steps={args.steps}",
            "sft.steps=0",
            "data.eval_size=2",
            "eval.every=0",
            "eval.max_new_tokens=4",
            "rl.stop_after_boxed=false",
            f"rl.max_completion_length={args.length}",
            f"rl.trl={{generation_kwargs: {{min_new_tokens: {args.length}}}}}",
            "rl.save_steps=100000",
            "rl.rollout_log=false",
            *args.overrides,
            *overrides,
        ],
    )
    folder = out / arm
    shutil.rmtree(folder, ignore_errors=True)
    times: list[dict[str, float]] = []
    restore = timed_trainer(times)
    try:
        train(cfg, folder)
    finally:
        restore()
    steps = [split(t) for t in times]
    later = steps[1:] or steps
    return {
        "overrides": overrides,
        "dtype": resolve_dtype(cfg.model.dtype),
        "threads": cfg.threads,
        "completions_per_step": cfg.rl.prompts_per_step * cfg.rl.num_generations,
        "steps": steps,
        "median": {p: statistics.median(s[p] for s in later) for p in PARTS},
    }


def table(result: dict) -> str:
    arms = list(result["arms"])
    rows = [
        "| part (s, median of steps 2+) | " + " | ".join(arms) + " | after / before |",
        "|---" * (len(arms) + 2) + "|",
    ]
    for p in PARTS:
        vals = [result["arms"][a]["median"][p] for a in arms]
        ratio = f"{vals[-1] / vals[0]:.2f}" if vals[0] > 0.05 else "–"
        rows.append(f"| {p} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {ratio} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(RECIPE), help=f"recipe (default: {RECIPE.relative_to(ROOT)})")
    parser.add_argument("--steps", type=int, default=3, help="RL steps per arm (3; the first is warm-up)")
    parser.add_argument("--length", type=int, default=128, help="tokens per completion, forced (128)")
    parser.add_argument("--arms", default="before,after", help="which arms, in order (before,after)")
    parser.add_argument("--out", default="runs/bench/cpu_step", help="output folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides for both arms")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.length < 1:
        raise SystemExit("--steps and --length must be at least 1")
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"--arms: unknown {', '.join(unknown)} (known: {', '.join(ARMS)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"config": args.config, "length": args.length, "arms": {}}
    for arm in arms:
        result["arms"][arm] = run_arm(arm, ARMS[arm], args, out)
        (out / "cpu_step.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"per-step splits in {out}/cpu_step.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
