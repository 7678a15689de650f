"""Any reasoning-gym dataset as lgrpo prompts plus a TRL reward function that calls the dataset's own scorer.

reasoning-gym (https://github.com/open-thought/reasoning-gym) generates its problems procedurally, offline, from a
seed. The model is asked for its final answer in ``\\boxed{}`` (as in the math task); ``<answer>...</answer>``, the
format reasoning-gym's own prompts ask for, is accepted too.

    rows, reward = reasoning_gym_dataset("chain_sum", size=500, seed=0, min_terms=2, max_terms=3)
    trainer = LambdaGRPOTrainer(..., train_dataset=datasets.Dataset.from_list(drop_entries(rows)),
                                reward_funcs=[reward])
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from lgrpo.tasks.math_answers import SYSTEM_PROMPT, _completion_text, extract_boxed

_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(completion: str) -> str | None:
    """The first ``\\boxed{}`` answer of a completion, else its first ``<answer>...</answer>``, else None."""
    boxed = extract_boxed(completion)
    if boxed is not None:
        return boxed
    match = _ANSWER_TAG_RE.search(completion)
    return None if match is None else match.group(1).strip()


class ReasoningGymReward:
    """TRL reward function: the reasoning-gym dataset's ``score_answer`` on each completion's answer.

    Finds the problem from the ``rg_index`` column (TRL passes dataset columns as keyword arguments), or from an
    ``entry`` column when there is one. A scorer that raises scores 0 and is counted in ``reward/score_errors``.
    """

    def __init__(self, dataset: Any, name: str) -> None:
        self.dataset = dataset
        self.__name__ = f"reasoning_gym_{name}"
        self.errors = 0

    def __call__(
        self,
        prompts: Sequence[Any] | None,
        completions: Sequence[Any],
        rg_index: Sequence[int] | None = None,
        entry: Sequence[dict] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        if rg_index is None and entry is None:
            raise ValueError(
                "ReasoningGymReward needs the `rg_index` (or `entry`) column of the dataset rows"
            )
        rewards = []
        for i, completion in enumerate(completions):
            item = entry[i] if entry is not None else self.dataset[int(rg_index[i])]  # type: ignore[index]
            answer = extract_answer(_completion_text(completion))
            try:
                score = (
                    float(self.dataset.score_answer(answer=answer, entry=item)) if answer is not None else 0.0
                )
            except Exception:  # a scorer's bug must not stop a run
                self.errors += 1
                score = 0.0
            rewards.append(score)
        return rewards

    def metrics(self) -> dict[str, float]:
        return {"reward/score_errors": self.errors}


def reasoning_gym_dataset(
    name: str, size: int = 500, seed: int = 0, *, system_prompt: str | None = SYSTEM_PROMPT, **cfg: Any
) -> tuple[list[dict[str, Any]], ReasoningGymReward]:
    """Build ``size`` problems of reasoning-gym dataset ``name`` (``cfg`` goes to its config) and its reward.

    Returns ``(rows, reward)``: each row has ``prompt`` (chat messages: the system prompt, then the question),
    ``answer`` (the reference answer as a string), ``rg_index`` (the problem's index) and ``entry`` (the full
    reasoning-gym entry, whose metadata the scorer may need; :func:`drop_entries` removes it for ``datasets``).
    """
    try:
        import reasoning_gym
    except ImportError as exc:
        raise SystemExit("the reasoning-gym adapter needs `pip install reasoning-gym`") from exc
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    try:
        dataset = reasoning_gym.create_dataset(name, size=size, seed=seed, **cfg)
    except Exception as exc:
        from reasoning_gym.factory import DATASETS

        if name not in DATASETS:
            raise ValueError(
                f"unknown reasoning-gym dataset {name!r}; known ones include: {', '.join(sorted(DATASETS)[:40])}, …"
            ) from exc
        raise ValueError(f"reasoning-gym dataset {name!r} rejected its config {cfg}: {exc}") from exc
    rows = []
    for i in range(size):
        entry = dataset[i]
        messages = [{"role": "user", "content": entry["question"]}]
        if system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
        rows.append({"prompt": messages, "answer": str(entry["answer"]), "rg_index": i, "entry": entry})
    return rows, ReasoningGymReward(dataset, name)


def drop_entries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the ``entry`` column, whose nested metadata Arrow cannot always store (the reward uses
    ``rg_index`` instead)."""
    return [{k: v for k, v in row.items() if k != "entry"} for row in rows]
