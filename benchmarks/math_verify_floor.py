"""Check that the installed math-verify gives every verdict of tests/fixtures/answers.jsonl (the dependency floor).

Needs only math-verify (no torch): it runs lgrpo's checking code in this process, as the verification worker does.
Run it in a throwaway environment with the version to check, from the repository root:

    python3 -m venv /tmp/mv && /tmp/mv/bin/pip install math-verify==0.8.0
    /tmp/mv/bin/python benchmarks/math_verify_floor.py

Prints one line per disagreeing case and exits 1 when there is any.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "lgrpo" / "tasks" / "math_answers.py"
FIXTURE = ROOT / "tests" / "fixtures" / "answers.jsonl"


def main() -> int:
    # The worker's part of math_answers.py ends where the parent-side code (torch, transformers) begins.
    text = SOURCE.read_text()
    code = text[: text.index('if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:')]
    ns: dict = {"__name__": "math_answers_worker", "__file__": str(SOURCE)}
    exec(compile(code, str(SOURCE), "exec"), ns)
    bad = 0
    cases = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    for case in cases:
        gold, completion = case["gold"], case["completion"]
        problem = ns["_gold_problem_in_process"](gold) if gold.strip() else "empty"
        if case["correct"] is None:
            got = None if problem is not None else "scorable"
        else:
            pred = ns["extract_boxed"](completion)
            got = problem or (pred is not None and bool(ns["_verify_in_process"](pred, gold)))
        if got != case["correct"]:
            bad += 1
            print(f"DISAGREES {case['kind']!r}: gold {gold!r}, completion {completion!r}: {got!r}")
    print(f"math-verify {version('math-verify')}: {len(cases) - bad}/{len(cases)} fixture verdicts agree")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
