"""The paper's LLM setups (METHOD.md §10) parse, build the right LambdaGRPOConfig, and fail clearly offline."""

import time
from pathlib import Path

import pytest

from lgrpo.experiments import train as train_mod
from lgrpo.experiments.config import load_config

PAPER = Path(__file__).resolve().parents[2] / "configs" / "paper"
CASES = {
    "qwen1.5b-beta0.yaml": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 0.0),
    "qwen1.5b-beta0.04.yaml": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 0.04),
    "llama1b-beta0.yaml": ("meta-llama/Llama-3.2-1B-Instruct", 0.0),
    "llama1b-beta0.04.yaml": ("meta-llama/Llama-3.2-1B-Instruct", 0.04),
}


def test_all_four_configs_are_there():
    assert sorted(p.name for p in PAPER.glob("*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_paper_config_builds_the_right_grpo_config(name, tmp_path):
    from lgrpo.engines.trl import LambdaGRPOConfig

    model_id, beta = CASES[name]
    cfg = load_config(PAPER / name)
    assert cfg.model.name_or_path == model_id
    assert cfg.data.task == "openrs" and cfg.data.hub_id == "knoveleng/open-rs" and cfg.data.system_prompt
    assert cfg.rl.stop_after_boxed and cfg.rl.reward == "math_verify" and cfg.sft.steps == 0

    args = train_mod.build_grpo_config(cfg, tmp_path)
    assert isinstance(args, LambdaGRPOConfig)
    assert args.weighting == "lambda" and args.lambda_power == 1.0
    assert args.beta == beta
    assert args.use_bias_correction_kl is False  # METHOD.md §4: the loss is P·A − D, the KL term not times P
    assert args.learning_rate == 1e-6 and args.weight_decay == 0.0
    assert args.optim == "adamw_torch" and args.lr_scheduler_type == "constant"
    assert args.num_generations == 6
    assert args.generation_batch_size == 24  # 4 prompts × 6 completions per optimizer step
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 24
    assert args.num_iterations == 1
    assert args.temperature == 0.75 and args.top_p == 1.0 and args.top_k == 0
    assert args.max_completion_length == 1200
    assert args.loss_type == "grpo"
    assert args.rollout_log and args.log_prm_stats
    assert args.output_dir == str(tmp_path / "checkpoints")

    lora = train_mod.lora_config(cfg)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (64, 128, 0.05)
    assert lora.target_modules == "all-linear"


@pytest.mark.parametrize("name", ["qwen1.5b-beta0.yaml", "llama1b-beta0.04.yaml"])
def test_paper_config_fails_offline_naming_the_model(name, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_id, _ = CASES[name]
    data = tmp_path / "openrs.jsonl"  # the task loads first (its errors come before any model is fetched)
    data.write_text("".join(json.dumps({"problem": f"p{i}", "answer": str(i)}) + "\n" for i in range(120)))
    cfg = load_config(PAPER / name, [f"data.path={data}"])
    t0 = time.time()
    with pytest.raises(RuntimeError) as err:
        train_mod.train(cfg, tmp_path / "run")
    assert model_id in str(err.value) and "model.name_or_path=/path" in str(err.value)
    assert time.time() - t0 < 30  # no network retries


def test_openrs_fails_offline_naming_the_dataset(monkeypatch):
    from lgrpo.tasks.openrs import load_openrs

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=r"knoveleng/open-rs.*data\.path=/path"):
        load_openrs(None, "knoveleng/open-rs")
    with pytest.raises(RuntimeError, match=r"data\.path='/no/such\.jsonl'"):
        load_openrs("/no/such.jsonl")


def test_openrs_from_a_local_file(tmp_path):
    import json

    from lgrpo.tasks.openrs import load_openrs

    path = tmp_path / "openrs.jsonl"
    path.write_text(
        "".join(json.dumps({"problem": f"p{i}", "solution": f"\\boxed{{{i}}}"}) + "\n" for i in range(10))
    )
    train, held = load_openrs(str(path), eval_size=3, seed=0)
    assert len(train) == 7 and len(held) == 3
    assert not {r["problem"] for r in train} & {r["problem"] for r in held}
    assert held[0]["answer"].startswith("\\boxed{")


def test_openrs_answer_field_zero_and_missing_fields(tmp_path):
    import json

    from lgrpo.tasks.openrs import load_openrs

    path = tmp_path / "openrs.jsonl"
    rows = [{"problem": f"p{i}", "answer": i} for i in range(4)]  # answer 0 is an answer, not a missing one
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train, held = load_openrs(str(path), eval_size=1, seed=0)
    assert sorted(r["answer"] for r in train + held) == ["0", "1", "2", "3"]
    path.write_text(path.read_text() + json.dumps({"problem": "p4"}) + "\n")
    with pytest.raises(RuntimeError, match=r"row 4"):
        load_openrs(str(path), eval_size=1)
