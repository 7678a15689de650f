"""lgrpo: λ-GRPO and GRPO's implicit process reward model.

The names below are imported on first use (PEP 562), so that ``import lgrpo`` and the ``lgrpo`` command line start
without torch: the command line sets OpenMP's wait policy before torch loads (:func:`lgrpo.cli.main`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "group_advantages": "lgrpo.objectives",
    "lambda_weights": "lgrpo.objectives",
    "policy_loss": "lgrpo.objectives",
    "ProcessTree": "lgrpo.process",
    "prm_advantages": "lgrpo.process",
    "process_set_sizes": "lgrpo.process",
    "step_rewards": "lgrpo.process",
    "tree_stats": "lgrpo.process",
}

if TYPE_CHECKING:
    from lgrpo.objectives import group_advantages, lambda_weights, policy_loss
    from lgrpo.process import ProcessTree, prm_advantages, process_set_sizes, step_rewards, tree_stats


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lgrpo' has no attribute {name!r}")


__all__ = [
    "ProcessTree",
    "__version__",
    "group_advantages",
    "lambda_weights",
    "policy_loss",
    "prm_advantages",
    "process_set_sizes",
    "step_rewards",
    "tree_stats",
]
