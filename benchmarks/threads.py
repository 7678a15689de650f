"""``lgrpo train`` step time on a quiet CPU and beside one busy CPU-bound process, per thread setting (issue 15 §7).

For each setting (torch thread count, OpenMP wait policy) the script runs a short ``lgrpo train`` twice: alone, then
beside a second process that multiplies 512×512 matrices in a loop with torch's default thread count (every core,
OpenMP's default wait policy): another torch job, the realistic neighbour. It reports the median RL step time (TRL's
``step_time``: generation, loss and backward of one step; the first step is left out) and the wall time of the whole
command, and the busy/quiet ratio.

    flock /tmp/lgrpo-cpu.lock .venv/bin/python benchmarks/threads.py --recipe default --out runs/bench/threads
    flock /tmp/lgrpo-cpu.lock .venv/bin/python benchmarks/threads.py --recipe smollm2 --out runs/bench/threads

Run it on an otherwise idle machine (the numbers are only meaningful when nothing else heavy runs). Each call writes
``OUT/<recipe>-<busy>.json`` and prints a Markdown table. ``--settings`` picks some of ``SETTINGS`` by name.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LGRPO = [sys.executable, "-m", "lgrpo.cli", "train"]

# name -> (threads, OpenMP environment). libgomp's default (no OMP_WAIT_POLICY) spins a waiting thread 300,000 rounds
# before it sleeps: set here as GOMP_SPINCOUNT=300000, which libgomp documents as that default and which lgrpo
# leaves alone; PASSIVE sleeps at once; GOMP_SPINCOUNT=N spins N rounds.
SETTINGS: dict[str, tuple[int, dict[str, str]]] = {
    "threads=2": (2, {"GOMP_SPINCOUNT": "300000"}),
    "threads=1": (1, {"GOMP_SPINCOUNT": "300000"}),
    "threads=2,passive": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "threads=1,passive": (1, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "threads=2,spin=30000": (2, {"GOMP_SPINCOUNT": "30000"}),
    "threads=2,spin=3000": (2, {"GOMP_SPINCOUNT": "3000"}),
}
OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
RECIPES: dict[str, list[str]] = {
    # the embedded default, cut short: a few warm-start steps, then RL steps of the default's size
    "default": ["sft.steps=10", "rl.max_steps=12", "data.eval_size=8", "eval.every=0", "rl.save_steps=1000"],
    # the real-model recipe (SmolLM2-135M, LoRA): a one-step warm start, then a few RL steps
    "smollm2": [
        "--config",
        str(ROOT / "configs" / "smollm2-135m.yaml"),
        "sft.steps=1",
        "rl.max_steps=3",
        "data.eval_size=2",
        "rl.save_steps=1000",
    ],
}
BUSY = {
    "torch": "import torch\na = torch.randn(512, 512)\nwhile True:\n    a @ a\n",  # every core, spinning OpenMP
    "python": "while True:\n    pass\n",  # one core
}


def clean_env() -> dict[str, str]:
    """This environment without any OpenMP setting."""
    return {k: v for k, v in os.environ.items() if k not in OMP_VARS}


def run_once(recipe: str, threads: int, omp: dict[str, str], out: Path, extra: list[str]) -> dict:
    """One ``lgrpo train`` run; its RL step times (s) and wall time (s)."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**clean_env(), **omp}
    cmd = [*LGRPO, "--out", str(out), *RECIPES[recipe], *extra, f"threads={threads}"]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = [ln["step_time"] for ln in lines if "step_time" in ln]
    return {"step_times": steps, "step_median": statistics.median(steps[1:] or steps), "wall": wall}


def measure(recipe: str, names: list[str], busy_kind: str, out: Path, extra: list[str]) -> list[dict]:
    rows = []
    for name in names:
        threads, omp = SETTINGS[name]
        quiet = run_once(recipe, threads, omp, out / f"{recipe}-{name}-quiet", extra)
        busy_proc = subprocess.Popen([sys.executable, "-c", BUSY[busy_kind]], env=clean_env())
        try:
            time.sleep(3)  # let the neighbour reach its loop
            busy = run_once(recipe, threads, omp, out / f"{recipe}-{name}-busy", extra)
        finally:
            busy_proc.kill()
            busy_proc.wait()
        row = {
            "setting": name,
            "quiet": quiet,
            "busy": busy,
            "ratio": busy["step_median"] / quiet["step_median"],
        }
        rows.append(row)
        print(
            f"{name}: quiet {quiet['step_median']:.3f} s/step ({quiet['wall']:.0f} s), "
            f"busy {busy['step_median']:.3f} s/step ({busy['wall']:.0f} s), ×{row['ratio']:.1f}",
            file=sys.stderr,
        )
    return rows


def table(title: str, rows: list[dict]) -> str:
    head = [
        f"{title}: median RL step time (s), quiet vs beside one busy process",
        "",
        "| setting | quiet s/step | busy s/step | busy / quiet | quiet wall s | busy wall s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    body = [
        f"| {r['setting']} | {r['quiet']['step_median']:.3f} | {r['busy']['step_median']:.3f} | {r['ratio']:.1f}× "
        f"| {r['quiet']['wall']:.0f} | {r['busy']['wall']:.0f} |"
        for r in rows
    ]
    return "\n".join(head + body)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS)[:4])
    parser.add_argument("--busy", choices=sorted(BUSY), default="torch", help="the neighbour process")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "threads")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="more overrides of the recipe")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = measure(args.recipe, args.settings, args.busy, args.out, args.overrides)
    (args.out / f"{args.recipe}-{args.busy}.json").write_text(json.dumps(rows, indent=1))
    print(table(f"{args.recipe}, busy={args.busy}", rows))


if __name__ == "__main__":
    main()
