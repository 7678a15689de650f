"""GRPO against λ-GRPO on a real pretrained model, on this CPU: SmolLM2-135M-Instruct with LoRA (configs/smollm2-135m.yaml).

Both arms run from the same warm start with the same seed(s) and step count (``lgrpo compare``): held-out greedy
accuracy before and after RL, the reward curve, the ``prm/*`` statistics and seconds per step of each arm.

    python benchmarks/real_model.py --steps 15 --out runs/bench/real_model           # fetches the model if needed
    python benchmarks/real_model.py --out runs/bench/real_model --report             # summarise what is there now

Every run directory (``OUT/<arm>-seed<S>/``) gets one ``metrics.jsonl`` line per step as it trains, ``lgrpo compare``
rewrites ``OUT/comparison.json`` after each finished arm, and this script writes ``OUT/results.json`` and
``OUT/results.md`` at the end (or with ``--report`` at any time, from what exists). Re-running the same command
skips finished arms and resumes an interrupted one. Extra ``key=value`` arguments override the recipe.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "smollm2-135m.yaml"
PRM_KEYS = (
    "prm/flat_fraction",
    "prm/path_depth_mean",
    "prm/intermediate_proportion_mean",
    "prm/process_set_size_mean",
)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarise(out: Path) -> dict:
    """``results.json``/``results.md`` from the run directories under ``out`` (finished or not)."""
    from lgrpo.experiments.compare import ARMS
    from lgrpo.experiments.run_folder import METRICS, SUMMARY, read_metrics

    result: dict = {"arms": {}}
    for run_dir in sorted(out.glob("*-seed*")):
        arm, _, seed = run_dir.name.rpartition("-seed")
        if arm not in ARMS:
            continue
        lines = read_metrics(run_dir / METRICS)
        steps = [ln for ln in lines if "reward" in ln]
        evals = {ln["step"]: ln["eval/accuracy"] for ln in lines if "eval/accuracy" in ln}
        summary = json.loads((run_dir / SUMMARY).read_text()) if (run_dir / SUMMARY).exists() else None
        times = [ln["step_time"] for ln in steps if "step_time" in ln]
        k = max(1, len(steps) // 3)
        entry = {
            "weighting": ARMS[arm],
            "seed": int(seed),
            "finished": summary is not None,
            "steps_done": len(steps),
            "accuracy_before": evals.get(0),
            "accuracy_after": summary["accuracy_after"] if summary else None,
            "eval_size": summary["eval_size"] if summary else None,
            "seconds_per_step_mean": _mean(times),
            "seconds_per_step_median": statistics.median(times) if times else None,
            "run_seconds": summary["seconds"] if summary else None,
            "reward_first_third": _mean([ln["reward"] for ln in steps[:k]]),
            "reward_last_third": _mean([ln["reward"] for ln in steps[-k:]]),
            "clipped_ratio_mean": _mean(
                [ln["completions/clipped_ratio"] for ln in steps if "completions/clipped_ratio" in ln]
            ),
            "prm": {key: _mean([ln[key] for ln in steps if key in ln]) for key in PRM_KEYS},
            "reward_curve": [round(ln["reward"], 4) for ln in steps],
        }
        result["arms"][run_dir.name] = entry
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(markdown(result))
    return result


def _fmt(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(result: dict) -> str:
    rows = [
        "| run | steps | held-out acc. before → after | reward first → last third | s/step (median) | "
        "prm/flat_fraction | prm/path_depth_mean | prm/process_set_size_mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, e in result["arms"].items():
        rows.append(
            f"| {name} | {e['steps_done']} | {_fmt(e['accuracy_before'])} → {_fmt(e['accuracy_after'])} "
            f"(n={e['eval_size']}) | {_fmt(e['reward_first_third'])} → {_fmt(e['reward_last_third'])} | "
            f"{_fmt(e['seconds_per_step_median'], 1)} | {_fmt(e['prm']['prm/flat_fraction'])} | "
            f"{_fmt(e['prm']['prm/path_depth_mean'], 2)} | {_fmt(e['prm']['prm/process_set_size_mean'], 2)} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", help="model.name_or_path (default: the cached SmolLM2 GGUF, fetched if needed)"
    )
    parser.add_argument("--steps", type=int, default=15, help="RL steps per arm (15)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds, both arms on each (1)")
    parser.add_argument("--out", default="runs/bench/real_model", help="output folder")
    parser.add_argument("--report", action="store_true", help="only summarise the runs already in --out")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. data.eval_size=32"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not args.report:
        from lgrpo.experiments.compare import compare
        from lgrpo.experiments.config import load_config

        if args.steps < 1 or args.seeds < 1:
            raise SystemExit("--steps and --seeds must be at least 1")
        model = args.model
        if model is None:
            from lgrpo.assets import fetch_smollm2

            model = str(fetch_smollm2())
        overrides = [f"model.name_or_path={model}", f"rl.max_steps={args.steps}", *args.overrides]
        try:
            cfg = load_config(RECIPE, overrides)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        compare(cfg, out, args.seeds)
    result = summarise(out)
    print(markdown(result), file=sys.stderr)
    print(f"results in {out}/results.json, results.md, comparison.json and comparison.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
