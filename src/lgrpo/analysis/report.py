"""``lgrpo report RUN_DIR…``: overlay runs of ``lgrpo train`` / ``lgrpo compare`` in one Markdown report.

Each argument is a run directory (``metrics.jsonl`` plus ``summary.json`` or ``config.yaml``), a ``LambdaGRPOTrainer``
``output_dir`` (``metrics.jsonl`` plus ``trainer_config.json``, :class:`lgrpo.engines.trl.RunFolderLog`) or a
``lgrpo compare`` output directory, whose ``<arm>-seed<S>/`` run directories are all taken. Runs are grouped into arms by
``weighting`` and ``lambda_power`` (from ``summary.json``, else ``config.yaml`` or ``trainer_config.json``, else the
directory name); seeds of
an arm are drawn as their mean with a band of ± one standard deviation over seeds (where at least two seeds logged
that step). Written to ``--out``: ``report.md``, ``curves.png`` (reward and held-out accuracy over steps) and
``prm.png`` (the ``prm/*`` curves).

The peak table: for each seed, its highest ``eval/accuracy`` and the first step that reached it; the table gives the
mean (± standard deviation) of both over the arm's seeds, and also the peak of the arm's mean curve.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lgrpo.experiments.run_folder import CONFIG, METRICS, SUMMARY, TRAINER_CONFIG, read_metrics

__all__ = [
    "Run",
    "add_arguments",
    "arm_label",
    "discover_runs",
    "load_run",
    "peak_table",
    "run",
    "write_report",
]

ACCURACY = "eval/accuracy"
REWARD = "reward"
RUN_DIR_RE = re.compile(r"^(?P<arm>[A-Za-z0-9_.]+)-seed(?P<seed>\d+)$")


@dataclass
class Run:
    """One run directory: its arm, seed, summary and ``metrics[key] = {step: value}``."""

    path: Path
    arm: str
    seed: int | None
    summary: dict[str, Any]
    metrics: dict[str, dict[int, float]] = field(default_factory=dict)


def _is_run(path: Path) -> bool:
    return (path / METRICS).is_file() and any((path / f).is_file() for f in (SUMMARY, CONFIG, TRAINER_CONFIG))


def discover_runs(paths: list[str | Path]) -> list[Path]:
    """Expand each argument into run directories; ``SystemExit`` for one that is neither a run nor a compare output."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise SystemExit(f"RUN_DIR: {p} is not a directory")
        if _is_run(p):
            out.append(p)
            continue
        subs = sorted(d for d in p.iterdir() if d.is_dir() and RUN_DIR_RE.match(d.name) and _is_run(d))
        if not subs:
            raise SystemExit(
                f"RUN_DIR: {p} is not a run directory (needs metrics.jsonl and summary.json or config.yaml; or, "
                "from a LambdaGRPOTrainer output_dir, metrics.jsonl and trainer_config.json) and holds no "
                "<arm>-seed<S>/ run directories of `lgrpo compare`"
            )
        out.extend(subs)
    seen: set[Path] = set()
    return [d for d in out if not (d.resolve() in seen or seen.add(d.resolve()))]


def _find_key(tree: Any, key: str) -> Any:
    """``key``'s value at the top of a config mapping or one level down (configs may nest sections)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for v in tree.values():
            if isinstance(v, dict) and key in v:
                return v[key]
    return None


def arm_label(weighting: str | None, lambda_power: float | None) -> str:
    """``GRPO`` for uniform weighting, ``λ-GRPO`` for 1/|λ|, ``λ-GRPO α=…`` for other powers."""
    if weighting == "uniform":
        return "GRPO"
    if weighting == "lambda":
        p = 1.0 if lambda_power is None else float(lambda_power)
        return "λ-GRPO" if p == 1.0 else f"λ-GRPO α={p:g}"
    return str(weighting)


def load_run(path: Path) -> Run:
    """Read one run directory (``metrics.jsonl`` lines without an integer ``step`` are skipped)."""
    summary: dict[str, Any] = {}
    if (path / "summary.json").is_file():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except json.JSONDecodeError as e:
            raise SystemExit(f"RUN_DIR: {path / 'summary.json'} is not valid JSON ({e.msg})") from None
    config: Any = None
    if (path / "config.yaml").is_file():
        import yaml

        try:
            config = yaml.safe_load((path / "config.yaml").read_text())
        except yaml.YAMLError as e:
            raise SystemExit(f"RUN_DIR: {path / 'config.yaml'} is not valid YAML ({e})") from None
    elif (path / TRAINER_CONFIG).is_file():  # a LambdaGRPOTrainer output_dir
        try:
            config = json.loads((path / TRAINER_CONFIG).read_text())
        except json.JSONDecodeError as e:
            raise SystemExit(f"RUN_DIR: {path / TRAINER_CONFIG} is not valid JSON ({e.msg})") from None

    def info(key: str) -> Any:
        return summary[key] if key in summary else _find_key(config, key)

    weighting, power, seed = info("weighting"), info("lambda_power"), info("seed")
    m = RUN_DIR_RE.match(path.name)
    if weighting is None and m:
        weighting = {"grpo": "uniform", "lambda": "lambda"}.get(m["arm"], m["arm"])
    if seed is None and m:
        seed = int(m["seed"])
    if weighting is None:
        raise SystemExit(
            f"RUN_DIR: {path}: no `weighting` in summary.json, config.yaml or {TRAINER_CONFIG}, so its arm is unknown"
        )

    metrics: dict[str, dict[int, float]] = defaultdict(dict)
    try:
        for rec in read_metrics(path / METRICS):
            step = rec.get("step")
            if not isinstance(step, int) or isinstance(step, bool):
                continue
            for k, v in rec.items():
                if (
                    k != "step"
                    and isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and math.isfinite(v)
                ):
                    metrics[k][step] = float(v)  # a later line for the same step wins (e.g. after a resume)
    except ValueError as e:
        raise SystemExit(f"RUN_DIR: {e}") from None
    return Run(path, arm_label(weighting, power), None if seed is None else int(seed), summary, dict(metrics))


# ----------------------------------------------------------------------------------------------------------------
# aggregation over seeds


def arm_curve(runs: list[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, mean, std, n)`` of ``key`` over the runs' seeds at every step any of them logged."""
    steps = sorted({s for r in runs for s in r.metrics.get(key, {})})
    mean, std, n = [], [], []
    for s in steps:
        vals = np.array([r.metrics[key][s] for r in runs if s in r.metrics.get(key, {})])
        mean.append(vals.mean())
        std.append(vals.std(ddof=1) if vals.size > 1 else np.nan)
        n.append(vals.size)
    return np.array(steps, dtype=float), np.array(mean), np.array(std), np.array(n)


def _peak(curve: dict[int, float]) -> tuple[float, int]:
    best = max(curve.values())
    return best, min(s for s, v in curve.items() if v == best)


def peak_table(arms: dict[str, list[Run]], key: str = ACCURACY) -> list[dict[str, Any]]:
    """Per arm: seeds, mean/std of each seed's peak ``key`` and its step, the mean curve's peak, final value."""
    rows = []
    for arm, runs in arms.items():
        seeded = [r for r in runs if r.metrics.get(key)]
        row: dict[str, Any] = {"arm": arm, "seeds": len(runs), "seeds_with_eval": len(seeded)}
        if seeded:
            peaks = np.array([_peak(r.metrics[key]) for r in seeded], dtype=float)
            steps, mean, _, _ = arm_curve(seeded, key)
            k = int(np.argmax(mean))
            finals = [r.metrics[key][max(r.metrics[key])] for r in seeded]
            row.update(
                peak_mean=float(peaks[:, 0].mean()),
                peak_std=float(peaks[:, 0].std(ddof=1)) if len(seeded) > 1 else None,
                peak_step_mean=float(peaks[:, 1].mean()),
                peak_step_std=float(peaks[:, 1].std(ddof=1)) if len(seeded) > 1 else None,
                peak_steps=[int(x) for x in peaks[:, 1]],
                mean_curve_peak=float(mean[k]),
                mean_curve_peak_step=int(steps[k]),
                final_mean=float(np.mean(finals)),
            )
        for name in ("accuracy_before", "accuracy_after"):
            vals = [r.summary[name] for r in runs if isinstance(r.summary.get(name), (int, float))]
            row[name] = float(np.mean(vals)) if vals else None
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# figures and the report


def smooth_window(smooth: int, n: int) -> int:
    """The trailing-mean window for a series of ``n`` points: ``smooth`` when given (1 = none), else (0) about a
    twentieth of the points."""
    return smooth if smooth > 0 else max(1, round(n / 20))


# one line style and marker per arm, so that equal curves stay visible (a dashed line over a solid one)
STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))
FRACTION_WORDS = ("accuracy", "fraction", "proportion", "ratio")


def valid_range(key: str, values: np.ndarray) -> tuple[float | None, float | None]:
    """The range the ``±`` band of ``key`` is clipped to: ``[0, 1]`` for accuracies, fractions, proportions and
    ratios; ``[0, ∞)`` for the other ``prm/*`` statistics (depths, sizes); else the range of the observed
    ``values`` (a reward: a mean ± s.d. of values in ``[lo, hi]`` is drawn within ``[lo, hi]``)."""
    name = key.rsplit("/", 1)[-1]
    if any(w in name for w in FRACTION_WORDS):
        return 0.0, 1.0
    if key.startswith("prm/"):
        return 0.0, None
    return (float(values.min()), float(values.max())) if values.size else (None, None)


def _plot_key(ax: Any, arms: dict[str, list[Run]], colors: dict[str, str], key: str, smooth: int = 1) -> bool:
    """The arms' mean curves of ``key`` with a ± s.d. band clipped to :func:`valid_range`; with a window > 1
    (:func:`smooth_window`) the raw mean is drawn faintly under its trailing mean. Each arm has its own line style
    and marker; an arm whose curve equals an earlier arm's says so in the legend."""
    drawn: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    values = np.array([v for runs in arms.values() for r in runs for v in r.metrics.get(key, {}).values()])
    lo, hi = valid_range(key, values)
    for i, (arm, runs) in enumerate(arms.items()):
        steps, mean, std, _ = arm_curve(runs, key)
        if not steps.size:
            continue
        c = colors[arm]
        style, marker = STYLES[i % len(STYLES)]
        same = [a for a, (s, m) in drawn.items() if np.array_equal(s, steps) and np.array_equal(m, mean)]
        drawn[arm] = (steps, mean)
        window = smooth_window(smooth, steps.size)
        if window > 1:
            from lgrpo.analysis.analyze import _rolling

            ax.plot(steps, mean, color=c, ls=style, lw=0.8, alpha=0.3)  # the raw series
            mean, std = _rolling(mean, window), _rolling(std, window)
        nseeds = len({r.seed for r in runs if r.metrics.get(key)})
        label = f"{arm} (n={nseeds})" + (f", equal to {same[0]}" if same else "")
        ax.plot(
            steps,
            mean,
            color=c,
            ls=style,
            lw=1.8,
            marker=marker if steps.size <= 30 else None,
            ms=4 if same else 3,
            mfc="none" if same else c,  # hollow markers over an equal curve's filled ones
            label=label,
        )
        band = ~np.isnan(std)
        if band.any():
            below, above = mean - np.where(band, std, 0), mean + np.where(band, std, 0)
            ax.fill_between(
                steps,
                below if lo is None else np.maximum(below, lo),
                above if hi is None else np.minimum(above, hi),
                where=band,
                color=c,
                alpha=0.18,
                lw=0,
            )
    ax.set_title(key, fontsize=10)
    ax.set_xlabel("step")
    ax.xaxis.get_major_locator().set_params(integer=True)  # steps are integers
    ax.grid(alpha=0.3)
    if drawn and lo is not None and hi is not None and hi > lo:
        # a fraction's axis stays within [0, 1]; a constant one (matplotlib would centre it on ±0.04) spans it all
        y0, y1 = (lo, hi) if np.ptp(values) == 0 else ax.get_ylim()
        pad = 0.03 * (y1 - y0)
        ax.set_ylim(max(y0, lo) - pad, min(y1, hi) + pad)
    if drawn:
        ax.legend(frameon=False, fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no {key} logged", ha="center", va="center", transform=ax.transAxes, color="0.4")
    return bool(drawn)


def _fmt(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pm(mean: float | None, std: float | None, digits: int = 4) -> str:
    if mean is None:
        return "–"
    return _fmt(mean, digits) + ("" if std is None else f" ± {std:.{digits}f}")


def peak_steps_text(steps: list[int]) -> str:
    """The steps at which each seed peaked, as read in a table: ``5`` (one seed), ``5 (all 3 seeds)``, or
    ``7.5 ± 3.5 s.d. (5, 10)`` (mean ± sample s.d. over seeds, then each seed's step)."""
    if len(set(steps)) == 1:
        return str(steps[0]) + (f" (all {len(steps)} seeds)" if len(steps) > 1 else "")
    return f"{np.mean(steps):g} ± {np.std(steps, ddof=1):.1f} s.d. ({', '.join(map(str, steps))})"


def write_report(runs: list[Run], out: Path, smooth: int = 0) -> Path:
    """Write ``report.md``, ``curves.png`` and ``prm.png`` into ``out``; returns the report's path."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("the figures need matplotlib: pip install 'lgrpo[eval]' (or matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    arms: dict[str, list[Run]] = defaultdict(list)
    order = {"GRPO": 0, "λ-GRPO": 1}
    for r in sorted(runs, key=lambda r: (order.get(r.arm, 2), r.arm, r.seed if r.seed is not None else -1)):
        arms[r.arm].append(r)
    palette = ["#1f77b4", "#d95f02", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    colors = {a: palette[i % len(palette)] for i, a in enumerate(arms)}

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    _plot_key(axes[0], arms, colors, REWARD, smooth)
    _plot_key(axes[1], arms, colors, ACCURACY)
    axes[0].set_ylabel("mean reward (training batch)")
    axes[1].set_ylabel("held-out accuracy (greedy)")
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)

    prm_keys = sorted({k for r in runs for k in r.metrics if k.startswith("prm/")})
    if prm_keys:
        cols = min(4, len(prm_keys))
        rows_ = math.ceil(len(prm_keys) / cols)
        fig, axes = plt.subplots(
            rows_, cols, figsize=(4 * cols, 3.2 * rows_), constrained_layout=True, squeeze=False
        )
        for ax, key in zip(axes.flat, prm_keys):
            _plot_key(ax, arms, colors, key, smooth)
        for ax in list(axes.flat)[len(prm_keys) :]:
            ax.axis("off")
        fig.savefig(out / "prm.png", dpi=110)
        plt.close(fig)

    table = peak_table(arms)
    lines = ["# lgrpo run report", ""]
    lines += [
        "| arm | seed | run | accuracy before → after | warm start (s) | RL (s) | total (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, rs in arms.items():
        for r in rs:
            before, after = r.summary.get("accuracy_before"), r.summary.get("accuracy_after")
            secs = [r.summary.get(k) for k in ("seconds_warm_start", "seconds_rl", "seconds")]
            lines.append(
                f"| {arm} | {'–' if r.seed is None else r.seed} | `{r.path}` | "
                f"{_fmt(before) if isinstance(before, (int, float)) else '–'} → "
                f"{_fmt(after) if isinstance(after, (int, float)) else '–'} | "
                + " | ".join(f"{x:.0f}" if isinstance(x, (int, float)) else "–" for x in secs)
                + " |"
            )
    lines += [
        "",
        "Warm start: the supervised warm start this run computed (0 where it reused one: `lgrpo compare` computes a "
        "seed's warm start once, in whichever arm runs first); RL: the RL training loop with the held-out evaluations "
        "inside it; total: the whole command, with model loading and the evaluation before RL.",
    ]
    lines += ["", f"## Peak held-out accuracy (`{ACCURACY}`)", ""]
    lines += [
        "Per seed: the highest accuracy and the first step reaching it; ± is one sample standard deviation (s.d.) "
        "over seeds, absent for one seed. “Mean curve” is the peak of the seed-averaged curve.",
        "",
        "| arm | seeds | peak accuracy (mean ± s.d.) | step at peak | mean-curve peak (step) | final accuracy "
        "| summary before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table:
        if row["seeds_with_eval"]:
            lines.append(
                f"| {row['arm']} | {row['seeds_with_eval']} | {_pm(row['peak_mean'], row['peak_std'])} | "
                f"{peak_steps_text(row['peak_steps'])} | "
                f"{_fmt(row['mean_curve_peak'])} ({row['mean_curve_peak_step']}) | {_fmt(row['final_mean'])} | "
                f"{_fmt(row['accuracy_before'])} → {_fmt(row['accuracy_after'])} |"
            )
        else:
            lines.append(
                f"| {row['arm']} | 0 | no held-out accuracy logged | – | – | – | "
                f"{_fmt(row['accuracy_before'])} → {_fmt(row['accuracy_after'])} |"
            )
    missing = [row["arm"] for row in table if not row["seeds_with_eval"]]
    if missing:
        lines += [
            "",
            f"No run of {', '.join(missing)} logged held-out accuracy (`{ACCURACY}`), so there is no peak to "
            "report for it: `lgrpo train` measures it every `eval.every` steps; a `LambdaGRPOTrainer` logs it only "
            "where your own code adds it to the logs.",
        ]
    band = (
        "mean over seeds, band ± 1 s.d. over seeds clipped to the range the quantity can take ([0, 1] for accuracy "
        "and fractions, ≥ 0 for the other prm/*, the observed range for reward); each arm has its own line style "
        "and marker, so equal curves stay visible, and the legend names an arm whose curve equals another's"
    ) + (
        "; reward and prm/*: faint, the raw series; solid, its trailing mean over "
        + (f"{smooth} points" if smooth > 1 else "about a twentieth of the steps (`--smooth`)")
        if smooth != 1
        else ""
    )
    lines += [
        "",
        "## Reward and held-out accuracy",
        "",
        "![reward and accuracy](curves.png)",
        "",
        f"({band}.)",
        "",
    ]
    if prm_keys:
        lines += ["## Implicit PRM statistics (`prm/*`)", "", "![prm curves](prm.png)", ""]
    else:
        lines += ["## Implicit PRM statistics", "", "No `prm/*` metrics were logged.", ""]
    (out / "report.json").write_text(
        json.dumps({"runs": [str(r.path) for r in runs], "peaks": table}, indent=1) + "\n"
    )
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories of `lgrpo train`, or output directories of `lgrpo compare`",
    )
    parser.add_argument("--out", default=None, help="output directory (default: the first RUN_DIR's report/)")
    parser.add_argument(
        "--include-unfinished",
        action="store_true",
        help="also count `lgrpo train` runs that have no summary.json yet (still training, or stopped) when "
        "finished runs are there too (default: leave them out, so a half-run seed does not move an arm's peak)",
    )
    parser.add_argument(
        "--smooth",
        type=int,
        default=0,
        help="trailing-mean window drawn over the faint raw reward and prm/* curves (default 0: about a "
        "twentieth of the steps; 1: raw only)",
    )


def run(args: argparse.Namespace) -> int:
    if args.smooth < 0:
        raise SystemExit(f"--smooth: expected a window of at least 1 (or 0: automatic), got {args.smooth}")
    runs = [load_run(p) for p in discover_runs(args.run_dirs)]
    # an `lgrpo train` run writes summary.json when it ends; a LambdaGRPOTrainer output_dir never does
    unfinished = [r for r in runs if not r.summary and (r.path / CONFIG).is_file()]
    if unfinished and len(unfinished) < len(runs) and not args.include_unfinished:
        for r in unfinished:
            print(
                f"warning: {r.path} has no {SUMMARY} (still training, or stopped): left out "
                "(--include-unfinished counts it)",
                file=sys.stderr,
            )
        runs = [r for r in runs if r not in unfinished]
    first: dict[tuple[str, int | None], Path] = {}
    for r in runs:
        other = first.setdefault((r.arm, r.seed), r.path)
        if other != r.path:
            print(
                f"warning: {r.path} and {other} are both {r.arm} seed {r.seed}; both count as seeds of {r.arm}",
                file=sys.stderr,
            )
    out = Path(args.out) if args.out is not None else Path(args.run_dirs[0]) / "report"
    path = write_report(runs, out, smooth=args.smooth)
    print(f"{len(runs)} runs → {path}")
    for row in peak_table({r.arm: [x for x in runs if x.arm == r.arm] for r in runs}):
        if row["seeds_with_eval"]:
            n = row["seeds_with_eval"]
            print(
                f"  {row['arm']}: peak {ACCURACY} {_pm(row['peak_mean'], row['peak_std'])}"
                + (f" (mean ± s.d. over {n} seeds)" if n > 1 else " (1 seed)")
                + f", at step {peak_steps_text(row['peak_steps'])}"
            )
    return 0
