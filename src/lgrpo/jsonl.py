"""JSON Lines input with errors that name the file and the line (rollout logs, metrics, predictions; data files
through :mod:`lgrpo.data`).

A log is read while it is written or after a kill, so its last line may have been cut mid-write. Such a line (the
last one, with no newline after it, that does not parse) is dropped with a warning; a bad line anywhere else is an
error naming ``file:line``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any


class TruncatedLineWarning(UserWarning):
    """The last line of a JSONL file was cut mid-write and was left out."""


def parse_line(line: str, lineno: int, where: object, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """One JSONL line as a dict holding the ``required`` fields; ``ValueError`` naming ``where:lineno`` otherwise."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}:{lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise ValueError(
            f"{where}:{lineno}: missing field(s) {', '.join(missing)} (need {', '.join(required)})"
        )
    return obj


def iter_jsonl(
    path: str | os.PathLike[str],
    required: tuple[str, ...] = (),
    label: str = "",
    progress: Callable[[int], None] | None = None,
    where: str | None = None,
    allow_cut: bool = True,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream ``(1-based line number, object)`` for every non-blank line, each checked by :func:`parse_line`.

    A last line without a trailing newline that is not valid JSON was cut mid-write (a live or killed run): it is
    skipped with a :class:`TruncatedLineWarning` (``allow_cut=False``, for input files: an error like any other).
    Any other bad line raises ``ValueError`` naming ``label``, the file and the line (``where`` replaces both).
    ``progress`` is called with the number of bytes of each line read (for a progress bar).
    """
    where = f"{label} {os.fspath(path)}".strip() if where is None else where
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if progress is not None:
                progress(len(raw))
            cut = allow_cut and not raw.endswith(b"\n")  # only the file's last line can lack its newline
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                if cut:
                    _warn_cut(where, lineno)
                    return
                raise ValueError(f"{where}:{lineno}: not valid UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = parse_line(line, lineno, where, required)
            except ValueError:
                if cut and not _is_json(line):
                    _warn_cut(where, lineno)
                    return
                raise
            yield lineno, obj


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _warn_cut(where: str, lineno: int) -> None:
    warnings.warn(
        f"{where}:{lineno}: the last line was cut mid-write (a run still writing, or killed); "
        f"read up to line {lineno - 1}",
        TruncatedLineWarning,
        stacklevel=3,
    )


def read_jsonl(
    path: str | os.PathLike[str], required: tuple[str, ...] = (), label: str = ""
) -> list[dict[str, Any]]:
    """Every object of a JSONL file (see :func:`iter_jsonl`: blank lines skipped, a cut last line dropped).

    Errors name ``label`` (e.g. the flag that gave the file), the file and the line.
    """
    return [obj for _, obj in iter_jsonl(path, required, label)]
