"""Does a real-model reasoning recipe give RL a signal at its start? (issue 17 §1)

Runs the recipe's warm start, then ONE λ-GRPO step of ``lgrpo train`` on ``--prompts`` prompts × the recipe's group
(``rl.prompts_per_step`` raised to ``--prompts`` for this step only), and measures on those completions, on
CORRECTNESS (the boxed answer checked exactly by the task, no partial credit):

- the median completion length (tokens) and the share cut by the length limit without a box;
- the share of completions correct and the share of groups whose completions are all right or all wrong;
- TRL's ``entropy`` (mean per-token entropy of the policy over the completions, nats) and ``grad_norm`` of the step.

Targets (issue 17 §1): median ≥ 48 tokens, ≤ 20 % cut without a box, 15–70 % correct, ≤ half the groups all-equal,
grad_norm > 0. The two phases can run separately (each under ~8 min of CPU here), the second reusing the first's
warm start:

    python benchmarks/reasoning_pilot.py --phase sft --out runs/bench/pilot
    python benchmarks/reasoning_pilot.py --phase rl --out runs/bench/pilot          # writes OUT/pilot.json

Extra ``key=value`` arguments override the recipe (both phases must get the same ones).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "smollm2-135m-reasoning.yaml"


def config(args):
    from lgrpo.experiments.config import load_config

    return load_config(args.config, args.overrides)


def warm_start(cfg, out: Path) -> Path:
    """The recipe's warm start into ``out/sft`` (``experiments.train.sft``, float32), unless it is there."""
    import torch
    import transformers

    from lgrpo.experiments.run_folder import SFT_DONE
    from lgrpo.experiments.train import build_model, set_threads, sft
    from lgrpo.tasks import build_task

    path = out / "sft"
    if (path / SFT_DONE).exists():
        return path
    set_threads(cfg)
    transformers.set_seed(cfg.seed)
    task = build_task(cfg)
    model, tok = build_model(cfg, task, "float32")
    sft(model, tok, task, cfg, path)
    del model
    torch.set_num_threads(torch.get_num_threads())
    return path


def measure(cfg, out: Path, prompts: int) -> dict:
    """One RL step on ``prompts`` prompts from the warm start; the §1 figures from its rollout log and metrics."""
    from lgrpo.experiments.config import to_dict
    from lgrpo.experiments.run_folder import RunFolder
    from lgrpo.experiments.train import train
    from lgrpo.tasks import build_task

    group = cfg.rl.num_generations
    step_cfg = cfg
    step_cfg.rl.prompts_per_step = prompts
    step_cfg.rl.micro_batch_size = group * 2
    step_cfg.rl.max_steps = 1
    step_cfg.rl.rollout_log = True
    step_cfg.rl.save_steps = 100_000
    step_cfg.eval.every = 0
    run = out / "rl"
    shutil.rmtree(run, ignore_errors=True)
    train(step_cfg, run, sft_dir=out / "sft")
    folder = RunFolder(run)
    lines = [json.loads(x) for x in folder.rollouts.read_text().splitlines()]
    task = build_task(cfg)
    gold = {row["problem"]: row for row in task.train}
    from lgrpo.tasks.math_answers import extract_boxed

    groups: dict[int, list[float]] = defaultdict(list)
    lengths, cut, correct = [], 0, 0
    limit = cfg.rl.max_completion_length
    for line in lines:
        n = len(line["completion_ids"])
        lengths.append(n)
        boxed = extract_boxed(line["completion"]) is not None
        cut += n >= limit and not boxed
        row = gold[line["prompt"]]  # the rollout log keeps the user message: the problem as written
        ok = task.check(line["completion"], row).score == 1.0
        correct += ok
        groups[line["group"]].append(float(ok))
    metrics = [m for m in folder.read_metrics() if "loss" in m or "grad_norm" in m]
    m = metrics[-1] if metrics else {}
    all_equal = sum(len(set(v)) == 1 for v in groups.values())
    result = {
        "config": to_dict(cfg),
        "completions": len(lines),
        "groups": len(groups),
        "median_tokens": statistics.median(lengths),
        "cut_without_box": cut / len(lines),
        "correct": correct / len(lines),
        "groups_all_equal": all_equal / len(groups),
        "grad_norm": m.get("grad_norm"),
        "entropy": m.get("entropy"),
        "frac_reward_zero_std": m.get("frac_reward_zero_std"),
        "step_time": m.get("step_time"),
        "examples": [line["completion"] for line in lines[:3]],
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(RECIPE))
    parser.add_argument("--phase", choices=("sft", "rl", "all"), default="all")
    parser.add_argument("--prompts", type=int, default=32, help="prompts of the measured step (32)")
    parser.add_argument("--out", default="runs/bench/pilot")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config(args)
    if args.phase in ("sft", "all"):
        print(f"warm start in {warm_start(cfg, out)}", file=sys.stderr)
    if args.phase in ("rl", "all"):
        result = measure(cfg, out, args.prompts)
        (out / "pilot.json").write_text(json.dumps(result, indent=2) + "\n")
        shown = {k: v for k, v in result.items() if k not in ("config", "examples")}
        print(json.dumps(shown, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
