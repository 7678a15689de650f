"""Wall time of the full default `lgrpo toy` sweep (6 cells × 2 arms × 5 seeds × 250 steps).

Runs the command as a user would (a fresh process, so import time counts), once per worker count, checks that
every worker count gives the same results, and prints the figures and the table. Target: at most 180 s on 2 cores.

    .venv/bin/python benchmarks/toy_sweep.py [--workers 1 2] [--repeat 1] [extra lgrpo toy flags…]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 180.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    parser.add_argument("--workers", type=int, nargs="+", default=sorted({1, cores}))
    parser.add_argument("--repeat", type=int, default=1)
    args, extra = parser.parse_known_args()
    if args.repeat < 1 or min(args.workers) < 1:
        parser.error("--repeat and --workers: expected positive integers")
    lgrpo = Path(sys.executable).with_name("lgrpo")
    print(f"cores available: {cores}; load average before: {os.getloadavg()[0]:.2f}")
    cells = None
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            for rep in range(args.repeat):
                out = Path(tmp) / f"w{workers}-{rep}"
                cmd = [str(lgrpo), "toy", "--workers", str(workers), "--out", str(out), *extra]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if proc.returncode:
                    print(proc.stderr, file=sys.stderr)
                    return proc.returncode
                res = json.loads((out / "results.json").read_text())
                ok = "PASS" if wall <= TARGET_S else "FAIL"
                print(
                    f"workers={workers}: {wall:6.1f} s wall for the command, {res['seconds']:6.1f} s in the sweep "
                    f"(target ≤ {TARGET_S:.0f} s: {ok}); load average now {os.getloadavg()[0]:.2f}"
                )
                if cells is None:
                    cells, table = res["cells"], proc.stdout
                elif res["cells"] != cells:
                    print("results differ between worker counts", file=sys.stderr)
                    return 1
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
