"""Scoring generations and writing ``results.json``, ``results.md`` and ``predictions.jsonl``.

Every answer is checked by :func:`lgrpo.tasks.math_answers.verify`, the same function as the training reward, so
evaluation and training can never disagree on what counts as correct.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from typing import Any

from lgrpo.evaluation.registry import BENCHMARKS
from lgrpo.jsonl import read_jsonl
from lgrpo.tasks.math_answers import verify


def standard_error(p: float, n: int) -> float | None:
    """sqrt(p(1-p)/(n-1)), the paper's standard error of an accuracy over n items; None when n < 2."""
    return math.sqrt(p * (1.0 - p) / (n - 1)) if n >= 2 else None


class Scorer:
    """Scores items one at a time, appends each to ``predictions.jsonl`` at once, and keeps per-benchmark tallies."""

    def __init__(self, out_dir: str, timeout: float = 5.0) -> None:
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir = out_dir
        self.timeout = timeout
        self.scores: dict[str, list[float]] = {}
        self.timeouts = 0
        self.errors = 0
        self._file = open(os.path.join(out_dir, "predictions.jsonl"), "w", encoding="utf-8")  # noqa: SIM115

    def add(self, item_id: str, benchmark: str, answer: str, completion: str) -> float:
        score, err = verify(completion, answer, timeout=self.timeout)
        if err == "timeout":
            self.timeouts += 1
        elif err is not None:
            self.errors += 1
        self.scores.setdefault(benchmark, []).append(score)
        record = {"id": item_id, "benchmark": benchmark, "answer": answer, "completion": completion}
        record["correct"] = bool(score)
        if err is not None:
            record["verify_error"] = err
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        return score

    def close(self) -> None:
        self._file.close()

    def results(self, model: str | None = None) -> dict[str, Any]:
        per_bench = {}
        for name in _ordered(self.scores):
            scores = self.scores[name]
            n = len(scores)
            p = sum(scores) / n
            per_bench[name] = {
                "accuracy": p,
                "n": n,
                "correct": int(sum(scores)),
                "stderr": standard_error(p, n),
            }
        accs = [r["accuracy"] for r in per_bench.values()]
        return {
            "model": model,
            "benchmarks": per_bench,
            # the paper's "avg" column: the unweighted mean over benchmarks
            "average": sum(accs) / len(accs) if accs else None,
            "verify_timeouts": self.timeouts,
            "verify_errors": self.errors,
        }

    def write_results(self, model: str | None = None) -> dict[str, Any]:
        results = self.results(model)
        with open(os.path.join(self.out_dir, "results.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
        with open(os.path.join(self.out_dir, "results.md"), "w", encoding="utf-8") as f:
            f.write(results_markdown(results))
        return results


def _ordered(names: Iterable[str]) -> list[str]:
    """Registry order first (the paper's column order), then any other benchmark names alphabetically."""
    names = list(names)
    return [n for n in BENCHMARKS if n in names] + sorted(n for n in names if n not in BENCHMARKS)


def results_markdown(results: dict[str, Any]) -> str:
    """The table of METHOD.md §10 (accuracy per benchmark and their average), then n and standard errors."""
    benches = results["benchmarks"]
    labels = [BENCHMARKS[n].label if n in BENCHMARKS else n for n in benches]
    model = results.get("model") or "predictions"
    lines = [
        "| model | " + " | ".join(labels) + " | avg |",
        "|---|" + "---|" * (len(labels) + 1),
        f"| {model} | "
        + " | ".join(f"{r['accuracy']:.4f}" for r in benches.values())
        + f" | {results['average']:.4f} |",
        "",
        "| benchmark | n | correct | accuracy | stderr |",
        "|---|---|---|---|---|",
    ]
    for label, r in zip(labels, benches.values()):
        se = "–" if r["stderr"] is None else f"{r['stderr']:.4f}"
        lines.append(f"| {label} | {r['n']} | {r['correct']} | {r['accuracy']:.4f} | {se} |")
    lines += [
        "",
        f"Standard error: sqrt(p(1−p)/(n−1)). Verification time-outs: {results['verify_timeouts']}, "
        f"errors: {results['verify_errors']} (both scored 0).",
        "",
    ]
    return "\n".join(lines)


def read_predictions(path: str) -> list[dict[str, str]]:
    """Read a ``--predictions`` JSONL file (``id``, ``answer``, ``completion``, optional ``benchmark``), checking every
    line before any scoring starts."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--predictions: {path} does not exist")
    items = [
        {
            "id": str(obj["id"]),
            "answer": str(obj["answer"]),
            "completion": str(obj["completion"]),
            "benchmark": str(obj.get("benchmark") or "predictions"),
        }
        for obj in read_jsonl(path, ("id", "answer", "completion"), label="--predictions")
    ]
    if not items:
        raise ValueError(f"--predictions {path} holds no predictions")
    return items
