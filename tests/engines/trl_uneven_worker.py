"""Worker for the uneven-rows test (run under torchrun, 2 CPU processes, gloo).

Rank 0 holds 6 rows and rank 1 holds 5; both call ``LambdaGRPOTrainer._gather_group_batch`` and write the error they
got (or ``no error``) to ``<out>/rank<R>.txt``.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import torch
from accelerate import Accelerator

from lgrpo.engines.trl import LambdaGRPOTrainer


def main(out: str) -> None:
    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2, f"expected 2 processes, got {acc.num_processes}"
    rows = 6 - acc.process_index
    ids = torch.arange(rows * 3).reshape(rows, 3)
    trainer = SimpleNamespace(accelerator=acc, num_generations=4, num_generations_eval=4)
    try:
        LambdaGRPOTrainer._gather_group_batch(trainer, ids, torch.ones_like(ids), "train")
        message = "no error"
    except ValueError as e:
        message = str(e)
    with open(os.path.join(out, f"rank{acc.process_index}.txt"), "w", encoding="utf-8") as f:
        f.write(message)
    # both ranks have written; shut gloo down before the interpreter exits (a group left alive can abort the exit
    # with "terminate called without an active exception", which failed this test once in CI)
    acc.wait_for_everyone()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
