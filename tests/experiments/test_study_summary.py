"""benchmarks/real_model.py's summary of the study: per-arm peak, step of peak, final accuracy, paired differences
and the rollout statistics, on run folders whose figures are worked out by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _study_module():
    spec = importlib.util.spec_from_file_location("real_model", ROOT / "benchmarks" / "real_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# held-out accuracy at steps 0, 10, 20 per run (the last one is the final accuracy)
CURVES = {
    "grpo-seed0": {0: 0.5, 10: 0.6, 20: 0.6},  # equal peaks: the earlier step counts (10)
    "grpo-seed1": {0: 0.5, 10: 0.55, 20: 0.7},
    "lambda-seed0": {0: 0.5, 10: 0.7, 20: 0.65},
    "lambda-seed1": {0: 0.5, 10: 0.6, 20: 0.6},
}
# one logged step, two groups: [1, 2] twice and [3] (|λ| 2, 2 | 2, 2 | 1); [4] and [5] (flat)
ROLLOUTS = [([1, 2], 0), ([1, 2], 0), ([3], 0), ([4], 1), ([5], 1)]


def _write_run(path: Path, curve: dict[int, float]) -> None:
    path.mkdir(parents=True)
    lines = [{"step": 0, "eval/accuracy": curve[0]}]
    lines += [{"step": s, "reward": 0.5, "step_time": 2.0 * s} for s in (1, 2, 3)]
    lines += [{"step": s, "eval/accuracy": a} for s, a in curve.items() if s]
    (path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (path / "summary.json").write_text(
        json.dumps(
            {"accuracy_before": curve[0], "accuracy_after": curve[20], "eval_size": 200, "seconds": 60.0}
        )
    )
    rows = [{"step": 1, "group": g, "completion_ids": ids, "reward": 1.0} for ids, g in ROLLOUTS]
    (path / "rollouts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))


def test_summary_of_two_seeds_per_arm(tmp_path):
    for name, curve in CURVES.items():
        _write_run(tmp_path / name, curve)
    result = _study_module().summarise(tmp_path)

    runs = result["runs"]
    assert (runs["grpo-seed0"]["peak_accuracy"], runs["grpo-seed0"]["peak_step"]) == (0.6, 10)
    assert (runs["grpo-seed1"]["peak_accuracy"], runs["grpo-seed1"]["peak_step"]) == (0.7, 20)
    assert runs["lambda-seed0"]["final_accuracy"] == 0.65
    assert runs["grpo-seed0"]["seconds_per_step_median"] == 4.0  # of 2, 4, 6 s
    assert runs["grpo-seed0"]["distinct_completions_per_group"] == 2.0  # {[1,2], [3]} and {[4], [5]}
    assert runs["grpo-seed0"]["shared_token_fraction_first_third"] == pytest.approx(4 / 7)

    grpo = result["arms"]["grpo"]
    # peaks 0.6 and 0.7: mean 0.65, s.e. = s.d. / √2 = 0.0707 / 1.414 = 0.05
    assert grpo["peak_accuracy"]["mean"] == pytest.approx(0.65)
    assert grpo["peak_accuracy"]["sem"] == pytest.approx(0.05)
    assert grpo["peak_step"]["mean"] == pytest.approx(15.0)

    paired = result["paired"]
    # λ − GRPO per seed: peak +0.1, −0.1; step of peak 0, −10; final +0.05, −0.1
    assert paired["peak_accuracy"]["per_seed"] == pytest.approx([0.1, -0.1])
    assert paired["peak_accuracy"]["lambda_minus_grpo"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert paired["peak_accuracy"]["lambda_minus_grpo"]["sem"] == pytest.approx(0.1)
    assert paired["peak_step"]["per_seed"] == pytest.approx([0, -10])
    assert paired["final_accuracy"]["lambda_minus_grpo"]["mean"] == pytest.approx(-0.025)
    assert paired["final_accuracy"]["lambda_minus_grpo"]["sem"] == pytest.approx(0.075)
    table = (tmp_path / "results.md").read_text()
    assert "| grpo | 2 | 0.500 ± 0.000 | 0.650 ± 0.050 | 15.0 ± 5.0 | 0.650 ± 0.050 |" in table


def test_an_unfinished_run_is_left_out_of_the_arms(tmp_path):
    _write_run(tmp_path / "grpo-seed0", CURVES["grpo-seed0"])
    _write_run(tmp_path / "lambda-seed0", CURVES["lambda-seed0"])
    (tmp_path / "lambda-seed0" / "summary.json").unlink()  # still training
    result = _study_module().summarise(tmp_path)
    assert result["runs"]["lambda-seed0"]["finished"] is False
    assert result["arms"]["lambda"]["seeds"] == []
    assert result["paired"]["final_accuracy"]["per_seed"] == []


def test_a_resumed_run_counts_its_later_block_of_a_step(tmp_path):
    """A resumed run re-logs the steps after its checkpoint: the later block of a step counts, as in lgrpo analyze
    (here step 1 first held 2 distinct completions in one group, then 3 with no |λ| > 1 token)."""
    run = tmp_path / "grpo-seed0"
    _write_run(run, CURVES["grpo-seed0"])
    again = [{"step": 1, "group": 0, "completion_ids": [c], "reward": 1.0} for c in (7, 8, 9)]
    with (run / "rollouts.jsonl").open("a") as f:
        # another step between the two blocks of step 1
        f.write("".join(json.dumps({**x, "step": 2}) + "\n" for x in again))
        f.write("".join(json.dumps(x) + "\n" for x in again))
    entry = _study_module().run_entry(run)
    # steps 1 (later block) and 2: one flat group of 3 each
    assert entry["distinct_completions_per_group"] == 3.0
    assert entry["shared_token_fraction_first_third"] == 0.0
