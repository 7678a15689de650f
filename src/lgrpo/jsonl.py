"""JSON Lines input with errors that name the file and the line (rollout logs, benchmark files, predictions)."""

from __future__ import annotations

import json
from typing import Any


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


def read_jsonl(path: str, required: tuple[str, ...] = (), label: str = "") -> list[dict[str, Any]]:
    """Every object of a JSONL file, each checked by :func:`parse_line` before returning (blank lines skipped).

    Errors name ``label`` (e.g. the flag that gave the file), the file and the line.
    """
    where = f"{label} {path}".strip()
    with open(path, encoding="utf-8") as f:
        return [parse_line(line, n, where, required) for n, line in enumerate(f, 1) if line.strip()]
