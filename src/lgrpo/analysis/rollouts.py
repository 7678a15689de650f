"""Reading a run's rollout log (``rollouts.jsonl``) one step at a time.

The log has one JSON line per completion: ``step``, ``group`` (unique within the step), ``prompt``, ``completion``,
``completion_ids``, ``reward``, ``advantage``. The trainer appends the lines of a step together, so a step is a
contiguous run of lines; :func:`iter_step_blocks` yields those runs without ever holding more than one of them.
A step number that shows up again after other steps (a resumed run re-logging steps, two logs concatenated) is
yielded again as a separate block; the caller decides what to do with it (see ``lgrpo analyze --repeated-steps``).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lgrpo.jsonl import iter_jsonl

__all__ = [
    "ROLLOUTS_FILE",
    "GroupBatch",
    "StepBlock",
    "find_rollouts",
    "iter_step_blocks",
    "load_group",
    "to_batch",
]

ROLLOUTS_FILE = "rollouts.jsonl"
REQUIRED_FIELDS = ("step", "group", "completion_ids")


@dataclass
class StepBlock:
    """The contiguous lines of one step: ``records`` in file order, starting at 1-based line ``first_line``."""

    step: int
    records: list[dict[str, Any]]
    first_line: int


@dataclass
class GroupBatch:
    """Completions as the tensors :mod:`lgrpo.process` takes.

    ids ``[B, T]`` long, mask ``[B, T]`` bool (right padding), group ``[B]`` long (dense index into ``group_keys``),
    rewards ``[B]`` float (NaN where the log has no reward).
    """

    ids: Tensor
    mask: Tensor
    group: Tensor
    rewards: Tensor
    group_keys: list[Any]


def find_rollouts(run_dir: str | os.PathLike[str]) -> Path:
    """``RUN_DIR/rollouts.jsonl`` (or the file itself); ``SystemExit`` with a hint when it is missing."""
    path = Path(run_dir)
    if path.is_file():
        return path
    if not path.is_dir():
        raise SystemExit(f"RUN_DIR: {path} does not exist")
    log = path / ROLLOUTS_FILE
    if not log.is_file():
        raise SystemExit(
            f"RUN_DIR: {path} has no {ROLLOUTS_FILE}; train with rollout_log=True (config `rollout_log: true`) "
            "to write one"
        )
    return log


def _check(rec: dict[str, Any], lineno: int, path: Path) -> dict[str, Any]:
    step = rec["step"]
    if isinstance(step, bool) or not isinstance(step, int):
        raise ValueError(f"{path}:{lineno}: `step` must be an integer, got {step!r}")
    if not isinstance(rec["completion_ids"], list):  # the ids themselves are checked per step, in to_batch
        raise ValueError(f"{path}:{lineno}: `completion_ids` must be a list of integer token ids")
    rec["_line"] = lineno
    return rec


def iter_step_blocks(
    path: str | os.PathLike[str], progress: Callable[[int], None] | None = None
) -> Iterator[StepBlock]:
    """Yield the log's contiguous runs of lines with equal ``step``, streaming.

    ``progress`` is called with the number of bytes read after each line (for a progress bar). Blank lines are
    skipped; a last line cut mid-write (a live or killed run) is dropped with a warning; any other malformed line
    raises ``ValueError`` naming the file and line.
    """
    path = Path(path)
    block: StepBlock | None = None
    for lineno, obj in iter_jsonl(path, REQUIRED_FIELDS, progress=progress):
        rec = _check(obj, lineno, path)
        if block is not None and rec["step"] != block.step:
            yield block
            block = None
        if block is None:
            block = StepBlock(rec["step"], [], lineno)
        block.records.append(rec)
    if block is not None:
        yield block


def _reward(rec: dict[str, Any]) -> float:
    r = rec.get("reward")
    if r is None:
        return math.nan
    try:
        return float(r)
    except (TypeError, ValueError):
        raise ValueError(
            f"line {rec.get('_line', '?')}: `reward` must be a number or null, got {r!r}"
        ) from None


def _group_key(g: Any) -> Any:
    # JSON group ids are ints or strings; lists/dicts would not hash
    return json.dumps(g, sort_keys=True) if isinstance(g, (list, dict)) else g


def to_batch(records: list[dict[str, Any]]) -> GroupBatch:
    """Stack rollout records into right-padded tensors; group ids become dense indices in first-seen order."""
    B = len(records)
    lengths = torch.tensor([len(r["completion_ids"]) for r in records], dtype=torch.long)
    T = int(lengths.max()) if B else 0
    rows = [np.asarray(r["completion_ids"]) for r in records]  # C-speed conversion, one call per completion
    for rec, row in zip(records, rows):
        if row.size and row.dtype.kind not in "iu":  # floats, bools, strings (bool is kind "b")
            raise ValueError(
                f"line {rec.get('_line', '?')}: `completion_ids` must be a list of integer token ids"
            )
    values = (
        torch.from_numpy(np.concatenate(rows).astype(np.int64)) if B else torch.zeros(0, dtype=torch.long)
    )
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T], right padding
    ids = torch.zeros(B, T, dtype=torch.long)
    ids[mask] = values  # row-major order of the mask is the order of the concatenated rows
    keys: dict[Any, int] = {}
    group = torch.tensor(
        [keys.setdefault(_group_key(r["group"]), len(keys)) for r in records], dtype=torch.long
    )
    rewards = torch.tensor([_reward(r) for r in records], dtype=torch.float32)
    return GroupBatch(ids, mask, group, rewards, list(keys))


def load_group(path: str | os.PathLike[str], step: int, group: str) -> list[dict[str, Any]]:
    """The records of one group of one step (``group`` compared as text, so ``--group 3`` matches ``3`` and "3").

    Streams the whole log (a step may reappear later). If the step's lines appear in several blocks that each hold
    the group, the last block's rows are used, as ``lgrpo analyze`` does by default, with a warning. ``SystemExit``
    saying what exists when nothing matches.
    """
    found: list[dict[str, Any]] = []
    blocks_with_group = 0
    lo: int | None = None
    hi: int | None = None
    groups_at_step: list[str] = []
    for block in iter_step_blocks(path):
        lo = block.step if lo is None else min(lo, block.step)
        hi = block.step if hi is None else max(hi, block.step)
        if block.step != step:
            continue
        rows = [rec for rec in block.records if str(rec["group"]) == str(group)]
        if rows:
            found, blocks_with_group = rows, blocks_with_group + 1
        for rec in block.records:
            key = str(rec["group"])
            if key not in groups_at_step:
                groups_at_step.append(key)
    if blocks_with_group > 1:
        print(
            f"warning: step {step} group {group} appears in {blocks_with_group} separate blocks of {path}; "
            "drawing the last one",
            file=sys.stderr,
        )
    if found:
        return found
    if groups_at_step:
        shown = ", ".join(groups_at_step[:20]) + (" …" if len(groups_at_step) > 20 else "")
        raise SystemExit(f"--group: step {step} has no group {group!r}; its groups are: {shown}")
    shown = f"{lo}..{hi}" if lo is not None else "none"
    raise SystemExit(f"--step: {path} has no step {step}; steps logged: {shown}")
