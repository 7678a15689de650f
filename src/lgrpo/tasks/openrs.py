"""OpenRS (the paper's RL training set, METHOD.md §10): about 7,000 math problems with fields ``problem`` and
``solution``. The gold answer given to math-verify is the row's ``answer`` field when present, else its ``solution``
(math-verify reads the solution's final boxed answer).

Loaded from a local file/directory (``data.path``, read by :func:`lgrpo.data.read_rows`) or the local Hugging Face
cache, and from the Hub only when it is reachable; otherwise a ``LoadError`` (a ``RuntimeError``) names the dataset id and how to point at a local copy.
"""

from __future__ import annotations

from lgrpo.data import hub_rows, read_rows
from lgrpo.models import LoadError

HUB_ID = "knoveleng/open-rs"


def _rows_from_hub(hub_id: str) -> list[dict]:
    try:
        return hub_rows(hub_id, "train")
    except LoadError as e:
        raise LoadError(
            f"{e}. Save it where you have network (e.g. "
            f"`datasets.load_dataset({hub_id!r}, split='train').to_json('openrs.jsonl')`) and pass "
            "`data.path=/path/to/openrs.jsonl`."
        ) from e


def load_openrs(
    path: str | None = None, hub_id: str = HUB_ID, eval_size: int = 100, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """(train, held-out) rows ``{"problem", "answer"}``; the held-out rows are a seeded random sample."""
    from lgrpo.tasks.task import split_held_out

    source = f"data.path={path!r}" if path else f"dataset {hub_id!r}"
    rows = read_rows(path, ("problem",), source) if path else _rows_from_hub(hub_id)
    if not rows or "problem" not in rows[0] or not ({"solution", "answer"} & set(rows[0])):
        raise LoadError(f"{source}: expected rows with fields 'problem' and 'solution' (or 'answer')")
    items = []
    for i, r in enumerate(rows):
        answer = r.get("answer")
        if answer is None or answer == "":  # an answer of 0 is an answer
            answer = r.get("solution")
        if r.get("problem") is None or answer is None:
            raise LoadError(f"{source}: row {i} lacks 'problem' or both 'solution' and 'answer'")
        items.append({"problem": r["problem"], "answer": str(answer)})
    return split_held_out(items, eval_size, seed, source)
