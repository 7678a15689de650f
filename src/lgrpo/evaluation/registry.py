"""The paper's five math benchmarks (METHOD.md §10): where to find them and how to read them.

A local ``DIR/<name>.jsonl`` (one object per line with ``problem`` and ``answer``, optionally ``id``) takes
precedence over the Hugging Face Hub; it and any ``NAME=FILE`` benchmark are read by :func:`lgrpo.data.read_rows`. The Hub ids, splits and field names below are the public copies most papers
use; they were checked against published loading code, not by downloading (this machine has no Hub access).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from lgrpo.data import answer_text, gold_answer, hub_rows, read_rows


@dataclass(frozen=True)
class Benchmark:
    name: str  # the name on the command line and of the local file `<name>.jsonl`
    label: str  # column title in results.md, as in METHOD.md §10's table
    hub_id: str
    split: str
    problem_field: str
    answer_field: str  # OlympiadBench's is a list of strings, joined with ", "
    size: int  # problems in the full benchmark
    id_field: str | None = None  # a stable id column, when the Hub copy has one
    path: str | None = None  # a file given as NAME=PATH on the command line (then no Hub copy)
    answer_format: str = "plain"  # a file's answers: "plain" or "gsm8k" ("... #### 42")


def file_benchmark(
    name: str,
    path: str,
    problem_field: str = "problem",
    answer_field: str = "answer",
    answer_format: str = "plain",
) -> Benchmark:
    """A benchmark read from the file ``path`` (``.jsonl``, ``.json``, ``.parquet`` or a ``datasets`` folder) with the
    given field names; ``answer_format="gsm8k"`` takes the answer after ``####``."""
    return Benchmark(name, name, "", "", problem_field, answer_field, 0, "id", path, answer_format)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("aime24", "AIME24", "HuggingFaceH4/aime_2024", "train", "problem", "answer", 30, "id"),
        Benchmark(
            "math500", "MATH-500", "HuggingFaceH4/MATH-500", "test", "problem", "answer", 500, "unique_id"
        ),
        Benchmark("amc23", "AMC23", "math-ai/amc23", "test", "question", "answer", 40, "id"),
        Benchmark("minerva", "Minerva", "math-ai/minervamath", "test", "question", "answer", 272),
        Benchmark(
            "olympiadbench", "OB", "math-ai/olympiadbench", "test", "question", "final_answer", 675, "id"
        ),
    )
}


def resolve(
    names: str | list[str],
    problem_field: str = "problem",
    answer_field: str = "answer",
    answer_format: str = "plain",
) -> list[Benchmark]:
    """Benchmarks from a comma-separated list (or list): registry names, or ``NAME=PATH`` for any file (read with the
    given field names, see :func:`file_benchmark`). An unknown name is a ValueError naming the valid ones."""
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not items:
        raise ValueError(
            f"--benchmarks is empty; choose from {', '.join(BENCHMARKS)} or give NAME=path/to/file.jsonl"
        )
    out: dict[str, Benchmark] = {}
    unknown = []
    for item in items:
        name, sep, path = (part.strip() for part in item.partition("="))
        if sep:
            if not name or not path:
                raise ValueError(f"--benchmarks: {item!r} is not NAME=path/to/file.jsonl")
            out.setdefault(name, file_benchmark(name, path, problem_field, answer_field, answer_format))
        elif name in BENCHMARKS:
            out.setdefault(name, BENCHMARKS[name])
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"unknown benchmark(s) {', '.join(unknown)}; valid ones are: {', '.join(BENCHMARKS)}, "
            "or NAME=path/to/file.jsonl for any file"
        )
    return list(out.values())


def _from_file(bench: Benchmark, path: str, where: str, limit: int | None) -> list[dict[str, str]]:
    """The rows of a local file (:func:`lgrpo.data.read_rows`), every one checked before the first is used."""
    fields = (bench.problem_field, bench.answer_field)
    hint = "name the fields with --problem-field and --answer-field" if bench.path else ""
    out = []
    for i, (loc, row) in enumerate(read_rows(path, fields, where, hint, located=True)):
        rid = str(row.get("id", i)).removeprefix(f"{bench.name}/")  # files written from load_benchmark's rows
        out.append(
            {
                "id": f"{bench.name}/{rid}",
                "problem": str(row[bench.problem_field]),
                "answer": gold_answer(row[bench.answer_field], bench.answer_format, loc),
            }
        )
    return out[:limit]


def _from_hub(bench: Benchmark) -> list[dict[str, str]]:
    ds = hub_rows(bench.hub_id, bench.split)  # no network: the local cache only, failing at once
    rows = []
    for i, ex in enumerate(ds):
        rid = ex[bench.id_field] if bench.id_field and bench.id_field in ex else i
        rows.append(
            {
                "id": f"{bench.name}/{rid}",
                "problem": str(ex[bench.problem_field]),
                "answer": answer_text(ex[bench.answer_field]),
            }
        )
    return rows


def load_benchmark(
    bench: Benchmark, data_dir: str | None = None, limit: int | None = None
) -> list[dict[str, str]]:
    """The benchmark's problems as ``{"id", "problem", "answer"}`` dicts, the first ``limit`` of them.

    A file benchmark (``NAME=PATH``) reads its file; a registry benchmark reads ``data_dir/<name>.jsonl`` when it
    exists, else the Hub; when neither works the error says which file to provide.
    """
    if bench.path is not None:
        return _from_file(bench, bench.path, f"--benchmarks {bench.name}={bench.path}", limit)
    local = os.path.join(data_dir, f"{bench.name}.jsonl") if data_dir else None
    if local and os.path.exists(local):
        local_bench = replace(bench, problem_field="problem", answer_field="answer", answer_format="plain")
        rows = _from_file(local_bench, local, f"--data-dir: {local}", None)
    else:
        try:
            rows = _from_hub(bench)
        except Exception as exc:
            where = f"{local} does not exist" if local else "no --data-dir was given"
            raise FileNotFoundError(
                f"cannot load benchmark {bench.name!r}: {where}, and {str(exc)[:300]}. Provide "
                f"{os.path.join(data_dir or 'DIR', bench.name + '.jsonl')} with one JSON object per line holding "
                f"`problem` and `answer` (optionally `id`), and pass --data-dir {data_dir or 'DIR'}."
            ) from exc
    return rows[:limit] if limit is not None else rows
