import argparse
import json
import time

import pytest

from lgrpo.experiments import compare as compare_mod
from lgrpo.experiments.config import load_config


def test_compare_one_seed(tmp_path, monkeypatch, tiny):
    cfg = load_config(None, [*tiny, "rl.max_steps=2", "eval.every=0"])
    from lgrpo.experiments import train as train_mod

    sft_calls = []
    real_sft = train_mod.sft

    def slow_sft(
        *a, **k
    ):  # a warm start that takes at least 1.5 s: its time must not land in an arm's RL time
        sft_calls.append(1)
        time.sleep(1.5)
        return real_sft(*a, **k)

    monkeypatch.setattr(train_mod, "sft", slow_sft)
    result = compare_mod.compare(cfg, tmp_path, n_seeds=1)
    assert len(sft_calls) == 1  # the warm start is shared by both arms of a seed
    first, second = (
        json.loads((tmp_path / f"{a}-seed0" / "summary.json").read_text()) for a in ("grpo", "lambda")
    )
    assert first["seconds_warm_start"] >= 1.5 and second["seconds_warm_start"] == 0.0
    for summary in (first, second):
        assert 0 < summary["seconds_rl"] <= summary["seconds"] - summary["seconds_warm_start"]
    assert result["warm_start_seconds"] == {"0": first["seconds_warm_start"]}
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert data == json.loads(json.dumps(result))
    assert set(data["arms"]) == {"grpo", "lambda"}
    for arm, weighting in (("grpo", "uniform"), ("lambda", "lambda")):
        entry = data["arms"][arm]
        assert entry["weighting"] == weighting and entry["runs"] == 1
        summary = json.loads((tmp_path / f"{arm}-seed0" / "summary.json").read_text())
        assert summary["weighting"] == weighting
        assert entry["accuracy_after"]["per_seed"] == {"0": summary["accuracy_after"]}
        assert entry["accuracy_after"]["mean"] == summary["accuracy_after"]
        assert entry["accuracy_after"]["sem"] is None  # one seed
    # same warm start: both arms start from the same accuracy
    assert data["arms"]["grpo"]["accuracy_before"] == data["arms"]["lambda"]["accuracy_before"]
    png = (tmp_path / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # a second call finds everything done and runs nothing
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-ran")))
    compare_mod.compare(cfg, tmp_path, n_seeds=1)
    # a different config into the same directory is an error before any work, not a silent mix of runs
    other = load_config(None, [*tiny, "rl.max_steps=3", "eval.every=0"])
    with pytest.raises(ValueError, match=r"grpo-seed0.*rl\.max_steps"):
        compare_mod.compare(other, tmp_path, n_seeds=1)


def test_stats():
    s = compare_mod._stats([0.2, 0.4])
    assert abs(s["mean"] - 0.3) < 1e-12 and abs(s["sem"] - 0.1) < 1e-12


def test_printed_spread_is_labelled_and_warm_start_is_apart(monkeypatch, capsys):
    result = {
        "arms": {
            "grpo": {
                "runs": 2,
                "accuracy_before": {"mean": 0.3, "sem": 0.0},
                "accuracy_after": {"mean": 0.7, "sem": 0.02},
                "seconds_rl": {"mean": 80.0, "sem": 1.0},
            },
            "lambda": {
                "runs": 1,
                "accuracy_before": {"mean": 0.3},
                "accuracy_after": {"mean": 0.8, "sem": None},
            },
        },
        "warm_start_seconds": {"0": 90.0, "1": 91.0},
    }
    monkeypatch.setattr(compare_mod, "compare", lambda *a, **k: result)
    args = argparse.Namespace(seeds=2, overrides=[], config=None, out="OUT", max_steps=None)
    assert compare_mod.run(args) == 0
    out = capsys.readouterr().out
    assert "grpo: accuracy 0.300 -> 0.700 ± 0.020 (mean ± s.e.m.) over 2 seed(s); RL 80 s per run" in out
    assert "lambda: accuracy 0.300 -> 0.800 over 1 seed(s)\n" in out
    assert "warm start (shared by both arms): seed 0 90 s, seed 1 91 s" in out
