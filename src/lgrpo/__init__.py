"""lgrpo: λ-GRPO and GRPO's implicit process reward model."""

from lgrpo.objectives import group_advantages, lambda_weights, policy_loss
from lgrpo.process import (
    ProcessTree,
    prm_advantages,
    process_set_sizes,
    step_rewards,
    tree_stats,
)

__version__ = "0.1.0"

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
