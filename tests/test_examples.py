"""The runnable examples/ scripts run, and do what their docstrings say."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("trl")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trl_drop_in_passes_extra_columns_to_the_reward(tmp_path, monkeypatch):
    example = load("trl_drop_in")
    calls = []
    reward = example.copy_reward

    def spy(prompts, completions, target, **kwargs):
        calls.append((list(prompts), list(target)))
        return reward(prompts, completions, target, **kwargs)

    monkeypatch.setattr(example, "copy_reward", spy)
    trainer = example.main(["--out", str(tmp_path), "--steps", "2"])
    assert trainer.state.global_step == 2 and len(calls) == 2
    for prompts, target in calls:  # the dataset's `target` column, aligned with each completion's prompt
        assert len(prompts) == len(target) == 8
        assert prompts == [f"copy: {w}=" for w in target]
    lines = [json.loads(x) for x in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert len(lines) == 16
    for x in lines:
        word = x["prompt"][len("copy: ") : -1]
        assert x["reward"] == pytest.approx(reward([x["prompt"]], [x["completion"]], [word])[0])
