"""Worker for the 2-process tests of ``lgrpo train`` (run under torchrun, gloo on CPU).

``train_dist_worker.py GRADS ARGV_JSON``: runs ``lgrpo train`` once per argument list in the JSON list ``ARGV_JSON``
(several configs in one launch), and before every optimizer step saves this rank's gradients of the trainable
parameters to ``GRADS/run<I>-rank<R>-step<S>.pt``. DDP has averaged them across the ranks by then, so the ranks'
copies are equal when the forward passes went through the DDP wrapper.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engines"))

from trl_helpers import SaveGrads

from lgrpo.cli import main as lgrpo_main
from lgrpo.engines.trl import LambdaGRPOTrainer


def main(grads_dir: str, argvs: list[list[str]]) -> int:
    init = LambdaGRPOTrainer.__init__
    prefix = ""

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.add_callback(SaveGrads(prefix))

    LambdaGRPOTrainer.__init__ = patched
    for i, argv in enumerate(argvs):
        prefix = os.path.join(grads_dir, f"run{i}")
        rc = lgrpo_main(["train", *argv])
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], json.loads(sys.argv[2])))
