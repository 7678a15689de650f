"""One reader for every data file (lgrpo.data): every format, and every route that reads one.

Routes: ``lgrpo eval --benchmarks NAME=FILE``, ``lgrpo eval --data-dir DIR`` and ``lgrpo train data.task=file
data.path=FILE``. Each bad file (missing, empty, a malformed line or row, a missing field) is one error naming the
file (and line), raised before any model loads and before ``lgrpo train`` writes anything.
"""

from __future__ import annotations

import json
import re

import pytest

from lgrpo.cli import main

ROWS = [
    {"problem": "1+1?", "answer": "2"},
    {"problem": "2+3?", "answer": 5},
    {"problem": "x", "answer": [1, 2]},
]


def write(path, rows=ROWS, fmt=None):
    """``rows`` in the format of ``path``'s name (or ``fmt``): jsonl, json (array), parquet, a datasets folder."""
    fmt = fmt or path.suffix.lstrip(".")
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows, indent=1))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows) if rows else pa.table({"problem": pa.array([], pa.string())})
        pq.write_table(table, path)
    elif fmt == "datasets":
        from datasets import Dataset

        Dataset.from_list(rows or [{"problem": "p"}]).select(range(len(rows))).save_to_disk(str(path))
    return path


SAME_TYPES = [{"problem": "1+1?", "answer": "2"}, {"problem": "2+3?", "answer": "5"}]  # one type per column


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "datasets"])
def test_every_format_reads_its_rows(tmp_path, fmt):
    from lgrpo.data import read_rows

    rows = ROWS if fmt in ("jsonl", "json") else SAME_TYPES  # Arrow columns hold one type
    path = write(tmp_path / ("d" if fmt == "datasets" else f"d.{fmt}"), rows, fmt)
    assert read_rows(path, ("problem", "answer")) == rows


def test_json_lines_in_a_json_file_and_a_folder_of_files(tmp_path):
    from lgrpo.data import DataError, read_rows

    write(tmp_path / "lines.json", ROWS, "jsonl")
    assert read_rows(tmp_path / "lines.json") == ROWS
    folder = tmp_path / "parts"
    folder.mkdir()
    write(folder / "b.jsonl", ROWS[1:])
    write(folder / "a.json", ROWS[:1])
    (folder / "notes.txt").write_text("not data")
    assert read_rows(folder, ("problem",)) == ROWS  # sorted by name: a.json, then b.jsonl
    write(folder / "b.jsonl", [ROWS[1], {"problem": "q"}])
    with pytest.raises(DataError, match=r"parts: b\.jsonl:2: no field 'answer'"):
        read_rows(folder, ("problem", "answer"))


def test_a_datasets_folder_with_splits(tmp_path):
    from datasets import Dataset, DatasetDict

    from lgrpo.data import DataError, read_rows

    one = Dataset.from_list(SAME_TYPES)
    DatasetDict({"test": one.select([1]), "train": one.select([0])}).save_to_disk(str(tmp_path / "dd"))
    assert read_rows(tmp_path / "dd") == SAME_TYPES[:1]  # the train split
    DatasetDict({"test": one}).save_to_disk(str(tmp_path / "only"))
    assert read_rows(tmp_path / "only") == SAME_TYPES  # the only split
    DatasetDict({"a": one, "b": one}).save_to_disk(str(tmp_path / "ab"))
    with pytest.raises(DataError, match=r"ab: a DatasetDict with splits a, b and no 'train' split"):
        read_rows(tmp_path / "ab")


def bad_files(tmp_path):
    """(case, path, what the error must say after the path) for every format and kind of fault."""
    d = tmp_path
    broken = d / "broken"
    write(broken, SAME_TYPES, "datasets")
    for arrow in broken.glob("*.arrow"):
        arrow.write_bytes(b"garbage")
    return [
        ("missing", d / "nope.jsonl", r": no such file or directory"),
        ("empty jsonl", write(d / "e.jsonl", []), r": holds no problems"),
        ("blank jsonl", d / "blank.jsonl", r": holds no problems"),
        ("empty json", write(d / "e.json", []), r": holds no problems"),
        ("empty parquet", write(d / "e.parquet", []), r": holds no problems"),
        ("empty datasets", write(d / "e_ds", [], "datasets"), r": holds no problems"),
        ("bad line", d / "bad.jsonl", r":2: not valid JSON"),
        ("cut last line", d / "cut.jsonl", r":2: not valid JSON"),
        ("not an object", d / "list.jsonl", r":2: expected a JSON object, got list"),
        ("bad json", d / "bad.json", r":3: not valid JSON"),
        (
            "json object",
            d / "obj.json",
            r":1: no field 'problem', 'answer' \(fields: data\)",
        ),  # one JSON line
        ("not parquet", d / "bad.parquet", r": not a readable parquet file"),
        ("broken datasets", broken, r": cannot be loaded by datasets\.load_from_disk"),
        (
            "no field",
            write(d / "f.jsonl", [ROWS[0], {"question": "q", "answer": "1"}]),
            r":2: no field 'problem'",
        ),
        ("no field parquet", write(d / "f.parquet", [{"question": "q", "answer": "1"}]), r" row 0: no field"),
        (
            "null field",
            write(d / "n.jsonl", [{"problem": None, "answer": "1"}]),
            r":1: field 'problem' is null",
        ),
        ("empty folder", d / "nothing", r": a folder with no \.jsonl/\.json/\.parquet files"),
    ]


@pytest.fixture
def bad(tmp_path):
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    (tmp_path / "bad.jsonl").write_text('{"problem": "p", "answer": "1"}\n{"problem": oops}\n')
    (tmp_path / "cut.jsonl").write_text('{"problem": "p", "answer": "1"}\n{"problem": "q", "ans')
    (tmp_path / "list.jsonl").write_text('{"problem": "p", "answer": "1"}\n[1, 2]\n')
    (tmp_path / "bad.json").write_text('[\n {"problem": "p", "answer": "1"},\n {"problem": }\n]')
    (tmp_path / "obj.json").write_text('{"data": []}')
    (tmp_path / "bad.parquet").write_text("not parquet")
    (tmp_path / "nothing").mkdir()
    return bad_files(tmp_path)


def test_each_fault_is_one_data_error_naming_the_file(bad):
    from lgrpo.data import DataError, read_rows

    for case, path, what in bad:
        with pytest.raises(DataError) as err:
            read_rows(path, ("problem", "answer"), where=f"data.path={path}")
        assert str(err.value).startswith(f"data.path={path}"), case
        assert err.match(what), (case, str(err.value))
        assert isinstance(err.value, ValueError)


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: the data must be checked first."""
    from lgrpo.evaluation import generate
    from lgrpo.experiments import train as train_mod

    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before the data was checked")

    monkeypatch.setattr(generate, "make_generator", loaded)
    monkeypatch.setattr(train_mod, "build_model", loaded)


def test_every_route_reports_each_fault_before_any_model(bad, tmp_path, no_model):
    """The same faults through the three routes: a SystemExit naming the file (and line), nothing written."""
    for case, path, what in bad:
        routes = [
            (["eval", "--model", "m", "--benchmarks", f"x={path}"], f"--benchmarks x={path}"),
            (["train", "data.task=file", f"data.path={path}"], f"data.path={str(path)!r}"),
        ]
        if path.suffix == ".jsonl" and case != "missing":  # --data-dir reads DIR/<name>.jsonl
            data_dir = tmp_path / f"dir-{path.stem}"
            data_dir.mkdir()
            (data_dir / "aime24.jsonl").write_bytes(path.read_bytes())
            routes.append(
                (
                    ["eval", "--model", "m", "--benchmarks", "aime24", "--data-dir", str(data_dir)],
                    "--data-dir",
                )
            )
        for argv, where in routes:
            out = tmp_path / "out"
            with pytest.raises(SystemExit) as err:
                main([*argv, "--out", str(out)])
            message = str(err.value.code)
            assert where in message, (case, argv[0], message)
            assert message.startswith(f"lgrpo {argv[0]}: error: "), message
            assert re.search(what, message), (case, message)
            assert not (out / "config.yaml").exists()


def test_routes_read_the_same_rows(tmp_path, monkeypatch):
    """A good file in every format gives the same benchmark rows through --benchmarks NAME=FILE, and the same
    problems to a file task."""
    from lgrpo.evaluation.registry import BENCHMARKS, load_benchmark, resolve
    from lgrpo.experiments.config import load_config
    from lgrpo.tasks import build_task

    rows = [{"problem": f"{i}+1?", "answer": str(i + 1)} for i in range(6)]
    expected = [{"id": f"x/{i}", "problem": r["problem"], "answer": r["answer"]} for i, r in enumerate(rows)]
    for fmt in ("jsonl", "json", "parquet", "datasets"):
        path = write(tmp_path / ("d" if fmt == "datasets" else f"d.{fmt}"), rows, fmt)
        assert load_benchmark(resolve(f"x={path}")[0]) == expected, fmt
        task = build_task(load_config(None, ["data.task=file", f"data.path={path}", "data.eval_size=2"]))
        assert sorted(r["problem"] for r in (*task.train, *task.held_out)) == sorted(
            r["problem"] for r in rows
        )
    write(tmp_path / "aime24.jsonl", rows)
    got = load_benchmark(BENCHMARKS["aime24"], str(tmp_path))
    assert got == [{**e, "id": e["id"].replace("x/", "aime24/")} for e in expected]
