"""Fixtures shared by the experiment tests."""

import pytest

# Seconds-scale `lgrpo train` overrides: a 1-layer model, a few SFT steps, 2 prompts × 4 completions per RL step.
TINY = [
    "model.hidden_size=32",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.intermediate_size=64",
    "data.train_size=200",
    "data.eval_size=8",
    "sft.steps=3",
    "sft.batch_size=16",
    "rl.prompts_per_step=2",
    "rl.num_generations=4",
    "rl.max_completion_length=24",
    "eval.max_new_tokens=24",
    "threads=1",
]


@pytest.fixture
def tiny() -> list[str]:
    """Config overrides (``key=value``) that make ``lgrpo train`` run in seconds."""
    return list(TINY)
