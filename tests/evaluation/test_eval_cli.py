"""`lgrpo eval` end to end: a tiny local model, scoring saved predictions, and argument errors."""

from __future__ import annotations

import json
import time

import pytest

from lgrpo.cli import main
from lgrpo.evaluation import generate
from lgrpo.models import char_tokenizer, tiny_causal_lm

PROBLEMS = [("What is 1+1?", "2"), ("Write three quarters as a fraction.", "\\frac{3}{4}"), ("Name x.", "5")]


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for name in ("math500", "amc23"):
        with open(d / f"{name}.jsonl", "w") as f:
            for i, (problem, answer) in enumerate(PROBLEMS):
                f.write(json.dumps({"id": i, "problem": problem, "answer": answer}) + "\n")
    return d


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_eval_a_tiny_local_model(tmp_path, data_dir, arch):
    tokenizer = char_tokenizer()
    model = tiny_causal_lm(
        tokenizer, arch=arch, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32
    )
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    argv = [
        "eval",
        "--model",
        str(tmp_path / "model"),
        "--benchmarks",
        "math500,amc23",
        "--data-dir",
        str(data_dir),
    ]
    assert main([*argv, "--limit", "2", "--max-new-tokens", "6", "--batch-size", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == str(tmp_path / "model")
    assert {n: r["n"] for n, r in results["benchmarks"].items()} == {"math500": 2, "amc23": 2}
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    for p in preds:  # an untrained 6-token model writes no \boxed{...} answer, so none can be right
        assert "\\boxed" not in p["completion"] and p["correct"] is False, p
    assert {n: r["accuracy"] for n, r in results["benchmarks"].items()} == {"math500": 0.0, "amc23": 0.0}
    assert [p["id"] for p in preds] == ["math500/0", "math500/1", "amc23/0", "amc23/1"]
    assert all(set(p) >= {"id", "benchmark", "answer", "completion", "correct"} for p in preds)
    assert (out / "results.md").read_text().startswith("| model | MATH-500 | AMC23 | avg |")


def test_eval_scores_what_the_generator_says(tmp_path, data_dir, monkeypatch):
    """Wiring: answers flow from the data file through generation to the verdict and the results."""

    class Oracle:  # answers the first two problems right and the third wrong, two per batch
        def generate(self, problems):
            answers = {p: a for p, a in PROBLEMS}
            texts = [f"\\boxed{{{answers[p]}}}" if p != "Name x." else "\\boxed{6}" for p in problems]
            yield from (texts[i : i + 2] for i in range(0, len(texts), 2))

    monkeypatch.setattr(generate, "make_generator", lambda *a: Oracle())
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "--model",
                "m",
                "--benchmarks",
                "math500",
                "--data-dir",
                str(data_dir),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"]["math500"]["accuracy"] == pytest.approx(2 / 3)
    assert results["average"] == pytest.approx(2 / 3)


def test_eval_predictions_end_to_end(tmp_path):
    lines = [
        {"id": "a", "answer": "\\frac{1}{2}", "completion": "so \\boxed{0.5}", "benchmark": "math500"},
        {"id": "b", "answer": "7", "completion": "\\boxed{8}", "benchmark": "math500"},
        {"id": "c", "answer": "3", "completion": "\\boxed{9^{9^{9^{9}}}}", "benchmark": "aime24"},
        {"id": "d", "answer": "3", "completion": "\\boxed{3} \\boxed{4}"},
    ]
    path = tmp_path / "gens.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out"
    t0 = time.monotonic()
    assert main(["eval", "--predictions", str(path), "--timeout", "1", "--out", str(out)]) == 0
    assert time.monotonic() - t0 < 30  # the pathological item is cut off
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["correct"] for p in preds] == [True, False, False, True]
    assert preds[3]["benchmark"] == "predictions"
    results = json.loads((out / "results.json").read_text())
    assert results["model"] is None
    assert {n: r["accuracy"] for n, r in results["benchmarks"].items()} == {
        "aime24": 0.0,
        "math500": 0.5,
        "predictions": 1.0,
    }


def test_eval_predictions_limit_is_per_benchmark(tmp_path):
    # --limit N keeps the first N items of each benchmark, as its help says and as with --model
    lines = [
        {"id": f"{b}{i}", "answer": "1", "completion": "\\boxed{1}", "benchmark": b}
        for b in "xy"
        for i in range(3)
    ]
    path = tmp_path / "gens.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out"
    assert main(["eval", "--predictions", str(path), "--limit", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {n: r["n"] for n, r in results["benchmarks"].items()} == {"x": 2, "y": 2}


def test_eval_predictions_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "gens.jsonl"
    path.write_text('{"id": "a", "answer": "1", "completion": "\\\\boxed{1}"}\n5\n')
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--predictions", str(path), "--out", str(tmp_path / "out")])
    assert f"--predictions {path}:2: expected a JSON object, got int" in str(exc.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "m", "--limit", "0"], "--limit must be at least 1"),
        (["--model", "m", "--batch-size", "-1"], "--batch-size must be at least 1"),
        (["--model", "m", "--benchmarks", "gsm8k"], "unknown benchmark(s) gsm8k; valid ones are"),
        (["--predictions", "/nonexistent/p.jsonl"], "does not exist"),
    ],
)
def test_bad_arguments_fail_before_any_work(argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["eval", *argv])
    assert message in str(exc.value)


def test_model_and_predictions_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--model", "m", "--predictions", "p.jsonl"])
    assert "not allowed with" in capsys.readouterr().err


def test_vllm_backend_missing_is_a_clear_error():
    pytest.importorskip("transformers")
    try:
        import vllm  # noqa: F401

        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    with pytest.raises(SystemExit, match="--backend vllm needs vLLM"):
        generate.make_generator("vllm", "m", 10, 1)


def test_prompt_format_uses_the_chat_template():
    tokenizer = char_tokenizer()
    prompt = generate.format_prompt(tokenizer, "What is 2+2?")
    assert prompt.startswith("<|system|>Let's think step by step") and prompt.endswith(
        "What is 2+2?\n<|assistant|>"
    )

    class Plain:
        chat_template = None

    assert (
        generate.format_prompt(Plain(), "Q")
        == "Let's think step by step and output the final answer within \\boxed{}.\n\nQ\n"
    )


def test_eval_any_file_with_its_field_names(tmp_path, monkeypatch):
    """`--benchmarks NAME=FILE` with GSM8K's fields: `question`, and `answer` ending in `#### 42`."""
    rows = [
        {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2+3=<<2+3=5>>5\n#### 5"},
        {"question": "What is 1,000 + 234?", "answer": "#### 1,234"},
    ]
    path = tmp_path / "gsm8k_test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = {}

    class Oracle:
        def generate(self, problems):
            seen["problems"] = problems
            yield ["so \\boxed{5}", "\\boxed{1234}"]

    monkeypatch.setattr(generate, "make_generator", lambda *a: Oracle())
    out = tmp_path / "out"
    argv = ["eval", "--model", "m", "--benchmarks", f"gsm8k={path}", "--out", str(out)]
    assert main([*argv, "--problem-field", "question", "--answer-format", "gsm8k"]) == 0
    assert seen["problems"] == [r["question"] for r in rows]
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"]["gsm8k"] == {"accuracy": 1.0, "n": 2, "correct": 2, "stderr": 0.0}
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["answer"] for p in preds] == ["5", "1234"] and preds[0]["id"] == "gsm8k/0"
    with pytest.raises(SystemExit, match="no field 'problem'"):
        main(["eval", "--model", "m", "--benchmarks", f"gsm8k={path}", "--out", str(out)])
    with pytest.raises(
        SystemExit, match=r"lgrpo eval: error: --benchmarks x=.*nope\.jsonl: no such file or directory"
    ):
        main(["eval", "--model", "m", "--benchmarks", f"x={tmp_path / 'nope.jsonl'}", "--out", str(out)])
