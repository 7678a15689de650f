"""verl custom reward for the OpenRS example: 1/0 from math-verify on the first ``\\boxed{}`` answer (METHOD.md §10).

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info)`` per response
(``reward.custom_reward_function`` in lambda_grpo_qwen1.5b.yaml); this is lgrpo's checker, time limit included.
The paper stops generation once the first box closes; verl's rollout does not, so the tokens after it are generated
and trained on, while only the first box is scored.
"""

from __future__ import annotations

from typing import Any

from lgrpo.tasks.math_answers import verify


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None, **_: Any
) -> float:
    score, _error = verify(solution_str, ground_truth)
    return score
