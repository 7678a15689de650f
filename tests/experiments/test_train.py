"""`lgrpo train` on a very small config: config errors, the run directory, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lgrpo.experiments import train as train_mod
from lgrpo.experiments.config import TrainConfig, load_config, to_dict

ROOT = Path(__file__).resolve().parents[2]


def test_default_yaml_is_the_embedded_default():
    assert to_dict(load_config(ROOT / "configs" / "default.yaml")) == to_dict(TrainConfig())


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("rl.bogus=1", "rl.bogus"),
        ("nosuch=1", "nosuch"),
        ("rl.weighting=pareto", "rl.weighting"),
        ("rl.max_steps=abc", "rl.max_steps"),
        ("rl.max_steps=0", "rl.max_steps"),
        ("rl.loss_type=cispo", "rl.loss_type"),
        ("rl.micro_batch_size=5", "rl.micro_batch_size"),
        ("model.hidden_size=30", "model.hidden_size"),
        ("rl=3", "rl"),
        ("rl.beta", "rl.beta"),
    ],
)
def test_bad_overrides_name_the_key(override, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_overrides_and_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rl:\n  beta: 0.04\n  learning_rate: 1e-5\nseed: 3\n")
    cfg = load_config(path, ["rl.num_generations=4", "model.name_or_path=null"])
    assert (cfg.rl.beta, cfg.rl.learning_rate, cfg.seed, cfg.rl.num_generations) == (0.04, 1e-5, 3, 4)
    path.write_text("rl:\n  nope: 1\n")
    with pytest.raises(ValueError, match=r"rl\.nope.*c\.yaml"):
        load_config(path)


def test_cli_errors_before_building_a_model(tmp_path, monkeypatch, capsys):
    def boom(*a, **k):
        raise AssertionError("a model was built")

    monkeypatch.setattr(train_mod, "build_model", boom)
    parser = __import__("argparse").ArgumentParser()
    train_mod.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "r"), "rl.weighting=lamda"])
    with pytest.raises(SystemExit, match=r"rl\.weighting"):
        train_mod.run(args)
    assert not (tmp_path / "r").exists()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_writes_the_run_directory(tmp_path, tiny):
    cfg = load_config(None, [*tiny, "rl.max_steps=3", "eval.every=2", "rl.rollout_log=true"])
    out = tmp_path / "run"
    summary = train_mod.train(cfg, out)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == summary
    for key in ("accuracy_before", "accuracy_after", "seconds", "weighting", "lambda_power", "seed"):
        assert key in summary
    assert summary["weighting"] == "lambda" and summary["seed"] == 0
    lines = _lines(out / "metrics.jsonl")
    assert [line["step"] for line in lines] == [0, 1, 2, 3]
    assert all(isinstance(line["step"], int) for line in lines)
    assert [line["step"] for line in lines if "eval/accuracy" in line] == [0, 2, 3]
    assert lines[0]["eval/accuracy"] == summary["accuracy_before"]
    assert lines[-1]["eval/accuracy"] == summary["accuracy_after"]
    for line in lines[1:]:
        for key in (
            "reward",
            "loss",
            "prm/flat_fraction",
            "prm/path_depth_mean",
            "prm/process_set_size_mean",
        ):
            assert key in line, key
    assert to_dict(load_config(out / "config.yaml")) == to_dict(cfg)
    rollouts = _lines(out / "rollouts.jsonl")
    assert len(rollouts) == 3 * 8 and {r["step"] for r in rollouts} == {1, 2, 3}
    assert (out / "sft" / train_mod.SFT_DONE).exists()
    with pytest.raises(ValueError, match="--resume"):
        train_mod.train(cfg, out)  # the directory holds a run


def test_kill_and_resume(tmp_path, tiny):
    out = tmp_path / "run"
    steps = 40
    cmd = [sys.executable, "-m", "lgrpo.cli", "train", "--out", str(out), "--max-steps", str(steps)]
    cmd += [*tiny, "rl.save_steps=2", "eval.every=10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 90
        while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.time() < deadline, "no checkpoint within 90 s"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "summary.json").exists()

    parser = __import__("argparse").ArgumentParser()
    train_mod.add_arguments(parser)
    assert train_mod.run(parser.parse_args(["--out", str(out), "--resume"])) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_step"] is not None and 2 <= summary["resumed_from_step"] < steps
    lines = _lines(out / "metrics.jsonl")
    assert [line["step"] for line in lines] == list(range(steps + 1))  # every step exactly once
    evals = [line["step"] for line in lines if "eval/accuracy" in line]
    assert evals == [0, 10, 20, 30, 40]
    assert lines[-1]["eval/accuracy"] == summary["accuracy_after"]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["rl"]["max_steps"] == steps


def test_stop_after_boxed_closes_stopped_rows_with_eos():
    import torch

    from lgrpo.models import char_tokenizer

    tok = char_tokenizer()
    pad, eos = tok.pad_token_id, tok.eos_token_id
    seen = {}

    class Fake:
        def generate(self, input_ids=None, stopping_criteria=None, **kwargs):
            seen["criteria"] = stopping_criteria
            return torch.tensor([[pad, 5, 6, 7, pad, pad], [5, 5, 6, 7, eos, pad]])

    model = Fake()
    train_mod.stop_after_boxed(model, tok)
    out = model.generate(input_ids=torch.tensor([[pad, 5, 6], [5, 5, 6]]))
    # prompt padding is kept; completion padding becomes EOS so TRL's mask ends right after the stop
    assert out.tolist() == [[pad, 5, 6, 7, eos, eos], [5, 5, 6, 7, eos, eos]]
    assert type(seen["criteria"][-1]).__name__ == "BoxedStoppingCriteria"
