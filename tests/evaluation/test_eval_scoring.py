"""Scoring: standard errors, the results files, and reading --predictions files."""

from __future__ import annotations

import json
import math

import pytest

from lgrpo.evaluation.scoring import Scorer, read_predictions, results_markdown, standard_error


def test_standard_error():
    assert standard_error(0.5, 5) == pytest.approx(math.sqrt(0.25 / 4))
    assert standard_error(0.2, 30) == pytest.approx(math.sqrt(0.2 * 0.8 / 29))
    assert standard_error(1.0, 10) == 0.0
    assert standard_error(1.0, 1) is None


def test_scorer_writes_predictions_and_results(tmp_path):
    scorer = Scorer(str(tmp_path))
    items = [
        ("aime24/0", "aime24", "204", "\\boxed{204}"),
        ("aime24/1", "aime24", "25", "\\boxed{24}"),
        ("math500/0", "math500", "\\frac12", "\\boxed{0.5}"),
        ("mine/0", "mine", "3", "no box"),
        ("aime24/2", "aime24", "see the figure", "\\boxed{the figure see}"),  # a gold that cannot be scored
        ("mine/1", "mine", "2", "\\boxed{}"),
    ]
    for item in items:
        scorer.add(*item)
    # predictions are on disk before close, as items are scored
    lines = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [x["correct"] for x in lines] == [True, False, True, False, None, False]
    assert set(lines[0]) == {"id", "benchmark", "answer", "completion", "correct"}
    scorer.close()
    results = scorer.write_results("m")
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert list(results["benchmarks"]) == ["aime24", "math500", "mine"]  # registry order, then the rest
    assert results["benchmarks"]["aime24"] == {
        "accuracy": 0.5,
        "n": 2,
        "correct": 1,
        "stderr": pytest.approx(0.5),
    }
    assert results["benchmarks"]["math500"]["stderr"] is None  # n = 1
    # the unscorable item is out of AIME24's n, accuracy and stderr (2 items, 1 right: sqrt(.25/1))
    assert results["average"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)  # unweighted, as the paper's avg column
    assert results["benchmarks"]["mine"]["n"] == 2
    assert (results["unscorable"], results["no_answer"]) == (1, 2)
    assert lines[4]["note"].startswith("unscorable") and lines[5]["note"] == "no_answer"
    assert scorer.accuracy() == pytest.approx(2 / 5)
    md = (tmp_path / "results.md").read_text()
    assert md.splitlines()[0] == "| model | AIME24 | MATH-500 | mine | avg |"
    assert "| m | 0.5000 | 1.0000 | 0.0000 | 0.5000 |" in md


def test_results_markdown_matches_the_papers_columns():
    bench = {"accuracy": 0.25, "n": 4, "correct": 1, "stderr": 0.25}
    names = ["aime24", "math500", "amc23", "minerva", "olympiadbench"]
    results = {
        "model": "x",
        "benchmarks": dict.fromkeys(names, bench),
        "average": 0.25,
        "verify_timeouts": 0,
        "verify_errors": 0,
    }
    assert (
        results_markdown(results).splitlines()[0]
        == "| model | AIME24 | MATH-500 | AMC23 | Minerva | OB | avg |"
    )


def test_read_predictions_checks_every_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 1, "answer": "2", "completion": "\\\\boxed{2}"}\n{"id": 2, "answer": "2"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: missing field\(s\) completion"):
        read_predictions(str(path))
    path.write_text('{"id": 1, "answer": "2", "completion": "x", "benchmark": "amc23"}\n')
    assert read_predictions(str(path)) == [
        {"id": "1", "answer": "2", "completion": "x", "benchmark": "amc23"}
    ]
    with pytest.raises(FileNotFoundError):
        read_predictions(str(tmp_path / "nope.jsonl"))
