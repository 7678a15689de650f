"""One reader for every data file lgrpo takes, and the gold answers in them.

Every route reads through :func:`read_rows`: ``lgrpo train data.task=file data.path=FILE`` (and ``data.task=openrs
data.path=FILE``), ``lgrpo eval --benchmarks NAME=FILE`` and ``lgrpo eval --data-dir DIR`` (``DIR/<name>.jsonl``).

Formats:

- ``.jsonl``: one JSON object per line (blank lines skipped);
- ``.json``: a JSON array of objects, or one object per line;
- ``.parquet``: read with pyarrow (which ``datasets`` installs);
- a folder saved by ``datasets`` (``save_to_disk``; its ``train`` split, or its only one), or a folder of the files
  above (read in sorted order, concatenated).

Any other file name is read as JSON. Whatever is wrong with a file is one :class:`DataError` (a ``ValueError``) whose
message starts with ``where`` (the argument that gave the file, e.g. ``data.path=FILE``) and names the line (JSON
lines) or row (0-based, other formats): a missing file, an empty one, a line that is not JSON or not an object, a row
without a required field (or with it null). Nothing is cached or written.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from lgrpo.jsonl import iter_jsonl
from lgrpo.models import LoadError

__all__ = [
    "ANSWER_FORMATS",
    "FORMATS",
    "DataError",
    "answer_text",
    "gold_and_solution",
    "gold_answer",
    "read_rows",
]

FORMATS = (".jsonl", ".json", ".parquet")


class DataError(LoadError, ValueError):
    """A data file cannot be used; the message names the argument, the file, and the line or row.

    A :class:`lgrpo.models.LoadError` (data that could not be loaded) and a ``ValueError`` (bad input), so every
    command reports it as its own error line."""


def read_rows(
    path: str | os.PathLike[str],
    fields: Sequence[str] = (),
    where: str | None = None,
    hint: str = "",
    located: bool = False,
) -> list[Any]:
    """The rows (dicts) of the data file or folder ``path``, each holding every field in ``fields`` (not null).

    Args:
        path: a ``.jsonl``/``.json``/``.parquet`` file, a ``datasets`` folder or a folder of such files.
        fields: the fields every row must have.
        where: how errors name the file (default: ``path``), e.g. ``"data.path=train.jsonl"``.
        hint: appended to a missing-field error, e.g. which option names the fields.
        located: return ``(location, row)`` pairs, ``location`` being ``"<where>:<line>"`` or ``"<where> row <i>"``,
            for the caller's own per-row errors.

    Raises :class:`DataError` for a missing path, a file with no rows, a malformed line or row, or a missing field.
    """
    where = os.fspath(path) if where is None else where
    p = Path(path)
    if p.is_dir():
        rows = _read_folder(p, where)
    elif p.is_file():
        rows = _read_file(p, where)
    else:
        raise DataError(f"{where}: no such file or directory")
    if not rows:
        raise DataError(f"{where}: holds no problems (no rows)")
    for loc, row in rows:
        missing = [f for f in fields if f not in row]
        if missing:
            have = ", ".join(map(str, row)) or "none"
            raise DataError(
                f"{loc}: no field {', '.join(map(repr, missing))} (fields: {have})"
                + (f"; {hint}" if hint else "")
            )
        null = [f for f in fields if row[f] is None]
        if null:
            raise DataError(f"{loc}: field {', '.join(map(repr, null))} is null")
    return rows if located else [row for _, row in rows]


def _read_file(p: Path, where: str) -> list[tuple[str, dict[str, Any]]]:
    if p.suffix == ".parquet":
        return _read_parquet(p, where)
    if p.suffix == ".json":
        head = _first_char(p)
        if head == "[":  # a JSON array; anything else is read as JSON lines
            return _read_json_array(p, where)
    try:
        return [(f"{where}:{n}", obj) for n, obj in iter_jsonl(p, where=where, allow_cut=False)]
    except OSError as e:
        raise DataError(f"{where}: cannot be read ({e.strerror or e})") from None
    except ValueError as e:
        raise DataError(str(e)) from None


def _first_char(p: Path) -> str:
    with open(p, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1].decode("latin-1")


def _read_json_array(p: Path, where: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        items = json.loads(p.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError(f"{where}: not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{where}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(items, list):
        raise DataError(f"{where}: expected a JSON array of objects, got {type(items).__name__}")
    return _objects(items, where)


def _objects(items: list[Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for i, obj in enumerate(items):
        if not isinstance(obj, dict):
            raise DataError(f"{where} row {i}: expected an object, got {type(obj).__name__}")
        rows.append((f"{where} row {i}", obj))
    return rows


def _read_parquet(p: Path, where: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - datasets installs pyarrow
        raise DataError(f"{where}: reading .parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(p)
    except Exception as e:  # pyarrow's ArrowInvalid / OSError on a file that is not parquet
        raise DataError(f"{where}: not a readable parquet file ({e})") from None
    return _objects(table.to_pylist(), where)


def _read_folder(p: Path, where: str) -> list[tuple[str, dict[str, Any]]]:
    saved = any((p / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json"))
    if saved:
        return _read_saved_dataset(p, where)
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in FORMATS)
    if not files:
        raise DataError(
            f"{where}: a folder with no {'/'.join(FORMATS)} files, and not a dataset saved by `datasets`"
        )
    rows = []
    for f in files:
        rows += _read_file(f, f"{where}: {f.relative_to(p)}")
    return rows


def _read_saved_dataset(p: Path, where: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        from datasets import DatasetDict, load_from_disk
    except ImportError:
        raise DataError(
            f"{where}: a folder saved by `datasets`, which is not installed (pip install datasets)"
        ) from None
    state = p / "state.json"
    try:  # a Dataset saved with no rows has no data file, which load_from_disk cannot open
        if state.is_file() and json.loads(state.read_text()).get("_data_files") == []:
            return []
    except (OSError, ValueError):
        pass  # load_from_disk says what is wrong
    try:
        ds = load_from_disk(str(p))
        if isinstance(ds, DatasetDict):
            splits = list(ds)
            if "train" not in splits and len(splits) > 1:
                raise DataError(
                    f"{where}: a DatasetDict with splits {', '.join(splits)} and no 'train' split"
                )
            ds = ds["train" if "train" in splits else splits[0]]
        items = ds.to_list()
    except DataError:
        raise
    except Exception as e:  # a damaged folder: datasets raises FileNotFoundError, ValueError or Arrow errors
        raise DataError(
            f"{where}: cannot be loaded by datasets.load_from_disk ({type(e).__name__}: {e})"
        ) from None
    return _objects(items, where)


# ----------------------------------------------------------------------------------------------------------------
# Hub datasets


def hub_rows(hub_id: str, split: str = "train") -> list[dict[str, Any]]:
    """The rows of the Hugging Face Hub dataset ``hub_id`` (``split``), loaded with ``datasets``.

    When the Hub answers (:func:`lgrpo.models.hub_reachable`: a TCP connect, at most 3 s) it is an ordinary
    ``load_dataset`` (the local cache, updated from the Hub). When it does not (no network, or ``HF_HUB_OFFLINE=1``)
    only the local cache is read, in offline mode, so a dataset that is not cached fails at once rather than after
    the Hub client's retries. Raises :class:`lgrpo.models.LoadError` saying which of the two failed.
    """
    from datasets import load_dataset

    from lgrpo.models import hub_reachable

    online = hub_reachable()
    with nullcontext() if online else _offline():
        try:
            return list(load_dataset(hub_id, split=split))
        except Exception as e:
            if online:
                why = f"the Hub dataset {hub_id!r} (split {split!r}) could not be loaded: {type(e).__name__}: {e}"
            else:
                why = (
                    f"the dataset {hub_id!r} (split {split!r}) is not in the local Hugging Face cache and the Hub "
                    f"cannot be reached ({type(e).__name__})"
                )
            raise LoadError(why) from e


@contextmanager
def _offline() -> Iterator[None]:
    """``datasets`` and ``huggingface_hub`` in offline mode (no network call) while active."""
    import datasets.config
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


# ----------------------------------------------------------------------------------------------------------------
# gold answers


def answer_text(value: Any) -> str:
    """A gold answer as text: lists joined with ``", "``, whole floats as integers (``27.0`` → ``27``)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(answer_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # AMC23 stores 27 as 27.0
    return str(value).strip()


_GSM8K_CALC_RE = re.compile(r"<<[^<>]*>>")
ANSWER_FORMATS = ("plain", "gsm8k")


def gold_answer(value: Any, answer_format: str = "plain", where: str = "answer") -> str:
    """The gold answer of an answer field: ``plain``: the field as text (:func:`answer_text`); ``gsm8k``: the text
    after the last ``####`` (GSM8K's ``reasoning\\n#### 42``; thousands commas dropped). ``ValueError`` naming
    ``where`` when a gsm8k answer has no ``####``."""
    return gold_and_solution(value, answer_format, where)[0]


def gold_and_solution(value: Any, answer_format: str, where: str) -> tuple[str, str | None]:
    """(gold answer, worked solution or None); a gsm8k answer's reasoning, calculator notes removed, becomes a
    solution that ends in the boxed answer (the format the model is asked for)."""
    text = answer_text(value)
    if answer_format == "plain":
        return text, None
    if answer_format != "gsm8k":
        raise ValueError(f"{where}: answer format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    reasoning, sep, final = text.rpartition("####")
    if not sep or not final.strip():
        raise ValueError(
            f"{where}: answer format gsm8k expects an answer ending in '#### <answer>', got {text!r}"
        )
    gold = final.strip().replace(",", "")
    # GSM8K's calculator annotations (<<48/2=24>>) are not part of the written solution
    steps = _GSM8K_CALC_RE.sub("", reasoning).strip()
    return gold, f"{steps}\n\\boxed{{{gold}}}" if steps else f"\\boxed{{{gold}}}"
