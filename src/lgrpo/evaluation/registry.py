"""The paper's five math benchmarks (METHOD.md §10): where to find them and how to read them.

A local ``DIR/<name>.jsonl`` (one object per line with ``problem`` and ``answer``, optionally ``id``) takes
precedence over the Hugging Face Hub. The Hub ids, splits and field names below are the public copies most papers
use; they were checked against published loading code, not by downloading (this machine has no Hub access).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from lgrpo.jsonl import read_jsonl


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


def resolve(names: str | list[str]) -> list[Benchmark]:
    """Benchmarks from a comma-separated list (or list) of names; an unknown name is a ValueError naming the valid ones."""
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not items:
        raise ValueError(f"--benchmarks is empty; choose from {', '.join(BENCHMARKS)}")
    unknown = [n for n in items if n not in BENCHMARKS]
    if unknown:
        raise ValueError(
            f"unknown benchmark(s) {', '.join(unknown)}; valid ones are: {', '.join(BENCHMARKS)}"
        )
    return [BENCHMARKS[n] for n in dict.fromkeys(items)]


def _answer_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_answer_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # AMC23 stores 27 as 27.0
    return str(value).strip()


def _from_local(bench: Benchmark, path: str) -> list[dict[str, str]]:
    rows = []
    for i, obj in enumerate(read_jsonl(path, ("problem", "answer"))):
        rid = str(obj.get("id", i)).removeprefix(f"{bench.name}/")  # files written from load_benchmark
        rows.append(
            {
                "id": f"{bench.name}/{rid}",
                "problem": str(obj["problem"]),
                "answer": _answer_text(obj["answer"]),
            }
        )
    return rows


def _from_hub(bench: Benchmark) -> list[dict[str, str]]:
    from datasets import load_dataset

    ds = load_dataset(bench.hub_id, split=bench.split)
    rows = []
    for i, ex in enumerate(ds):
        rid = ex[bench.id_field] if bench.id_field and bench.id_field in ex else i
        rows.append(
            {
                "id": f"{bench.name}/{rid}",
                "problem": str(ex[bench.problem_field]),
                "answer": _answer_text(ex[bench.answer_field]),
            }
        )
    return rows


def load_benchmark(
    bench: Benchmark, data_dir: str | None = None, limit: int | None = None
) -> list[dict[str, str]]:
    """The benchmark's problems as ``{"id", "problem", "answer"}`` dicts, the first ``limit`` of them.

    Reads ``data_dir/<name>.jsonl`` when it exists, else the Hub; when neither works the error says which file to
    provide.
    """
    local = os.path.join(data_dir, f"{bench.name}.jsonl") if data_dir else None
    if local and os.path.exists(local):
        rows = _from_local(bench, local)
        if not rows:  # scoring nothing would leave the benchmark out of the results (or crash the table)
            raise ValueError(f"--data-dir: {local} holds no problems")
    else:
        try:
            rows = _from_hub(bench)
        except Exception as exc:
            where = f"{local} does not exist" if local else "no --data-dir was given"
            raise FileNotFoundError(
                f"cannot load benchmark {bench.name!r}: {where}, and the Hub dataset {bench.hub_id!r} (split "
                f"{bench.split!r}) could not be loaded ({type(exc).__name__}: {str(exc)[:200]}). Provide "
                f"{os.path.join(data_dir or 'DIR', bench.name + '.jsonl')} with one JSON object per line holding "
                f"`problem` and `answer` (optionally `id`), and pass --data-dir {data_dir or 'DIR'}."
            ) from exc
    return rows[:limit] if limit is not None else rows
