"""The benchmark registry: well-formed entries, name resolution, local files and the missing-data error."""

from __future__ import annotations

import json
import os

import pytest

from lgrpo.cli import main
from lgrpo.evaluation.registry import BENCHMARKS, Benchmark, load_benchmark, resolve


def test_registry_holds_the_papers_five_benchmarks():
    assert list(BENCHMARKS) == ["aime24", "math500", "amc23", "minerva", "olympiadbench"]
    assert {n: b.size for n, b in BENCHMARKS.items()} == {
        "aime24": 30, "math500": 500, "amc23": 40, "minerva": 272, "olympiadbench": 675,
    }  # fmt: skip
    assert [b.label for b in BENCHMARKS.values()] == ["AIME24", "MATH-500", "AMC23", "Minerva", "OB"]
    for name, b in BENCHMARKS.items():
        assert isinstance(b, Benchmark) and b.name == name
        owner, _, repo = b.hub_id.partition("/")
        assert owner and repo and "/" not in repo
        assert b.split in ("train", "test")
        assert b.problem_field and b.answer_field


def test_resolve():
    assert [b.name for b in resolve("math500, aime24,math500")] == ["math500", "aime24"]
    with pytest.raises(ValueError, match=r"unknown benchmark.*gsm8k.*valid ones are: aime24, math500"):
        resolve("math500,gsm8k")
    with pytest.raises(ValueError, match="empty"):
        resolve(" , ")


def test_empty_local_file_is_a_clear_error(tmp_path):
    (tmp_path / "aime24.jsonl").write_text("\n")
    with pytest.raises(ValueError, match=r"--data-dir: .*aime24.jsonl: holds no problems"):
        load_benchmark(BENCHMARKS["aime24"], str(tmp_path))


def test_local_file_takes_precedence_and_limit(tmp_path):
    lines = [
        {"problem": "1+1?", "answer": "2", "id": "a"},
        {"problem": "2+2?", "answer": 4.0},
        {"problem": "x", "answer": [1, 2]},
        {"problem": "y", "answer": "0", "id": "amc23/7"},  # as written from load_benchmark's own rows
    ]
    (tmp_path / "amc23.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    rows = load_benchmark(BENCHMARKS["amc23"], str(tmp_path))
    assert rows == [
        {"id": "amc23/a", "problem": "1+1?", "answer": "2"},
        {"id": "amc23/1", "problem": "2+2?", "answer": "4"},
        {"id": "amc23/2", "problem": "x", "answer": "1, 2"},
        {"id": "amc23/7", "problem": "y", "answer": "0"},
    ]
    assert len(load_benchmark(BENCHMARKS["amc23"], str(tmp_path), limit=2)) == 2


def test_bad_local_file(tmp_path):
    (tmp_path / "aime24.jsonl").write_text('{"question": "q", "answer": "1"}\n')
    with pytest.raises(ValueError, match=r"aime24.jsonl:1: no field 'problem' \(fields: question, answer\)"):
        load_benchmark(BENCHMARKS["aime24"], str(tmp_path))


def test_missing_data_names_the_file_to_provide(tmp_path, monkeypatch, capsys):
    import datasets

    def offline(*args, **kwargs):  # what `datasets` raises here, where the Hub is unreachable (after retries)
        raise ConnectionError(f"Couldn't reach {args[0]!r} on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    (tmp_path / "math500.jsonl").write_text('{"problem": "1+1?", "answer": "2"}\n')
    argv = ["eval", "--model", "unused", "--benchmarks", "math500,minerva", "--data-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    message = str(exc.value)
    assert "cannot load benchmark 'minerva'" in message
    assert f"Provide {os.path.join(str(tmp_path), 'minerva.jsonl')}" in message
    assert "math-ai/minervamath" in message and "`problem` and `answer`" in message
    with pytest.raises(SystemExit, match=r"'math500': no --data-dir was given.*Provide DIR/math500.jsonl"):
        main(argv[:5])


def test_hub_rows_are_read_with_the_registrys_field_names(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(hub_id, split):  # rows shaped like the Hub copies' columns
        calls.append((hub_id, split))
        bench = next(b for b in BENCHMARKS.values() if b.hub_id == hub_id)
        answer = (
            ["\\frac{1}{2}", "3"] if bench.name == "olympiadbench" else 27.0 if bench.name == "amc23" else "7"
        )
        row = {bench.problem_field: f"problem of {bench.name}", bench.answer_field: answer, "other": 0}
        if bench.id_field:
            row[bench.id_field] = "x1"
        return [row, row]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    got = {name: load_benchmark(b, data_dir=None, limit=1) for name, b in BENCHMARKS.items()}
    assert calls == [(b.hub_id, b.split) for b in BENCHMARKS.values()]
    assert got["olympiadbench"] == [
        {"id": "olympiadbench/x1", "problem": "problem of olympiadbench", "answer": "\\frac{1}{2}, 3"}
    ]
    assert got["amc23"][0]["answer"] == "27"
    assert got["minerva"] == [{"id": "minerva/0", "problem": "problem of minerva", "answer": "7"}]
