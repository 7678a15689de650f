"""The study: GRPO against λ-GRPO on a real model that reasons, on a CPU.

SmolLM2-135M-Instruct with LoRA on the reasoning recipe (configs/smollm2-135m-reasoning.yaml: sums and differences
worked digit by digit, group 8, temperature 0.75). Both arms run from the same warm start on the same seeds
(``lgrpo compare``), ``--steps`` RL steps each, held-out greedy accuracy on the recipe's 200 never-trained problems
every ``eval.every`` (10) steps. Per arm: peak held-out accuracy and its step (the paper's two claims), final
accuracy, mean ± s.e. over seeds and the paired per-seed difference (λ-GRPO − GRPO), reward curves, ``prm/*``,
seconds per step.

    python benchmarks/real_model.py --out runs/bench/study                   # 3 seeds × 2 arms × 30 steps
    python benchmarks/real_model.py --out runs/bench/study threads=1         # the same, leaving a core free
    python benchmarks/real_model.py --out runs/bench/study --estimate        # the study's time, from the timings below
    python benchmarks/real_model.py --out runs/bench/study --report          # summarise what is there now
    python benchmarks/real_model.py --steps 2 --seeds 1 --out runs/bench/tiny data.eval_size=8   # a mechanics check

Every run directory (``OUT/<arm>-seed<S>/``) gets one ``metrics.jsonl`` line per step as it trains and a checkpoint
every ``rl.save_steps``; ``lgrpo compare`` rewrites ``OUT/comparison.json``/``comparison.png`` after each finished run
and this script ``OUT/results.json``/``results.md`` after each run and at the end. Re-running the same command (in a
later session too) skips finished runs and resumes an interrupted one from its last checkpoint. Extra ``key=value``
arguments override the recipe.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "smollm2-135m-reasoning.yaml"
# measured in the study itself on this 2-core CPU (bfloat16, LoRA, `threads=1` beside one other single-thread job,
# benchmarks/results/study): median step 15 s (16 completions, median ~63 tokens), one held-out evaluation of 200
# problems (4 greedy batches of 50, up to 128 tokens) about 110 s, warm start 300 s. With both cores (threads=2,
# quiet): step 10 s, warm start 173 s (a 2-step check).
STEP_SECONDS = 15.0
EVAL_SECONDS = 110.0
SFT_SECONDS = 300.0
PRM_KEYS = (
    "prm/flat_fraction",
    "prm/path_depth_mean",
    "prm/intermediate_proportion_mean",
    "prm/process_set_size_mean",
)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _stats(values: list[float]) -> dict | None:
    """mean ± standard error (None with one value) over seeds."""
    if not values:
        return None
    n = len(values)
    mean = statistics.fmean(values)
    sem = statistics.stdev(values) / math.sqrt(n) if n > 1 else None
    return {"mean": mean, "sem": sem, "n": n}


def run_entry(run_dir: Path) -> dict:
    """One run's figures from its folder (finished or not)."""
    from lgrpo.experiments.compare import ARMS
    from lgrpo.experiments.run_folder import METRICS, SUMMARY, read_metrics

    arm, _, seed = run_dir.name.rpartition("-seed")
    lines = read_metrics(run_dir / METRICS)
    steps = [ln for ln in lines if "reward" in ln]
    evals = {ln["step"]: ln["eval/accuracy"] for ln in lines if "eval/accuracy" in ln}
    summary = json.loads((run_dir / SUMMARY).read_text()) if (run_dir / SUMMARY).exists() else None
    times = [ln["step_time"] for ln in steps if "step_time" in ln]
    k = max(1, len(steps) // 3)
    # per logged step, in one pass over the rollout log: the share of tokens with |λ| > 1 (where the arms weigh a
    # token differently; lgrpo analyze's statistic) and each group's distinct completions (identical completions
    # share every token). A resumed run re-logs steps: the later block wins, as in lgrpo analyze.
    per_step: dict[int, tuple[float | None, list[int]]] = {}
    if (run_dir / "rollouts.jsonl").exists():
        from lgrpo.analysis.analyze import StepStats
        from lgrpo.analysis.rollouts import iter_step_blocks

        for block in iter_step_blocks(run_dir / "rollouts.jsonl"):
            stats = StepStats.from_records(block.step, block.first_line, block.records).summary()
            groups: dict[str, set] = {}
            for rec in block.records:
                groups.setdefault(str(rec["group"]), set()).add(tuple(rec["completion_ids"]))
            per_step[block.step] = (stats["shared_token_fraction"], [len(g) for g in groups.values()])
    shared = [per_step[s][0] for s in sorted(per_step) if per_step[s][0] is not None]
    distinct = [n for s in sorted(per_step) for n in per_step[s][1]]
    ks = max(1, len(shared) // 3)
    trained = {s: a for s, a in evals.items() if s > 0}
    # the step of the peak: the earliest of equal peaks
    peak_step = max(trained, key=lambda s: (trained[s], -s)) if trained else None
    return {
        "arm": arm,
        "weighting": ARMS[arm],
        "seed": int(seed),
        "finished": summary is not None,
        "steps_done": len(steps),
        "accuracy_before": evals.get(0),
        "accuracy_curve": {str(s): a for s, a in sorted(evals.items())},
        "peak_accuracy": trained[peak_step] if peak_step is not None else None,
        "peak_step": peak_step,
        "final_accuracy": summary["accuracy_after"] if summary else None,
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
        "shared_token_fraction_first_third": _mean(shared[:ks]),
        "shared_token_fraction_last_third": _mean(shared[-ks:]),
        "distinct_completions_per_group": _mean(distinct),
        "reward_curve": [round(ln["reward"], 4) for ln in steps],
    }


def summarise(out: Path) -> dict:
    """``results.json``/``results.md`` from the run directories under ``out`` (finished or not): per run, per arm
    (mean ± s.e. over its finished seeds) and the paired per-seed difference λ-GRPO − GRPO."""
    from lgrpo.experiments.compare import ARMS

    runs = {
        d.name: run_entry(d) for d in sorted(out.glob("*-seed*")) if d.name.rpartition("-seed")[0] in ARMS
    }
    result: dict = {"runs": runs, "arms": {}, "paired": {}}
    keys = ("peak_accuracy", "peak_step", "final_accuracy", "accuracy_before", "seconds_per_step_median")
    for arm in ARMS:
        done = [e for e in runs.values() if e["arm"] == arm and e["finished"]]
        result["arms"][arm] = {"seeds": [e["seed"] for e in done]} | {
            k: _stats([e[k] for e in done if e[k] is not None]) for k in keys
        }
    seeds = sorted({e["seed"] for e in runs.values() if e["finished"]})
    for k in ("peak_accuracy", "peak_step", "final_accuracy"):
        diffs = [
            runs[f"lambda-seed{s}"][k] - runs[f"grpo-seed{s}"][k]
            for s in seeds
            if all(runs.get(f"{a}-seed{s}", {}).get("finished") for a in ARMS)
        ]
        result["paired"][k] = {"lambda_minus_grpo": _stats(diffs), "per_seed": diffs}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(markdown(result))
    return result


def estimate(
    seconds_per_step: float, eval_seconds: float, sft_seconds: float, steps: int, seeds: int, every: int
):
    """The study's wall time (s): per seed one warm start, per run ``steps`` steps and 2 + steps // every held-out
    evaluations (before, every ``every`` steps, after; the last one shared when ``every`` divides ``steps``)."""
    evals = 1 + (steps // every if every else 0) + (0 if every and steps % every == 0 else 1)
    return seeds * (sft_seconds + 2 * (steps * seconds_per_step + evals * eval_seconds))


def _fmt(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pm(st: dict | None, digits: int = 3) -> str:
    if not st:
        return "–"
    return f"{st['mean']:.{digits}f}" + (f" ± {st['sem']:.{digits}f}" if st["sem"] is not None else "")


def markdown(result: dict) -> str:
    rows = [
        "# GRPO against λ-GRPO: the study (benchmarks/real_model.py)",
        "",
        "Per arm over its finished seeds: mean ± s.e. (standard error, s.d./√n; none for one seed). Held-out greedy "
        "accuracy; the peak is over the evaluations after RL began (step > 0), the earliest step of equal peaks.",
        "",
        "| arm | seeds | held-out acc. before | peak acc. | step of peak | final acc. | s/step (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, e in result["arms"].items():
        rows.append(
            f"| {arm} | {len(e['seeds'])} | {_pm(e['accuracy_before'])} | {_pm(e['peak_accuracy'])} | "
            f"{_pm(e['peak_step'], 1)} | {_pm(e['final_accuracy'])} | {_pm(e['seconds_per_step_median'], 1)} |"
        )
    p = result["paired"]
    rows += [
        "",
        "| λ-GRPO − GRPO, paired by seed | peak acc. | step of peak | final acc. |",
        "|---|---|---|---|",
        f"| mean ± s.e. | {_pm(p['peak_accuracy']['lambda_minus_grpo'])} | "
        f"{_pm(p['peak_step']['lambda_minus_grpo'], 1)} | {_pm(p['final_accuracy']['lambda_minus_grpo'])} |",
        "| per seed | "
        + " | ".join(
            ", ".join(f"{d:+.{n}f}" for d in p[k]["per_seed"]) or "–"
            for k, n in (("peak_accuracy", 3), ("peak_step", 0), ("final_accuracy", 3))
        )
        + " |",
        "",
        "| run | steps | acc. curve (step: acc.) | reward first → last third | s/step | prm/flat_fraction | "
        "prm/path_depth_mean | prm/intermediate_proportion_mean | tokens with \\|λ\\| > 1, first → last third | distinct completions per group |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in result["runs"].items():
        curve = ", ".join(f"{s}: {a:.3f}" for s, a in e["accuracy_curve"].items())
        rows.append(
            f"| {name}{'' if e['finished'] else ' (unfinished)'} | {e['steps_done']} | {curve} | {_fmt(e['reward_first_third'])} → "
            f"{_fmt(e['reward_last_third'])} | {_fmt(e['seconds_per_step_median'], 1)} | "
            f"{_fmt(e['prm']['prm/flat_fraction'])} | {_fmt(e['prm']['prm/path_depth_mean'], 2)} | "
            f"{_fmt(e['prm']['prm/intermediate_proportion_mean'], 3)} | "
            f"{_fmt(e['shared_token_fraction_first_third'])} → {_fmt(e['shared_token_fraction_last_third'])} | "
            f"{_fmt(e['distinct_completions_per_group'], 2)} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", help="model.name_or_path (default: the cached SmolLM2 GGUF, fetched if needed)"
    )
    parser.add_argument("--steps", type=int, default=30, help="RL steps per run (30)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds, both arms on each (3)")
    parser.add_argument("--out", default="runs/bench/study", help="output folder")
    parser.add_argument("--report", action="store_true", help="only summarise the runs already in --out")
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="print the study's wall time from --step-seconds, --eval-seconds, --sft-seconds and exit",
    )
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=STEP_SECONDS,
        help="one RL step (default: as measured in the study, see STEP_SECONDS)",
    )
    parser.add_argument(
        "--eval-seconds",
        type=float,
        default=EVAL_SECONDS,
        help="one held-out evaluation of 200 problems (scaled to data.eval_size)",
    )
    parser.add_argument("--sft-seconds", type=float, default=SFT_SECONDS, help="one warm start")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. rl.learning_rate=2e-4"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.steps < 1 or args.seeds < 1:
        raise SystemExit("--steps and --seeds must be at least 1")
    from lgrpo.experiments.config import load_config

    model = args.model
    if model is None and not (args.report or args.estimate):
        from lgrpo.assets import fetch_smollm2

        model = str(fetch_smollm2())
    overrides = [
        *([f"model.name_or_path={model}"] if model else []),
        f"rl.max_steps={args.steps}",
        *args.overrides,
    ]
    try:
        cfg = load_config(RECIPE, overrides)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if args.estimate:
        eval_seconds = args.eval_seconds * cfg.data.eval_size / 200
        total = estimate(
            args.step_seconds, eval_seconds, args.sft_seconds, args.steps, args.seeds, cfg.eval.every
        )
        print(
            f"{args.seeds} seed{'s' * (args.seeds != 1)} × 2 arms × {args.steps} steps at {args.step_seconds:.1f} "
            f"s/step, held-out evaluation of {cfg.data.eval_size} problems {eval_seconds:.0f} s every "
            f"{cfg.eval.every} steps, warm start {args.sft_seconds:.0f} s: about {total / 3600:.2f} h "
            "(timings of this 2-core CPU at threads=1; pass --step-seconds etc. for yours)"
        )
        return 0
    if not args.report:
        from lgrpo.experiments.compare import compare

        compare(cfg, out, args.seeds, on_run_done=lambda: summarise(out))
    result = summarise(out)
    print(markdown(result))
    written = [
        f for f in ("results.json", "results.md", "comparison.json", "comparison.png") if (out / f).exists()
    ]
    print(f"written in {out}: {', '.join(written)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
