import json

import pytest

from lgrpo.experiments import compare as compare_mod
from lgrpo.experiments.config import load_config


def test_compare_one_seed(tmp_path, monkeypatch, tiny):
    cfg = load_config(None, [*tiny, "rl.max_steps=2", "eval.every=0"])
    from lgrpo.experiments import train as train_mod

    sft_calls = []
    real_sft = train_mod.sft
    monkeypatch.setattr(train_mod, "sft", lambda *a, **k: (sft_calls.append(1), real_sft(*a, **k))[1])
    result = compare_mod.compare(cfg, tmp_path, n_seeds=1)
    assert len(sft_calls) == 1  # the warm start is shared by both arms of a seed
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
