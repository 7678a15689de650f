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

from lgrpo.tasks.math_answers import SYSTEM_PROMPT, Verdict, _completion_text, extract_boxed

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
    ``entry`` column when there is one. A completion without an answer scores 0 (not sent to the scorer); a scorer
    that raises scores 0. Through TRL's ``log_metric`` it logs the shares ``reward/no_answer`` and
    ``reward/score_errors`` of each generation batch; :meth:`metrics` gives the running count of scorer errors.
    """

    def __init__(self, dataset: Any, name: str) -> None:
        self.dataset = dataset
        self.__name__ = f"reasoning_gym_{name}"
        self.errors = 0

    def check(self, completion: str, rg_index: int | None = None, entry: dict | None = None) -> Verdict:
        """The verdict on one completion (text) for the problem ``rg_index`` (or the given ``entry``)."""
        item = entry if entry is not None else self.dataset[int(rg_index)]  # type: ignore[arg-type]
        answer = extract_answer(completion)
        if answer is None:
            return Verdict(0.0, "no_answer")
        try:
            return Verdict(float(self.dataset.score_answer(answer=answer, entry=item)), None)
        except Exception as exc:  # a scorer's bug must not stop a run
            self.errors += 1
            return Verdict(0.0, f"error: {type(exc).__name__}")

    def __call__(
        self,
        prompts: Sequence[Any] | None,
        completions: Sequence[Any],
        rg_index: Sequence[int] | None = None,
        entry: Sequence[dict] | None = None,
        log_metric: Any | None = None,
        **kwargs: Any,
    ) -> list[float]:
        if rg_index is None and entry is None:
            raise ValueError(
                "ReasoningGymReward needs the `rg_index` (or `entry`) column of the dataset rows"
            )
        verdicts = [
            self.check(
                _completion_text(c),
                rg_index=None if rg_index is None else rg_index[i],
                entry=None if entry is None else entry[i],
            )
            for i, c in enumerate(completions)
        ]
        if log_metric is not None and verdicts:
            log_metric("reward/no_answer", sum(v.tag == "no_answer" for v in verdicts) / len(verdicts))
            log_metric(
                "reward/score_errors",
                sum((v.tag or "").startswith("error") for v in verdicts) / len(verdicts),
            )
        return [v.score for v in verdicts]

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
