"""The Task interface and its registry: every task gives the same shape; prompt formats; answer checks; file tasks."""

from __future__ import annotations

import json
import math

import pytest

from lgrpo.data import gold_answer
from lgrpo.experiments.config import load_config
from lgrpo.models import LoadError, char_tokenizer
from lgrpo.tasks import TASKS, PromptFormat, Task, build_task, register_task
from lgrpo.tasks.math_answers import SYSTEM_PROMPT
from lgrpo.tasks.task import AnswerReward, FormatReward, exact_check, report_unscorable

SMALL = ["data.train_size=12", "data.eval_size=4"]


def _shape(task: Task) -> None:
    assert task.train and task.held_out
    for row in (*task.train, *task.held_out):
        assert isinstance(row["problem"], str) and isinstance(row["answer"], str)
    assert len(task.reward_funcs) == len(task.reward_weights)
    rows = task.train_rows()
    assert len(rows) == len(task.train) and all("prompt" in r and "problem" not in r for r in rows)
    assert not {r["problem"] for r in task.train} & {r["problem"] for r in task.held_out}


def test_arithmetic_task():
    task = build_task(load_config(None, SMALL))
    _shape(task)
    assert task.name == "arithmetic" and len(task.train) == 12 and len(task.held_out) == 4
    assert task.solutions is not None and task.solutions[0].endswith(f"\\boxed{{{task.train[0]['answer']}}}")
    assert task.prompt_format == PromptFormat() and task.train_rows()[0]["prompt"] == task.train[0]["problem"]
    row = task.held_out[0]
    assert task.check(f"\\boxed{{{row['answer']}}}", row) == (1.0, None)
    assert task.check("no box", row) == (0.0, "no_answer")
    assert [f.__name__ for f in task.reward_funcs] == ["exact_answer"]


def test_format_reward_and_weights():
    task = build_task(load_config(None, [*SMALL, "rl.format_weight=0.25", "rl.reward=math_verify"]))
    assert [f.__name__ for f in task.reward_funcs] == ["math_reward", "format"]
    assert task.reward_weights == [1.0, 0.25]
    assert task.reward_funcs[1](None, ["\\boxed{3}", "\\boxed{}", "none"]) == [1.0, 0.0, 0.0]


def test_reasoning_gym_task():
    cfg = load_config(None, ["data.task=reasoning_gym:basic_arithmetic", *SMALL, "data.system_prompt=true"])
    task = build_task(cfg)
    _shape(task)
    assert task.name == "reasoning_gym:basic_arithmetic" and task.solutions is None
    prompt = task.train_rows()[0]["prompt"]
    assert prompt == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": task.train[0]["problem"]},
    ]
    row = task.held_out[0]
    assert task.check(f"so \\boxed{{{row['answer']}}}", row).score == 1.0  # the dataset's own scorer
    assert task.check("\\boxed{not a number}", row).score == 0.0
    reward = task.reward_funcs[0]
    assert (
        reward(None, [f"\\boxed{{{r['answer']}}}" for r in task.train[:3]], rg_index=[0, 1, 2]) == [1.0] * 3
    )


@pytest.mark.parametrize(
    ("task", "match"),
    [
        ("nope", "data.task"),
        ("reasoning_gym", "data.task"),
        ("arithmetic:x", "data.task"),
        ("file", "data.path"),
    ],
)
def test_bad_task_names_are_config_errors(task, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, [f"data.task={task}"])


def test_unknown_reasoning_gym_dataset():
    with pytest.raises(ValueError, match="unknown reasoning-gym dataset 'no_such'"):
        build_task(load_config(None, ["data.task=reasoning_gym:no_such", *SMALL]))


def test_register_a_task():
    def build(cfg, arg):
        rows = [{"problem": f"{arg} {i}", "answer": str(i)} for i in range(3)]
        return Task(
            "mine",
            rows[:2],
            rows[2:],
            PromptFormat(),
            [FormatReward()],
            lambda c, r: exact_check(c, r["answer"]),
        )

    register_task("mine", build)
    try:
        cfg = load_config(None, ["data.task=arithmetic"])
        cfg.data.task = "mine:hello"
        assert build_task(cfg).train[1]["problem"] == "hello 1"
    finally:
        del TASKS["mine"]


def test_prompt_format_text():
    tok = char_tokenizer()
    assert PromptFormat().text("1+1=?\n", tok) == "1+1=?\n"
    assert PromptFormat("S").text("Q", tok) == "S\n\nQ\n"
    assert PromptFormat("S", chat=True).text("Q", tok) == "<|system|>S\n<|user|>Q\n<|assistant|>"
    assert PromptFormat(chat=True).text("Q", tok) == "<|user|>Q\n<|assistant|>"
    cfg = load_config(None, ["data.system_prompt=true"])
    assert PromptFormat.from_config(cfg) == PromptFormat(SYSTEM_PROMPT, chat=True)


def test_prompt_format_with_the_real_chat_template(smollm2_tokenizer):
    text = PromptFormat(SYSTEM_PROMPT, chat=True).text("What is 2+3?", smollm2_tokenizer)
    assert text.startswith("<|im_start|>system\n" + SYSTEM_PROMPT)
    assert text.endswith("<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n")


def test_answer_reward_logs_shares():
    logged = {}
    reward = AnswerReward(exact_check, "exact_answer")
    scores = reward(
        None,
        ["\\boxed{7}", "\\boxed{8}", "x", [{"role": "assistant", "content": "\\boxed{7}"}]],
        answer=["7"] * 4,
        log_metric=logged.__setitem__,
    )
    assert scores == [1.0, 0.0, 0.0, 1.0]
    assert logged["reward/no_answer"] == 0.25 and logged["reward/unscorable"] == 0.0


def test_gold_answer_formats():
    assert gold_answer("He has 3+4=<<3+4=7>>7 apples.\n#### 1,007", "gsm8k") == "1007"
    assert gold_answer(27.0) == "27" and gold_answer(["1", "2"]) == "1, 2"
    with pytest.raises(ValueError, match="####"):
        gold_answer("no marker", "gsm8k", "row 3")


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_file_task_gsm8k(tmp_path, capsys):
    # GSM8K's fields: `question`, and `answer` = reasoning with calculator notes, then `#### <answer>`
    rows = [
        {"question": f"Q{i}: what is {i}+{i}?", "answer": f"{i}+{i}=<<{i}+{i}={2 * i}>>{2 * i}\n#### {2 * i}"}
        for i in range(10)
    ]
    _write(tmp_path / "gsm8k.jsonl", rows)
    cfg = load_config(
        None,
        [
            "data.task=file",
            f"data.path={tmp_path / 'gsm8k.jsonl'}",
            "data.problem_field=question",
            "data.answer_format=gsm8k",
            "data.eval_size=3",
            "rl.reward=math_verify",
        ],
    )
    task = build_task(cfg)
    _shape(task)
    assert len(task.train) == 7 and len(task.held_out) == 3
    q = task.train[0]["problem"]
    i = int(q[1 : q.index(":")])
    assert task.train[0]["answer"] == str(2 * i)
    assert task.solutions is not None and task.solutions[0] == f"{i}+{i}={2 * i}\n\\boxed{{{2 * i}}}"
    assert "cannot be scored" not in capsys.readouterr().err


def test_file_task_errors_name_the_key(tmp_path):
    _write(tmp_path / "d.jsonl", [{"q": "1+1", "a": "2"}] * 5)
    base = ["data.task=file", f"data.path={tmp_path / 'd.jsonl'}", "data.eval_size=2"]
    with pytest.raises(
        LoadError,
        match=r"d\.jsonl':1: no field 'problem', 'answer' \(fields: q, a\); name the fields with data\.problem_field",
    ):
        build_task(load_config(None, base))
    with pytest.raises(LoadError, match=r"data\.path"):
        build_task(load_config(None, ["data.task=file", f"data.path={tmp_path / 'missing.jsonl'}"]))
    with pytest.raises(ValueError, match="gsm8k"):
        build_task(
            load_config(
                None, [*base, "data.problem_field=q", "data.answer_field=a", "data.answer_format=gsm8k"]
            )
        )


def test_unscorable_golds_are_reported_at_load(tmp_path, capsys):
    rows = [{"problem": f"p{i}", "answer": str(i)} for i in range(6)]
    rows[1]["answer"] = "see the figure"
    rows[4]["answer"] = "Proof"
    _write(tmp_path / "d.jsonl", rows)
    cfg = load_config(None, ["data.task=file", f"data.path={tmp_path / 'd.jsonl'}", "data.eval_size=2"])
    task = build_task(cfg)
    err = capsys.readouterr().err
    assert "2 of 6 gold answers cannot be scored" in err and "'see the figure'" in err
    assert report_unscorable(task, 5.0) == 2
    bad = next(r for r in (*task.train, *task.held_out) if r["answer"] == "Proof")
    assert math.isnan(task.check("\\boxed{Proof}", bad).score)
