"""``lgrpo analyze RUN_DIR``: per-step statistics of the implicit PRM from a run's rollout log.

For every training step: the fraction of flat groups, path depth (mean, median), intermediate proportion (mean,
median), mean process-set size, the fraction of completion tokens with ``|λ| > 1`` (where λ-GRPO and GRPO weigh a
token differently) and mean reward (METHOD.md §8) → ``prm_stats.json`` and ``prm_stats.png`` (one panel
per statistic over steps, like the paper's figure). The log is streamed one step at a time, so its size does not
matter; every statistic comes from :func:`lgrpo.process.tree_stats` on that step's tensors.

Means are the ones the trainer logs as ``prm/*`` (:meth:`TreeStats.summary`): flat fraction over groups, the rest
over non-empty completions, ``shared_token_fraction`` over all completion tokens. Medians are over the same
completions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lgrpo.analysis.rollouts import find_rollouts, iter_step_blocks, to_batch
from lgrpo.process import tree_stats

__all__ = ["STAT_KEYS", "StepStats", "add_arguments", "analyze_log", "plot_stats", "run"]

REPEAT_MODES = ("last", "merge", "error")
STAT_KEYS = (
    "flat_fraction",
    "path_depth_mean",
    "path_depth_median",
    "intermediate_proportion_mean",
    "intermediate_proportion_median",
    "process_set_size_mean",
    "shared_token_fraction",
    "reward_mean",
)


@dataclass
class StepStats:
    """Per-completion values of one step (non-empty completions only) and per-group flatness, before summarising."""

    step: int
    first_line: int
    group_keys: list[Any]
    group_flat: np.ndarray  # [G] bool
    path_depth: np.ndarray  # [N] (non-empty rows)
    intermediate: np.ndarray  # [N]
    set_size_mean: np.ndarray  # [N]
    shared_tokens: np.ndarray  # [B] tokens with |λ| > 1 (all rows)
    tokens: np.ndarray  # [B] completion tokens (all rows)
    rewards: np.ndarray  # [B] (all rows; NaN = unscored)

    @classmethod
    def from_records(cls, step: int, first_line: int, records: list[dict[str, Any]]) -> StepStats:
        batch = to_batch(records)
        stats = tree_stats(batch.ids, batch.mask, batch.group)
        nonempty = (stats.path_depth > 0).numpy()
        flat = np.zeros(len(batch.group_keys), dtype=bool)
        flat[batch.group.numpy()] = stats.flat.numpy()  # every row of a group carries the group's flag
        return cls(
            step,
            first_line,
            batch.group_keys,
            flat,
            stats.path_depth.numpy()[nonempty].astype(np.float64),
            stats.intermediate_proportion.numpy()[nonempty].astype(np.float64),
            stats.process_set_size_mean.numpy()[nonempty].astype(np.float64),
            stats.shared_tokens.numpy(),
            stats.lengths.numpy(),
            batch.rewards.numpy().astype(np.float64),
        )

    def merged(self, other: StepStats) -> StepStats:
        """The union of two blocks of one step, whose groups must be disjoint (a group is never split)."""
        shared = set(map(str, self.group_keys)) & set(map(str, other.group_keys))
        if shared:
            raise ValueError(
                f"step {self.step}: group(s) {', '.join(sorted(shared)[:5])} appear in two separate blocks of lines "
                f"(starting at lines {self.first_line} and {other.first_line}); a group split across blocks "
                "cannot be merged"
            )
        cat = np.concatenate
        return StepStats(
            self.step,
            self.first_line,
            self.group_keys + other.group_keys,
            cat([self.group_flat, other.group_flat]),
            cat([self.path_depth, other.path_depth]),
            cat([self.intermediate, other.intermediate]),
            cat([self.set_size_mean, other.set_size_mean]),
            cat([self.shared_tokens, other.shared_tokens]),
            cat([self.tokens, other.tokens]),
            cat([self.rewards, other.rewards]),
        )

    def summary(self) -> dict[str, Any]:
        def mean(x: np.ndarray) -> float | None:
            x = x[~np.isnan(x)]
            return float(x.mean()) if x.size else None

        def median(x: np.ndarray) -> float | None:
            return float(np.median(x)) if x.size else None

        return {
            "step": self.step,
            "groups": len(self.group_keys),
            "completions": int(self.rewards.size),
            "flat_fraction": float(self.group_flat.mean()) if self.group_flat.size else None,
            "path_depth_mean": mean(self.path_depth),
            "path_depth_median": median(self.path_depth),
            "intermediate_proportion_mean": mean(self.intermediate),
            "intermediate_proportion_median": median(self.intermediate),
            "process_set_size_mean": mean(self.set_size_mean),
            "shared_token_fraction": float(self.shared_tokens.sum() / self.tokens.sum())
            if self.tokens.sum()
            else None,
            "reward_mean": mean(self.rewards),
        }


def analyze_log(
    path: str | Path, repeated_steps: str = "last", show_progress: bool = False
) -> dict[str, Any]:
    """Stream ``rollouts.jsonl`` and return ``{"steps": [per-step summary, sorted by step], ...}``.

    ``repeated_steps`` says what happens when a step's lines reappear after other steps: ``"last"`` keeps the later
    block (a resumed run re-logs the steps after its checkpoint; the later ones are the ones that were trained on
    last), ``"merge"`` pools the blocks' groups (they must be disjoint), ``"error"`` raises ``ValueError``.
    """
    if repeated_steps not in REPEAT_MODES:
        raise ValueError(f"repeated_steps: expected one of {REPEAT_MODES}, got {repeated_steps!r}")
    path = Path(path)
    done: dict[int, dict[str, Any]] = {}  # step -> summary
    kept: dict[int, StepStats] = {}  # per-row values, only kept when merging
    repeated: list[dict[str, Any]] = []
    bar = tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc="analyze", disable=not show_progress
    )
    try:
        for block in iter_step_blocks(path, progress=bar.update):
            stats = StepStats.from_records(block.step, block.first_line, block.records)
            if block.step in done:
                note = {"step": block.step, "line": block.first_line, "action": repeated_steps}
                if repeated_steps == "error":
                    raise ValueError(
                        f"{path}:{block.first_line}: step {block.step} reappears after other steps (first seen at "
                        f"line {done[block.step]['first_line']}); use --repeated-steps last|merge to accept it"
                    )
                if repeated_steps == "merge":
                    stats = kept[block.step].merged(stats)
                repeated.append(note)
            if repeated_steps == "merge":
                kept[block.step] = stats
            done[block.step] = {**stats.summary(), "first_line": stats.first_line}
    finally:
        bar.close()
    steps = [{k: v for k, v in done[s].items() if k != "first_line"} for s in sorted(done)]
    return {"rollouts": str(path), "repeated_steps": repeated_steps, "repeated": repeated, "steps": steps}


def _rolling(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` finite points (NaN-aware)."""
    if window <= 1:
        return y
    ok = ~np.isnan(y)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    cnt = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(y.size)
    lo = np.maximum(idx + 1 - window, 0)
    n = cnt[idx + 1] - cnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (csum[idx + 1] - csum[lo]) / n, np.nan)


def plot_stats(steps: list[dict[str, Any]], out_png: Path, title: str = "", smooth: int = 1) -> None:
    """The paper-style figure: one panel per statistic over training steps."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("the figures need matplotlib: pip install 'lgrpo[eval]' (or matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("flat fraction (groups)", [("flat_fraction", "")]),
        ("path depth", [("path_depth_mean", "mean"), ("path_depth_median", "median")]),
        (
            "intermediate proportion",
            [("intermediate_proportion_mean", "mean"), ("intermediate_proportion_median", "median")],
        ),
        ("mean process-set size |λ|", [("process_set_size_mean", "")]),
        ("tokens with |λ| > 1", [("shared_token_fraction", "")]),
        ("mean reward", [("reward_mean", "")]),
    ]
    x = np.array([s["step"] for s in steps], dtype=float)
    ncols = 3
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.0 * ncols, 3.2 * nrows), constrained_layout=True, squeeze=False
    )
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (name, series) in zip(axes.flat, panels):
        for (key, label), color in zip(series, ("C0", "C1")):
            y = np.array([np.nan if s[key] is None else s[key] for s in steps], dtype=float)
            marker = "o" if len(x) <= 40 else None
            if smooth > 1:
                ax.plot(x, y, color=color, alpha=0.25, lw=0.8)
                y = _rolling(y, smooth)
            ax.plot(x, y, color=color, marker=marker, ms=3, lw=1.5, label=label or None)
        if len(series) > 1:
            ax.legend(frameon=False, fontsize=8)
        if name.startswith(("flat", "intermediate", "tokens")):
            ax.set_ylim(-0.03, 1.03)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.get_major_locator().set_params(integer=True)  # steps are integers
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run directory with rollouts.jsonl (or the file itself)"
    )
    parser.add_argument("--out", default=None, help="output directory (default: RUN_DIR)")
    parser.add_argument(
        "--repeated-steps",
        choices=REPEAT_MODES,
        default="last",
        help="a step whose lines reappear after other steps: keep the last block (default; a resumed run), "
        "merge the blocks' groups, or stop with an error",
    )
    parser.add_argument(
        "--smooth", type=int, default=1, help="trailing-mean window for the figure (default 1: none)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.smooth < 1:
        raise SystemExit(f"--smooth: expected a window of at least 1, got {args.smooth}")
    log = find_rollouts(args.run_dir)
    out = Path(args.out) if args.out else (log.parent if Path(args.run_dir).is_file() else Path(args.run_dir))
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = analyze_log(log, args.repeated_steps, show_progress=not args.no_progress)
    except ValueError as e:
        raise SystemExit(f"analyze: {e}") from None
    for note in result["repeated"]:
        verb = "kept the later block" if note["action"] == "last" else "merged the blocks"
        print(f"warning: step {note['step']} reappears at line {note['line']}; {verb}", file=sys.stderr)
    (out / "prm_stats.json").write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    steps = result["steps"]
    if steps:
        plot_stats(
            steps,
            out / "prm_stats.png",
            title=f"implicit PRM statistics — {log.parent.name}",
            smooth=args.smooth,
        )
    last = steps[-1] if steps else None
    print(
        f"{len(steps)} steps from {log} → {out / 'prm_stats.json'}"
        + (f", {out / 'prm_stats.png'}" if steps else "")
    )
    if last:
        shown = ", ".join(
            f"{k}={last[k]:.4g}"
            if isinstance(last[k], float) and not math.isnan(last[k])
            else f"{k}={last[k]}"
            for k in STAT_KEYS
        )
        print(f"last step {last['step']}: {shown}")
    return 0
