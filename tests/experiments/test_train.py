"""`lgrpo train` on a very small config: config errors, the run directory, kill and resume."""

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lgrpo.experiments import run_folder as rf
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
        ("rl.beta=nan", "rl.beta"),
        ("rl.learning_rate=.nan", "rl.learning_rate"),
        ("rl.warmup_steps=-1", "rl.warmup_steps"),
        ("rl.max_grad_norm=-1", "rl.max_grad_norm"),
        ("data.n_terms=2", "data.train_size"),  # 4000 + 200 problems, only 100 distinct one-digit pairs
        ("sft.lr_scheduler_type=linear", "sft.lr_scheduler_type"),
    ],
)
def test_bad_overrides_name_the_key(override, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize(("steps", "warmup"), [(250, 20), (7, 0), (5, 5), (30, 3)])
def test_warm_start_learning_rate(steps, warmup):
    """Linear warmup as before (1-based steps); after it, "cosine" follows transformers' cosine schedule with
    warmup at the 0-based step (a full rate after the warmup, 0 one step after the last), "constant" stays."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    lr = 3e-3
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = get_cosine_schedule_with_warmup(opt, warmup, steps)
    want = []
    for _ in range(steps):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    for kind in ("cosine", "constant"):
        s = load_config(
            None, [f"sft.steps={steps}", f"sft.warmup_steps={warmup}", f"sft.lr_scheduler_type={kind}"]
        ).sft
        got = [train_mod.sft_learning_rate(s, step) for step in range(1, steps + 1)]
        assert got[:warmup] == pytest.approx([lr * k / warmup for k in range(1, warmup + 1)])
        after = want[warmup:] if kind == "cosine" else [lr] * (steps - warmup)
        assert got[warmup:] == pytest.approx(after, rel=1e-12, abs=1e-15)
    if steps - warmup > 1:
        assert got[warmup] == lr and 0 < want[-1] < lr / 2  # the comparison has teeth


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


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("rl.lr_scheduler_type=cosinus", "rl.lr_scheduler_type"),
        ("rl.optim=adam", "rl.optim"),
        pytest.param(
            "rl.use_vllm=true",
            "rl.use_vllm",
            marks=pytest.mark.skipif(
                __import__("importlib").util.find_spec("vllm") is not None, reason="vllm is installed"
            ),
        ),
    ],
)
def test_trl_side_errors_name_the_key_before_any_work(tmp_path, monkeypatch, override, key):
    """Values only TRL/transformers know (scheduler, optimizer, vLLM) fail naming the key, before the run
    directory is written or a model is built."""

    def boom(*a, **k):
        raise AssertionError("a model was built")

    monkeypatch.setattr(train_mod, "build_model", boom)
    parser = __import__("argparse").ArgumentParser()
    train_mod.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "r"), override])
    with pytest.raises(SystemExit, match=key.replace(".", r"\.")):
        train_mod.run(args)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("rl.trl.epsilon_hi=0.3", r"rl\.trl\.epsilon_hi.*no field 'epsilon_hi'"),
        ("rl.trl.learning_rate=1e-5", r"rl\.trl\.learning_rate.*from rl\.learning_rate"),
        (
            "rl.trl.per_device_train_batch_size=2",
            r"rl\.trl\.per_device_train_batch_size.*rl\.micro_batch_size",
        ),
        ("rl.trl.output_dir=x", r"rl\.trl\.output_dir.*--out"),
        ("rl.trl=3", r"rl\.trl.*expected a mapping"),
        (
            "rl.trl.importance_sampling_level=sequence",
            r"rl\.trl.*importance_sampling_level='sequence' \(lgrpo does",
        ),
    ],
)
def test_trl_passthrough_refuses_unknown_and_lgrpo_owned_keys_before_any_work(
    tmp_path, monkeypatch, override, match
):
    monkeypatch.setattr(train_mod, "build_model", lambda *a: (_ for _ in ()).throw(AssertionError("built")))
    parser = argparse.ArgumentParser()
    train_mod.add_arguments(parser)
    with pytest.raises(SystemExit, match=match):
        train_mod.run(parser.parse_args(["--out", str(tmp_path / "r"), override]))
    assert not (tmp_path / "r").exists()


def test_trl_passthrough_reaches_the_trainer_config(tmp_path, monkeypatch):
    """rl.trl keys from a YAML file and from the command line add up and reach LambdaGRPOConfig; the defaults lgrpo
    chose (report_to: none) give way to them."""
    import transformers.integrations as integrations

    monkeypatch.setattr(integrations, "get_available_reporting_integrations", lambda: ["tensorboard"])
    path = tmp_path / "c.yaml"
    path.write_text("rl:\n  trl:\n    epsilon_high: 0.28\n")
    cfg = load_config(path, ["rl.trl.mask_truncated_completions=true", "rl.trl.report_to=[tensorboard]"])
    assert cfg.rl.trl == {
        "epsilon_high": 0.28,
        "mask_truncated_completions": True,
        "report_to": ["tensorboard"],
    }
    args = train_mod.build_grpo_config(cfg, tmp_path / "run")
    assert (args.epsilon_high, args.mask_truncated_completions, args.report_to) == (
        0.28,
        True,
        ["tensorboard"],
    )
    assert train_mod.build_grpo_config(load_config(), tmp_path / "run").report_to == []  # "none": no logger
    dumped = tmp_path / "saved.yaml"
    from lgrpo.experiments.config import dump_config

    dump_config(cfg, dumped)
    assert load_config(dumped).rl.trl == cfg.rl.trl  # a resumed run gets the same passthrough


def test_bad_lora_target_fails_before_the_warm_start(tmp_path, monkeypatch, tiny):
    monkeypatch.setattr(
        train_mod, "sft", lambda *a, **k: (_ for _ in ()).throw(AssertionError("warm start ran"))
    )
    cfg = load_config(None, [*tiny, "model.lora_r=4", "model.lora_target_modules=q_proj,nosuch"])
    with pytest.raises(ValueError, match=r"model\.lora_target_modules.*nosuch"):
        train_mod.train(cfg, tmp_path / "r")
    assert not (tmp_path / "r" / rf.CKPT_DIR).exists()  # a corrected rerun needs no --resume
    ok = load_config(None, [*tiny, "model.lora_r=4", "model.lora_target_modules=q_proj, v_proj"])
    train_mod.check_lora_targets(ok, train_mod.build_model(ok)[0])
    assert set(train_mod.lora_config(ok).target_modules) == {"q_proj", "v_proj"}


def test_resume_with_a_broken_saved_config_is_a_clear_error(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("rl:\n  bogus: 1\n")
    parser = __import__("argparse").ArgumentParser()
    train_mod.add_arguments(parser)
    with pytest.raises(SystemExit, match=r"--resume.*config\.yaml.*rl\.bogus"):
        train_mod.run(parser.parse_args(["--out", str(tmp_path / "r"), "--resume"]))


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
    assert (out / "sft" / rf.SFT_DONE).exists()
    with pytest.raises(ValueError, match="--resume"):
        train_mod.train(cfg, out)  # the directory holds a run


def test_kl_without_warm_start_uses_the_initial_model_as_reference(tmp_path, tiny):
    """β > 0 with a tiny model built from the config and no warm start: TRL needs a path to load the reference
    model from; the run saves the initial policy and the KL term is measured against it."""
    cfg = load_config(None, [*tiny, "sft.steps=0", "rl.beta=0.04", "rl.max_steps=1", "eval.every=0"])
    out = tmp_path / "run"
    train_mod.train(cfg, out)
    lines = _lines(out / "metrics.jsonl")
    assert "kl" in lines[1] and lines[1]["kl"] == pytest.approx(
        0.0, abs=1e-6
    )  # policy == reference at step 1
    assert (out / rf.INIT_DIR / "config.json").exists()


def test_rerun_over_an_unfinished_run_of_another_config_redoes_its_warm_start(tmp_path, tiny):
    """An --out left by a run stopped before its first checkpoint (no checkpoints/, rollout log off) may be reused
    without --resume; with another config its warm start and step-0 accuracy are not taken over."""
    out = tmp_path / "run"
    old = load_config(None, [*tiny, "sft.learning_rate=0.01"])
    out.mkdir()
    from lgrpo.experiments.config import dump_config

    dump_config(old, out / rf.CONFIG)
    (out / rf.SFT_DIR).mkdir()
    (out / rf.SFT_DIR / rf.SFT_DONE).write_text("{}")  # a warm start of the old config
    (out / rf.METRICS).write_text(json.dumps({"step": 0, "eval/accuracy": 0.123}) + "\n")
    cfg = load_config(None, [*tiny, "rl.max_steps=1", "eval.every=0", "rl.rollout_log=false"])
    summary = train_mod.train(cfg, out)
    assert summary["accuracy_before"] != 0.123
    assert json.loads((out / rf.SFT_DIR / rf.SFT_DONE).read_text())["steps"] == cfg.sft.steps


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
    rollouts = _lines(
        out / rf.ROLLOUTS
    )  # what the killed run logged past its checkpoint was cut, then regrown
    assert [r["step"] for r in rollouts] == [s for s in range(1, steps + 1) for _ in range(8)]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["rl"]["max_steps"] == steps


def test_resume_from_an_earlier_checkpoint_matches_an_uninterrupted_run(tmp_path, tiny):
    """Run A goes 6 steps uninterrupted. Run B is A's folder as a run killed mid-write leaves it (no summary, a cut
    last line in both logs), resumed with --resume-from from checkpoint-2 although checkpoints 4 and 6 exist: its
    logs are cut back to step 2 and then regrown, and must equal A's line for line (wall-clock times aside)."""
    # β > 0 and enough warm start that rewards vary: every step moves the weights, so a resume that lost the
    # optimizer, scheduler or RNG state would log other values.
    cfg = load_config(
        None,
        [*tiny, "data.n_terms=2", "data.train_size=80", "sft.steps=150", "rl.beta=0.04", "rl.temperature=1.0", "rl.max_steps=6", "rl.save_steps=2",
         "rl.save_total_limit=3", "eval.every=2", "rl.rollout_log=true"],
    )  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    train_mod.train(cfg, a)
    shutil.copytree(a, b, symlinks=True)
    (b / rf.SUMMARY).unlink()
    for name in (rf.METRICS, rf.ROLLOUTS):
        with (b / name).open("a") as f:
            f.write('{"step": 7, "gro')  # killed mid-write
    parser = argparse.ArgumentParser()
    train_mod.add_arguments(parser)
    args = parser.parse_args(["--out", str(b), "--resume-from", str(b / rf.CKPT_DIR / "checkpoint-2")])
    with pytest.warns(UserWarning, match="cut mid-write"):
        assert train_mod.run(args) == 0
    assert json.loads((b / rf.SUMMARY).read_text())["resumed_from_step"] == 2

    def timeless(lines):
        return [{k: v for k, v in line.items() if k != "step_time"} for line in lines]

    got, want = _lines(b / rf.METRICS), _lines(a / rf.METRICS)
    assert [line["step"] for line in got] == list(range(7))
    assert timeless(got) == timeless(want)
    assert {line["reward"] for line in want if "reward" in line} != {0.0}  # the comparison has teeth
    assert want[-1]["kl"] > 0
    rollouts = _lines(b / rf.ROLLOUTS)
    assert [r["step"] for r in rollouts] == [
        s for s in range(1, 7) for _ in range(8)
    ]  # trimmed, regrown once
    assert rollouts == _lines(a / rf.ROLLOUTS)


def test_resume_with_no_complete_checkpoint_says_it_starts_fresh(tmp_path, tiny, capsys):
    out = tmp_path / "r"
    cut = out / rf.CKPT_DIR / "checkpoint-2"
    cut.mkdir(parents=True)  # killed while saving its first checkpoint: no trainer_state.json
    (cut / "model.safetensors").write_bytes(b"")
    parser = argparse.ArgumentParser()
    train_mod.add_arguments(parser)
    args = parser.parse_args(["--out", str(out), "--resume", *tiny, "rl.max_steps=1", "eval.every=0"])
    assert train_mod.run(args) == 0
    assert "holds no complete checkpoint; starting fresh" in capsys.readouterr().err
    summary = json.loads((out / rf.SUMMARY).read_text())
    assert summary["resumed_from_step"] is None
    assert [line["step"] for line in _lines(out / rf.METRICS)] == [0, 1]


def test_resume_from_is_checked_before_any_work_and_leaves_overrides_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "build_model", lambda *a: (_ for _ in ()).throw(AssertionError("built")))
    parser = argparse.ArgumentParser()
    train_mod.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "r"), "--resume-from", "ck", "rl.beta=0.04"])
    assert (args.resume_from, args.overrides) == ("ck", ["rl.beta=0.04"])  # the flag takes one value only
    cut = tmp_path / "r" / rf.CKPT_DIR / "checkpoint-4"
    cut.mkdir(parents=True)
    for path, match in (
        (tmp_path / "nope", r"--resume-from: .*nope is not a directory"),
        (tmp_path / "r", r"--resume-from: .*r: not a checkpoint directory"),
        (cut, r"--resume-from: .*checkpoint-4 is not a complete checkpoint"),
    ):
        args = parser.parse_args(["--out", str(tmp_path / "r"), "--resume-from", str(path)])
        with pytest.raises(SystemExit, match=match):
            train_mod.run(args)
    assert not (tmp_path / "r" / rf.CONFIG).exists()


def test_two_processes_write_one_consistent_run_folder(tmp_path, tiny):
    """`lgrpo train` under torchrun, 2 CPU processes (gloo): one config, one line per step, one summary, one warm
    start, the rollouts of the whole step once; held-out accuracy sharded over the ranks (7 prompts: one rank pads)
    equals a 1-process evaluation of the same weights. Tree packing (on by default) is used on every model call,
    with β > 0, in a full fine-tune and with LoRA (a second run in the same launch): the gradients DDP averaged are
    equal on both ranks and not zero."""
    out, lora_out, grads = tmp_path / "run", tmp_path / "lora", tmp_path / "grads"
    grads.mkdir()
    packing = ["rl.tree_packing_always=true", "rl.beta=0.04", "rl.trl.entropy_coef=0.05"]
    overrides = [*tiny, "data.eval_size=7", "rl.max_steps=2", "rl.save_steps=1", "eval.every=1", *packing]
    lora = [*tiny, "rl.max_steps=2", "eval.every=0", "rl.save_steps=2", "model.lora_r=4", *packing]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    port = 29500 + (os.getpid() + 500) % 1000
    runs = [["--out", str(out), *overrides], ["--out", str(lora_out), *lora]]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(Path(__file__).with_name("train_dist_worker.py")), str(grads), json.dumps(runs)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count('"accuracy_after"') == 2  # only the main process reports, once per run

    import torch

    for run, folder in enumerate((out, lora_out)):
        lines = [line for line in _lines(folder / rf.METRICS) if "loss" in line]
        assert len(lines) == 2 and all(line["packing/packed_fraction"] == 1.0 for line in lines)
        assert all(line["kl"] > 0 for line in lines[1:])  # β > 0: the policy has moved from the reference
        for step in (1, 2):
            a, b = (torch.load(grads / f"run{run}-rank{r}-step{step}.pt") for r in range(2))
            assert a.keys() == b.keys() and len(a) > 0
            assert all(("lora_" in name) == bool(run) for name in a)  # LoRA: only the adapter trains
            for name in a:
                torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
            assert sum(float(g.abs().sum()) for g in a.values()) > 0

    cfg = load_config(None, overrides)
    assert to_dict(load_config(out / rf.CONFIG)) == to_dict(cfg)
    summary = json.loads((out / rf.SUMMARY).read_text())
    assert summary["processes"] == 2
    lines = _lines(out / rf.METRICS)
    assert [line["step"] for line in lines] == [0, 1, 2]
    assert [line["eval/accuracy"] for line in (lines[0], lines[-1])] == [
        summary["accuracy_before"],
        summary["accuracy_after"],
    ]
    rollouts = _lines(out / rf.ROLLOUTS)  # the step's 2 prompts × 4 completions, gathered from both ranks
    assert [r["step"] for r in rollouts] == [1] * 8 + [2] * 8
    assert sorted({r["group"] for r in rollouts}) == [0, 1]
    assert not list(out.glob("*.tmp")) and (out / rf.SFT_DIR / rf.SFT_DONE).exists()
    for step in (1, 2):
        ckpt = out / rf.CKPT_DIR / f"checkpoint-{step}"
        assert (ckpt / "trainer_state.json").exists()
        assert {p.name for p in ckpt.glob("rng_state*")} == {"rng_state_0.pth", "rng_state_1.pth"}

    # the sharded, gathered accuracy against one process over all 7 prompts, before RL and after the last step
    for weights, step in ((out / rf.SFT_DIR, 0), (out / rf.CKPT_DIR / "checkpoint-2", 2)):
        model, tok = train_mod.load_sft(weights, cfg)
        task = train_mod.build_task(cfg)
        assert len(task.held_out) == 7
        assert train_mod.evaluate(model, tok, task, cfg) == lines[step]["eval/accuracy"]


@pytest.mark.parametrize(("n", "world"), [(7, 2), (8, 2), (5, 3), (2, 4), (1, 1)])
def test_eval_shards_cover_every_prompt_once_with_equal_calls(n, world):
    shards = [train_mod.eval_shard(n, r, world) for r in range(world)]
    assert sorted(set().union(*shards)) == list(range(n))  # every prompt
    assert {len(s) for s in shards} == {-(-n // world)}  # the same number of generations on every process


def test_stop_after_boxed_reaches_the_engine(tmp_path):
    # the cut and the stopping criterion themselves run in tests/engines/test_stop_after_boxed.py
    cfg = load_config(None, ["rl.stop_after_boxed=true"])
    assert train_mod.build_grpo_config(cfg, tmp_path).stop_after_boxed is True
    assert train_mod.build_grpo_config(load_config(), tmp_path).stop_after_boxed is False


def test_final_model_lora_adapter_and_merged_copy(tmp_path, tiny):
    import torch

    from lgrpo.models import load_model

    out = tmp_path / "run"
    cfg = load_config(
        None, [*tiny, "rl.max_steps=2", "model.lora_r=4", "model.save_merged=true", "eval.every=0"]
    )
    train_mod.train(cfg, out)
    final = out / "final"
    adapter = json.loads((final / "adapter_config.json").read_text())
    # the adapter's base is the warm start, named by absolute path so the folder loads from anywhere
    assert Path(adapter["base_model_name_or_path"]) == (out / "sft").resolve()
    assert (final / "merged" / "config.json").exists() and not (
        final / "merged" / "adapter_config.json"
    ).exists()
    # load_model applies an adapter folder on its base: give the adapter non-zero weights (a two-step run with
    # reward 0 leaves LoRA's B at zero) and compare with PEFT applying it unmerged
    from peft import PeftModel
    from safetensors.torch import load_file, save_file

    weights = load_file(final / "adapter_model.safetensors")
    torch.manual_seed(0)
    save_file({k: torch.randn_like(v) * 0.1 for k, v in weights.items()}, final / "adapter_model.safetensors")
    from_adapter, tok = load_model(str(final))
    base = load_model(str(out / "sft"))[0]
    ids = tok(["1+2=?\n"], return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        a, b = from_adapter(ids).logits, base(ids).logits
        peft = PeftModel.from_pretrained(load_model(str(out / "sft"))[0], str(final))(ids).logits
    assert torch.allclose(a, peft, atol=1e-4)
    assert not torch.allclose(a, b, atol=1e-3)


def test_flags_come_from_the_config_fields():
    """--max-steps, --weighting and --seed set their config keys, with the field's type and choices."""
    parser = argparse.ArgumentParser()
    train_mod.add_arguments(parser)
    args = parser.parse_args(["--max-steps", "7", "--weighting", "uniform", "--seed", "3", "rl.beta=0.04"])
    cfg = train_mod.config_from_args(args)
    assert (cfg.rl.max_steps, cfg.rl.weighting, cfg.seed, cfg.rl.beta) == (7, "uniform", 3, 0.04)
    assert train_mod.config_from_args(parser.parse_args([])) == TrainConfig()
    with pytest.raises(SystemExit):
        parser.parse_args(["--weighting", "pareto"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--max-steps", "x"])


def test_train_a_reasoning_gym_task(tmp_path, tiny):
    """`lgrpo train data.task=reasoning_gym:<name>`: the dataset's scorer is the reward, and the tiny model's char
    tokenizer (built over the task's text) is saved with the run and reloads to the same ids."""
    from lgrpo.cli import main
    from lgrpo.models import load_tokenizer
    from lgrpo.tasks import build_task

    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--max-steps", "2", *tiny, "data.task=reasoning_gym:basic_arithmetic"]
    assert main([*argv, "data.train_size=16", "data.eval_size=4", "eval.every=0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "reasoning_gym:basic_arithmetic" and summary["eval_size"] == 4
    lines = _lines(out / "metrics.jsonl")
    assert "rewards/reasoning_gym_basic_arithmetic/mean" in lines[1] and "reward/no_answer" in lines[1]
    rollouts = _lines(out / "rollouts.jsonl")
    cfg = load_config(out / "config.yaml")
    task = build_task(cfg)
    assert {r["prompt"] for r in rollouts} <= {r["problem"] for r in task.train}
    saved = load_tokenizer(str(out / "checkpoints" / "checkpoint-2"))
    text = "".join(task.texts())
    _, tok = train_mod.build_model(cfg, task)
    assert saved.get_vocab() == tok.get_vocab() and saved(text)["input_ids"] == tok(text)["input_ids"]
    assert tok.unk_token_id not in tok(text)["input_ids"]
    # `lgrpo eval` on the run's own held-out problems (its last checkpoint, the dataset's scorer) agrees with training
    argv = ["eval", "--model", str(out), "--benchmarks", "held_out", "--out", str(tmp_path / "eval")]
    assert (
        main(
            [
                *argv,
                "--max-new-tokens",
                str(cfg.eval.max_new_tokens),
                "--batch-size",
                str(cfg.eval.batch_size),
            ]
        )
        == 0
    )
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["benchmarks"]["held_out"]["accuracy"] == summary["accuracy_after"]
    assert results["benchmarks"]["held_out"]["n"] == 4


def test_final_model_full_fine_tuning(tmp_path, tiny):
    out = tmp_path / "run"
    train_mod.train(load_config(None, [*tiny, "rl.max_steps=1", "eval.every=0"]), out)
    assert (out / "final" / "config.json").exists() and not (out / "final" / "adapter_config.json").exists()


def test_unscorable_golds_train_with_nan_rewards(tmp_path, tiny, capsys):
    """A file task whose golds are half prose: those rows' rewards are NaN (left out of the group statistics, their
    completions still in the rollout log and the process sets), the share is logged per step as
    `reward/unscorable`, and the golds are reported when the task loads."""
    rows = [{"problem": f"{i}+{i}=?", "answer": "see the figure" if i % 2 else str(2 * i)} for i in range(24)]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(
        None, [*tiny, "data.task=file", f"data.path={data}", "data.eval_size=4", "rl.max_steps=3"]
    )
    cfg.eval.every = 0
    train_mod.train(cfg, tmp_path / "run")
    err = capsys.readouterr().err
    assert "cannot be scored" in err
    assert "warm start skipped: task 'file' has no worked solutions (sft.steps=" in err  # plain golds: none
    lines = _lines(tmp_path / "run" / "metrics.jsonl")[1:]
    shares = [line["reward/unscorable"] for line in lines]
    assert all(s in (0.0, 0.5, 1.0) for s in shares)  # 2 prompts × 4 completions: whole groups are unscorable
    assert all(math.isfinite(line["loss"]) for line in lines)
    rollouts = _lines(tmp_path / "run" / "rollouts.jsonl")
    prose = {r["problem"] for r in rows if r["answer"] == "see the figure"}
    assert all((r["reward"] is None) == (r["prompt"] in prose) for r in rollouts)
    assert sum(r["reward"] is None for r in rollouts) / len(rollouts) == pytest.approx(
        sum(shares) / len(shares)
    )


def test_resume_on_a_new_folder_starts_quietly(tmp_path, capsys):
    folder = rf.RunFolder(tmp_path / "new")
    assert folder.resume_point(resume=True) is None
    assert capsys.readouterr().err == ""


def test_overrides_may_follow_options(tmp_path, monkeypatch):
    from lgrpo.cli import main

    seen = []
    monkeypatch.setattr(train_mod, "run", lambda args: seen.append(args) or 0)
    assert main(["train", "rl.beta=0.04", "--out", str(tmp_path), "sft.steps=0", "--resume"]) == 0
    assert seen[0].out == str(tmp_path) and seen[0].resume
    assert seen[0].overrides == ["rl.beta=0.04", "sft.steps=0"]


def test_missing_logging_backend_is_refused_before_any_work(tmp_path, monkeypatch):
    import transformers.integrations as integrations

    monkeypatch.setattr(integrations, "get_available_reporting_integrations", lambda: ["tensorboard"])
    cfg = load_config(None, ["rl.trl.report_to=[wandb]"])
    with pytest.raises(ValueError, match=r"rl.trl.report_to.*wandb is not installed"):
        train_mod.build_grpo_config(cfg, tmp_path)
