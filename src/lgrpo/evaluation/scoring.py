"""Scoring generations and writing ``results.json``, ``results.md`` and ``predictions.jsonl``.

Every answer is checked by :func:`lgrpo.tasks.math_answers.verify`, the same function as the training reward, so
evaluation and training can never disagree on what counts as correct.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from typing import Any

from lgrpo.evaluation.registry import BENCHMARKS
from lgrpo.jsonl import read_jsonl
from lgrpo.tasks.math_answers import Verdict, verify


def standard_error(p: float, n: int) -> float | None:
    """sqrt(p(1-p)/(n-1)), the paper's standard error of an accuracy over n (scorable) items; None when n < 2."""
    return math.sqrt(p * (1.0 - p) / (n - 1)) if n >= 2 else None


Check = Callable[[str, str], Verdict]  # (completion, gold answer) -> verdict


class Scorer:
    """Scores items one at a time, appends each to ``predictions.jsonl`` at once, and keeps per-benchmark tallies.

    ``check`` decides each item (default: :func:`lgrpo.tasks.math_answers.verify` with ``timeout``; a training task
    passes its own, see :meth:`lgrpo.tasks.Task.check`). An item whose gold cannot be scored is written with
    ``correct: null`` and left out of its benchmark's accuracy and standard error; it is counted in ``unscorable``.
    Completions without an answer are wrong and counted in ``no_answer``.
    """

    def __init__(self, out_dir: str, timeout: float = 5.0, check: Check | None = None) -> None:
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir = out_dir
        self.check: Check = check or (lambda completion, gold: verify(completion, gold, timeout=timeout))
        self.scores: dict[str, list[float]] = {}
        self.counts = dict.fromkeys(("unscorable", "no_answer", "verify_timeouts", "verify_errors"), 0)
        self._file = open(os.path.join(out_dir, "predictions.jsonl"), "w", encoding="utf-8")  # noqa: SIM115

    def add(
        self, item_id: str, benchmark: str, answer: str, completion: str, verdict: Verdict | None = None
    ) -> Verdict:
        """Score one item (``verdict``: one decided by the caller, e.g. a task's own check) and write its line."""
        verdict = verdict if verdict is not None else self.check(completion, answer)
        tag = verdict.tag or ""
        for key, hit in (
            ("unscorable", verdict.unscorable),
            ("no_answer", tag == "no_answer"),
            ("verify_timeouts", tag == "timeout"),
            ("verify_errors", tag.startswith("error")),
        ):
            self.counts[key] += hit
        scores = self.scores.setdefault(benchmark, [])
        if not verdict.unscorable:
            scores.append(verdict.score)
        record: dict[str, Any] = {
            "id": item_id,
            "benchmark": benchmark,
            "answer": answer,
            "completion": completion,
        }
        record["correct"] = None if verdict.unscorable else bool(verdict.score)
        if verdict.tag is not None:
            record["verify_error" if tag == "timeout" or tag.startswith("error") else "note"] = verdict.tag
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        return verdict

    def close(self) -> None:
        self._file.close()

    def results(self, model: str | None = None) -> dict[str, Any]:
        per_bench = {}
        for name in _ordered(self.scores):
            scores = self.scores[name]
            n = len(scores)  # scorable items only
            p = sum(scores) / n if n else math.nan
            per_bench[name] = {
                "accuracy": p if n else None,
                "n": n,
                "correct": int(sum(scores)),
                "stderr": standard_error(p, n),
            }
        accs = [r["accuracy"] for r in per_bench.values() if r["accuracy"] is not None]
        return {
            "model": model,
            "benchmarks": per_bench,
            # the paper's "avg" column: the unweighted mean over benchmarks
            "average": sum(accs) / len(accs) if accs else None,
            **self.counts,
        }

    def accuracy(self) -> float:
        """Accuracy over all scorable items of all benchmarks (NaN when none is scorable)."""
        scores = [s for bench in self.scores.values() for s in bench]
        return sum(scores) / len(scores) if scores else math.nan

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


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def results_markdown(results: dict[str, Any]) -> str:
    """The table of METHOD.md §10 (accuracy per benchmark and their average), then n and standard errors."""
    benches = results["benchmarks"]
    labels = [BENCHMARKS[n].label if n in BENCHMARKS else n for n in benches]
    model = results.get("model") or "predictions"
    lines = [
        "| model | " + " | ".join(labels) + " | avg |",
        "|---|" + "---|" * (len(labels) + 1),
        f"| {model} | "
        + " | ".join(_fmt(r["accuracy"]) for r in benches.values())
        + f" | {_fmt(results['average'])} |",
        "",
        "| benchmark | n | correct | accuracy | stderr |",
        "|---|---|---|---|---|",
    ]
    for label, r in zip(labels, benches.values()):
        lines.append(f"| {label} | {r['n']} | {r['correct']} | {_fmt(r['accuracy'])} | {_fmt(r['stderr'])} |")
    lines += [
        "",
        "n counts the scorable problems; accuracy and its standard error, sqrt(p(1−p)/(n−1)), are over those. "
        f"Unscorable golds (left out): {results.get('unscorable', 0)}. No answer (scored 0): "
        f"{results.get('no_answer', 0)}. Verification time-outs: {results['verify_timeouts']}, "
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
