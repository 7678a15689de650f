"""lgrpo: λ-GRPO and GRPO's implicit process reward model."""

from lgrpo.objectives import group_advantages, lambda_weights, policy_loss
from lgrpo.process import (
    ProcessTree,
    process_set_sizes,
    prm_advantages,
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
    "process_set_sizes",
    "prm_advantages",
    "step_rewards",
    "tree_stats",
]
