"""What `make demo` gives across seeds and thread counts: the stand-in for other machines' rounding (issue 15 §5).

One thread count against another changes the order of floating-point reductions, as another machine does; a seed
changes the initialisation, the problems and the sampling. For every seed × thread count this runs ``lgrpo train``
with the embedded default (plus any ``key=value`` overrides) into ``OUT/seed<S>-threads<T>/`` and reports held-out
accuracy before → after RL and the wall time of the command; finished runs are skipped (``--resume``).

    python benchmarks/demo_spread.py --seeds 0 1 2 --threads 1 2 --out runs/bench/demo_spread
    python benchmarks/demo_spread.py --out runs/bench/demo_spread --report      # table of what is there

``--lock FILE`` runs each training under ``flock FILE`` (one run per hold), for a machine shared by several jobs;
only the training is timed. Writes ``OUT/results.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(out: Path, seed: int, threads: int, overrides: list[str], lock: str | None) -> None:
    run_dir = out / f"seed{seed}-threads{threads}"
    if (run_dir / "summary.json").exists():
        return
    cmd = [sys.executable, "-m", "lgrpo.cli", "train", "--out", str(run_dir), "--resume", *overrides]
    cmd += [f"seed={seed}", f"threads={threads}"]
    # timed inside the lock: the training, not the wait for the lock
    timer = ["/usr/bin/time", "-f", "%e", "-o", f"{run_dir}.wall"]
    prefix = ["flock", lock] if lock else []
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*prefix, *timer, *cmd], check=True)


def report(out: Path) -> list[dict]:
    rows = []
    for run_dir in sorted(p for p in out.glob("seed*-threads*") if p.is_dir()):
        summary_path = run_dir / "summary.json"
        if not summary_path.exists():
            continue
        s = json.loads(summary_path.read_text())
        wall = Path(str(run_dir) + ".wall")
        rows.append(
            {
                "seed": s["seed"],
                "threads": s["threads"],
                "accuracy_before": s["accuracy_before"],
                "accuracy_after": s["accuracy_after"],
                "seconds": s["seconds"],
                "wall": float(wall.read_text()) if wall.exists() else None,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| seed | threads | before | after | training s | command s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        wall = f"{r['wall']:.0f}" if r["wall"] is not None else ""
        lines.append(
            f"| {r['seed']} | {r['threads']} | {r['accuracy_before']:.3f} | {r['accuracy_after']:.3f} "
            f"| {r['seconds']:.0f} | {wall} |"
        )
    if rows:
        for key in ("accuracy_before", "accuracy_after", "seconds"):
            values = [r[key] for r in rows]
            lines.append(
                f"\n{key}: min {min(values):.3f}, median {statistics.median(values):.3f}, max {max(values):.3f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "demo_spread")
    parser.add_argument("--lock", help="run each training under `flock LOCK`")
    parser.add_argument("--report", action="store_true", help="only summarise the finished runs under --out")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the embedded default")
    args = parser.parse_args()
    if not args.report:
        for seed in args.seeds:
            for threads in args.threads:
                run(args.out, seed, threads, args.overrides, args.lock)
    rows = report(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
