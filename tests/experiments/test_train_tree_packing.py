"""`lgrpo train rl.tree_packing=true`: the same first step as the padded run (same seed, same samples)."""

import json

import pytest

from lgrpo.experiments import train as train_mod
from lgrpo.experiments.config import load_config


def test_first_step_same_with_and_without_tree_packing(tmp_path, tiny):
    first = {}
    for packed in (False, True):
        overrides = [*tiny, "rl.max_steps=1", "eval.every=0", "rl.beta=0.04", "rl.loss_type=grpo"]
        overrides += [f"rl.tree_packing={str(packed).lower()}", "rl.tree_packing_always=true"]
        out = tmp_path / str(packed)
        train_mod.train(load_config(None, overrides), out)
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        first[packed] = next(x for x in lines if "loss" in x)
    assert first[True]["loss"] == pytest.approx(first[False]["loss"], abs=2e-4)
    assert first[True]["entropy"] == pytest.approx(first[False]["entropy"], rel=1e-5)
    assert first[True]["reward"] == first[False]["reward"]  # the same samples
    assert 0 < first[True]["packing/unique_token_fraction"] < 1
    assert first[True]["packing/packed_fraction"] == 1.0
    assert "packing/unique_token_fraction" not in first[False]
