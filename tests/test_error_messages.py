"""Errors that point the right way: a missing local path is a missing path (the Hub hint only for a Hub id), a
benchmark with no local file and no network fails at once, every `lgrpo eval` error reads `lgrpo eval: error: ...`,
and a mistyped config key names the closest one."""

from __future__ import annotations

import json
import time

import pytest

from lgrpo.cli import main
from lgrpo.models import LoadError, load_model


@pytest.mark.parametrize(
    ("name", "hub"),
    [("/data/nope", False), ("runs/a/final", False), ("./m", False), ("~/m", False), ("m.gguf", False),
     ("HuggingFaceTB/SmolLM2-135M-Instruct", True), ("gpt2", True), ("data/nope", True)],
)  # fmt: skip
def test_looks_like_hub_id(name, hub):
    from lgrpo.models import looks_like_hub_id

    assert looks_like_hub_id(name) is hub


@pytest.fixture
def offline(monkeypatch):
    """No network, as on this machine, whatever the machine running the tests has."""
    import lgrpo.models

    monkeypatch.setattr(lgrpo.models, "hub_reachable", lambda timeout=3.0: False)


@pytest.mark.parametrize("path", ["/data/nope", "runs/nope/final"])
def test_a_missing_local_path_is_reported_as_missing(path, offline):
    t0 = time.time()
    with pytest.raises(LoadError) as err:
        load_model(path)
    assert str(err.value) == f"model.name_or_path={path!r}: no such file or directory"
    assert time.time() - t0 < 5


def test_a_hub_id_that_cannot_be_fetched_gets_the_download_hint(offline):
    with pytest.raises(LoadError, match=r"Hub cannot be reached.*`hf download no-such-org/no-such-model "):
        load_model("no-such-org/no-such-model")


def test_train_and_eval_report_a_missing_model_path_before_any_work(tmp_path, monkeypatch):
    from lgrpo.evaluation import generate
    from lgrpo.experiments import train as train_mod

    def loaded(*args, **kwargs):
        raise AssertionError("a model load was started")

    monkeypatch.setattr(generate, "make_generator", loaded)
    monkeypatch.setattr(train_mod, "build_model", loaded)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        main(["train", "model.name_or_path=/data/nope", "--out", str(out)])
    assert err.value.code == "lgrpo train: error: model.name_or_path='/data/nope': no such file or directory"
    assert not out.exists()
    data = tmp_path / "d.jsonl"
    data.write_text('{"problem": "1+1?", "answer": "2"}\n')
    with pytest.raises(SystemExit) as err:
        main(["eval", "--model", "/data/nope", "--benchmarks", f"x={data}", "--out", str(out)])
    assert err.value.code == "lgrpo eval: error: --model='/data/nope': no such file or directory"


# ----------------------------------------------------------------------------------------------------------------
# a benchmark with no local file and no network


def test_a_benchmark_without_file_or_network_fails_at_once(tmp_path, offline):
    """The real `datasets` client, offline: the error comes without the Hub client's retries (35 s before)."""
    t0 = time.time()
    with pytest.raises(SystemExit) as err:
        main(["eval", "--model", "m", "--benchmarks", "minerva", "--data-dir", str(tmp_path)])
    seconds = time.time() - t0
    message = str(err.value.code)
    assert message.startswith("lgrpo eval: error: cannot load benchmark 'minerva': ")
    assert "math-ai/minervamath" in message and "cannot be reached" in message and "minerva.jsonl" in message
    assert seconds < 10, seconds


@pytest.mark.parametrize("reachable", [True, False])
def test_hub_datasets_go_online_only_when_the_hub_answers(monkeypatch, reachable):
    """With network, an ordinary (online) load_dataset; without, the local cache in offline mode only."""
    import datasets
    import datasets.config
    import huggingface_hub.constants

    import lgrpo.models
    from lgrpo.evaluation.registry import BENCHMARKS, load_benchmark

    calls = []

    def fake_load_dataset(hub_id, split):
        calls.append(
            (hub_id, split, datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
        )
        return [{"problem": "p", "answer": "1", "id": "a"}]

    monkeypatch.setattr(lgrpo.models, "hub_reachable", lambda timeout=3.0: reachable)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    before = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    rows = load_benchmark(BENCHMARKS["aime24"])
    assert rows == [{"id": "aime24/a", "problem": "p", "answer": "1"}]
    offline = not reachable
    assert calls == [("HuggingFaceH4/aime_2024", "train", offline or before[0], offline or before[1])]
    assert before == (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)  # restored


# ----------------------------------------------------------------------------------------------------------------
# one form for every `lgrpo eval` error


def test_every_eval_error_reads_the_same(tmp_path):
    run = tmp_path / "run"  # a run folder with no model in it
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")
    bad_predictions = tmp_path / "p.jsonl"
    bad_predictions.write_text('{"id": 1}\n')
    data = tmp_path / "d.jsonl"
    data.write_text('{"problem": "1+1?", "answer": "2"}\n')
    cases = [
        ["--model", "m", "--limit", "0"],
        ["--model", "m", "--timeout", "0"],
        ["--predictions", str(tmp_path / "none.jsonl")],
        ["--predictions", str(bad_predictions)],
        ["--model", "m", "--benchmarks", "held_out"],
        ["--model", "m", "--benchmarks", "nosuch"],
        ["--model", "m", "--benchmarks", " , "],
        ["--model", "m", "--benchmarks", f"x={data}", "--answer-field", "solution"],
        ["--model", str(run), "--benchmarks", f"x={data}"],
        ["--model", "/data/nope", "--benchmarks", f"x={data}"],
    ]
    for argv in cases:
        with pytest.raises(SystemExit) as err:
            main(["eval", *argv, "--out", str(tmp_path / "out")])
        assert isinstance(err.value.code, str) and err.value.code.startswith("lgrpo eval: error: "), (
            argv,
            err.value.code,
        )
        assert err.value.code.count("error:") == 1, err.value.code


# ----------------------------------------------------------------------------------------------------------------
# a mistyped config key


@pytest.mark.parametrize(
    ("override", "meant"),
    [("rl.bta=0.04", "rl.beta"), ("beta=0.04", "rl.beta"), ("rl.lora_r=4", "model.lora_r"),
     ("rl.max_step=3", "rl.max_steps"), ("model.nme_or_path=x", "model.name_or_path"),
     ("rl.tree_packing_alway=true", "rl.tree_packing_always")],
)  # fmt: skip
def test_a_mistyped_config_key_names_the_closest(override, meant, tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["train", override, "--out", str(tmp_path / "out")])
    assert f"did you mean '{meant}'?" in str(err.value.code)
    assert str(err.value.code).startswith("lgrpo train: error: unknown config key")
    assert not (tmp_path / "out").exists()


def test_a_key_like_nothing_gets_no_guess():
    from lgrpo.experiments.config import load_config

    with pytest.raises(ValueError) as err:
        load_config(None, ["xyzzy=1"])
    assert "did you mean" not in str(err.value)


def test_a_mistyped_trl_option_names_the_closest(tmp_path):
    from lgrpo.experiments.config import load_config
    from lgrpo.experiments.train import build_grpo_config

    with pytest.raises(ValueError, match=r"no field 'entropy_cof'; did you mean 'rl\.trl\.entropy_coef'\?"):
        build_grpo_config(load_config(None, ["rl.trl.entropy_cof=0.1"]), tmp_path)


def test_a_yaml_config_key_is_guessed_too(tmp_path):
    from lgrpo.experiments.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"rl": {"betta": 0.1}}))
    with pytest.raises(ValueError, match=r"'rl\.betta' in .*c\.yaml; did you mean 'rl\.beta'\?"):
        load_config(path)


def test_a_missing_gguf_file_says_how_to_fetch_one():
    from lgrpo.models import check_model_source

    with pytest.raises(
        LoadError, match=r"model\.name_or_path='/data/nope\.gguf': no such \.gguf file.*make smollm2"
    ):
        check_model_source("/data/nope.gguf")
