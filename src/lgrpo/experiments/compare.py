"""``lgrpo compare``: GRPO (``weighting=uniform``) and λ-GRPO on the same seeds, from the same warm start.

Writes ``DIR/<arm>-seed<S>/`` (ordinary ``lgrpo train`` run directories), ``DIR/comparison.json`` (per arm:
accuracy before/after as mean ± standard error of the mean (s.e.m.) over seeds, and per seed; the seconds of RL per
run; per seed the seconds of its warm start) and ``DIR/comparison.png`` (reward and held-out accuracy over steps, one
colour, line style and marker per arm); both files are rewritten after every finished run. The warm start of a seed is
computed once, in ``DIR/sft-seed<S>/``, by whichever arm runs first, and shared by both arms: its time is reported
apart from each arm's RL time. Re-running the same command skips finished runs and resumes interrupted ones; a run
directory made with another config is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

from lgrpo.experiments.config import TrainConfig, add_flags, flag_overrides, load_config, to_dict
from lgrpo.experiments.run_folder import RunFolder, config_diff, is_main_process, write_json
from lgrpo.models import LoadError

FLAGS = (
    "rl.max_steps",
)  # config keys that have a flag of their own (the arms set rl.weighting, --seeds the seeds)

ARMS = {"grpo": "uniform", "lambda": "lambda"}
ARM_LABELS = {"grpo": "GRPO (uniform weights)", "lambda": "λ-GRPO (1/|λ| weights)"}
COLORS = {"grpo": "tab:blue", "lambda": "tab:orange"}
STYLES = {"grpo": ("-", "o"), "lambda": ("--", "s")}  # equal curves stay visible: dashed over solid


def _stats(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    sem = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else None
    return {"mean": mean, "sem": sem}


def write_comparison(out: Path, seeds: list[int], cfg: TrainConfig) -> dict:
    """Aggregate the finished runs under ``out`` into ``comparison.json`` and ``comparison.png`` (written by the main
    process of a multi-process run only)."""
    result: dict = {"seeds": seeds, "steps": cfg.rl.max_steps, "arms": {}, "warm_start_seconds": {}}
    for arm in ARMS:
        per_seed = {}
        for s in seeds:
            summary = RunFolder(out / f"{arm}-seed{s}").read_summary()
            if summary is not None:
                per_seed[s] = summary
                warm = summary.get("seconds_warm_start")
                if warm:  # the arm that computed the seed's shared warm start (the other reused it: 0)
                    result["warm_start_seconds"][str(s)] = warm
        entry: dict = {"weighting": ARMS[arm], "runs": len(per_seed)}
        for key in ("accuracy_before", "accuracy_after", "reward_last10pct", "seconds_rl"):
            vals = {s: v[key] for s, v in per_seed.items() if v.get(key) is not None}
            if vals:
                entry[key] = {**_stats(list(vals.values())), "per_seed": {str(s): v for s, v in vals.items()}}
        result["arms"][arm] = entry
    if is_main_process():
        write_json(out / "comparison.json", result)
        plot(out, seeds)
    return result


def plot(out: Path, seeds: list[int]) -> None:
    import matplotlib
    import numpy as np

    from lgrpo.analysis.analyze import _rolling
    from lgrpo.analysis.report import smooth_window

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_a) = plt.subplots(1, 2, figsize=(11, 4.3))
    drawn: dict[str, str] = {}  # arm: legend label
    for arm in ARMS:
        for s in seeds:
            lines = RunFolder(out / f"{arm}-seed{s}").read_metrics()
            if not lines:
                continue
            ls, marker = STYLES[arm]
            style = "solid, filled circles" if arm == "grpo" else "dashed, hollow squares"
            drawn[arm] = f"{ARM_LABELS[arm]}: {style}; one line per seed"
            pts = [(line["step"], line["reward"]) for line in lines if "reward" in line]
            if pts:
                steps, rewards = zip(*pts)
                window = smooth_window(0, len(rewards))
                ax_r.plot(steps, rewards, color=COLORS[arm], ls=ls, alpha=0.2, lw=0.8)  # raw, faint
                smooth = _rolling(np.array(rewards, dtype=float), window)
                ax_r.plot(steps, smooth, color=COLORS[arm], ls=ls, alpha=0.9, lw=1.2)
            pts = [(line["step"], line["eval/accuracy"]) for line in lines if "eval/accuracy" in line]
            if pts:
                steps, acc = zip(*pts)
                fill = COLORS[arm] if arm == "grpo" else "none"  # hollow over filled where they coincide
                ax_a.plot(steps, acc, color=COLORS[arm], ls=ls, marker=marker, mfc=fill, ms=4, lw=1.2)
    ax_r.set(
        title="training reward (faint: per step; bold: moving average)", xlabel="step", ylabel="mean reward"
    )
    ax_a.set(title="held-out greedy accuracy", xlabel="step", ylabel="accuracy")
    ax_a.set_ylim(-0.02, 1.02)
    for ax in (ax_r, ax_a):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    if drawn:  # one legend for both panels, below them, so that it hides no curve
        from matplotlib.lines import Line2D

        keys = [
            Line2D([], [], color=COLORS[a], ls=STYLES[a][0], marker=STYLES[a][1],
                   mfc=COLORS[a] if a == "grpo" else "none", label=label)
            for a, label in drawn.items()
        ]  # fmt: skip
        fig.legend(handles=keys, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(f"GRPO vs λ-GRPO, seeds {seeds}")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out / "comparison.png", dpi=110)
    plt.close(fig)


def _check_same_config(run_dir: Path, cfg: TrainConfig) -> None:
    """ValueError when ``run_dir`` holds a run (finished or not) whose saved config differs from ``cfg``."""
    path = RunFolder(run_dir).config
    if not path.exists():
        return
    diff = config_diff(to_dict(load_config(path)), to_dict(cfg))
    if diff:
        changes = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in diff.items())
        raise ValueError(
            f"--out: {run_dir} holds a run with another config ({changes}); "
            "use another --out, or the options of that run to continue it"
        )


def compare(cfg: TrainConfig, out: str | Path, n_seeds: int = 3, on_run_done=None) -> dict:
    """Both arms on ``n_seeds`` seeds into ``out`` (see the module docstring); ``on_run_done()`` is called after
    each finished run (e.g. to rewrite a summary)."""
    from lgrpo.experiments.train import train

    out = Path(out)
    seeds = [cfg.seed + i for i in range(n_seeds)]
    arm_cfgs = {
        (s, arm): dataclasses.replace(cfg, seed=s, rl=dataclasses.replace(cfg.rl, weighting=weighting))
        for s in seeds
        for arm, weighting in ARMS.items()
    }
    for (
        s,
        arm,
    ), arm_cfg in arm_cfgs.items():  # before any work: never resume or skip a run of another config
        _check_same_config(out / f"{arm}-seed{s}", arm_cfg)
    out.mkdir(parents=True, exist_ok=True)
    result = write_comparison(out, seeds, cfg) if any(out.glob("*-seed*/summary.json")) else {}
    for s in seeds:
        for arm, weighting in ARMS.items():
            run_dir = out / f"{arm}-seed{s}"
            folder = RunFolder(run_dir)
            if folder.summary.exists():
                print(f"{run_dir}: done, skipping", file=sys.stderr)
                continue
            arm_cfg = arm_cfgs[(s, arm)]
            print(f"=== {arm} (weighting={weighting}), seed {s} -> {run_dir}", file=sys.stderr)
            resume = folder.checkpoints.exists() or folder.metrics.exists()
            summary = train(arm_cfg, run_dir, resume=resume, sft_dir=out / f"sft-seed{s}")
            print(
                f"{arm} seed {s}: accuracy {summary['accuracy_before']:.3f} -> {summary['accuracy_after']:.3f}",
                file=sys.stderr,
            )
            result = write_comparison(out, seeds, cfg)
            if on_run_done is not None and is_main_process():
                on_run_done()
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML run config (default: the embedded CPU default)")
    parser.add_argument(
        "--seeds", type=int, default=3, help="number of seeds, starting at the config's seed (3)"
    )
    parser.add_argument("--out", default="runs/compare", help="output directory (default: runs/compare)")
    add_flags(parser, FLAGS)
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. rl.beta=0.04"
    )


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise SystemExit(f"lgrpo compare: error: --seeds must be at least 1, got {args.seeds}")
    overrides = [*(args.overrides or []), *flag_overrides(args, FLAGS)]
    try:
        cfg = load_config(args.config, overrides)
    except ValueError as e:
        raise SystemExit(f"lgrpo compare: error: {e}") from None
    try:
        result = compare(cfg, args.out, args.seeds)
    except (ValueError, LoadError) as e:
        raise SystemExit(f"lgrpo compare: error: {e}") from None
    if not is_main_process():
        return 0
    for arm, entry in result["arms"].items():
        b, a = entry.get("accuracy_before", {}), entry.get("accuracy_after", {})
        sem, rl = a.get("sem"), entry.get("seconds_rl", {}).get("mean")
        print(
            f"{arm:>6}: accuracy {b.get('mean', float('nan')):.3f} -> {a.get('mean', float('nan')):.3f}"
            + (f" ± {sem:.3f} (mean ± s.e.m.)" if sem is not None else "")
            + f" over {entry['runs']} seed(s)"
            + (f"; RL {rl:.0f} s per run" if rl is not None else "")
        )
    warm = result.get("warm_start_seconds", {})
    if warm:
        print(
            "warm start (shared by both arms): " + ", ".join(f"seed {s} {v:.0f} s" for s, v in warm.items())
        )
    print(f"results in {args.out}/comparison.json and comparison.png")
    return 0
