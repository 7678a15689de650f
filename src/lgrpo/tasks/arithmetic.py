"""A procedural arithmetic task: multi-term sums with worked, step-by-step solutions and exact answers.

A problem is ``a+b+c`` (``n_terms`` numbers of ``digits`` digits). Its worked solution adds left to right, one line per
partial sum, and ends with the answer in ``\\boxed{}`` so the math-answer machinery (extraction, stop-after-boxed)
applies unchanged::

    prompt:     "37+45+18=?\\n"
    solution:   "37+45=82\\n82+18=100\\n\\boxed{100}"
    answer:     "100"

Solutions warm-start a tiny model by supervised fine-tuning; the reward is exact match of the boxed answer
(:func:`lgrpo.tasks.task.exact_check`) or math-verify.
Train and held-out problems come from disjoint random streams and never overlap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    prompt: str
    solution: str
    answer: str


def make_problem(terms: list[int]) -> Problem:
    """The problem summing ``terms`` (at least two), with its worked solution."""
    if len(terms) < 2:
        raise ValueError(f"a sum needs at least two terms, got {terms}")
    lines, total = [], terms[0]
    for t in terms[1:]:
        lines.append(f"{total}+{t}={total + t}")
        total += t
    lines.append(f"\\boxed{{{total}}}")
    return Problem(prompt="+".join(map(str, terms)) + "=?\n", solution="\n".join(lines), answer=str(total))


def _check(n_terms: int, digits: int) -> None:
    if n_terms < 2:
        raise ValueError(f"data.n_terms must be >= 2, got {n_terms}")
    if not 1 <= digits <= 6:
        raise ValueError(f"data.digits must be in 1..6, got {digits}")


def generate(
    n: int, n_terms: int = 3, digits: int = 2, seed: int = 0, exclude: set[str] | None = None
) -> list[Problem]:
    """``n`` distinct problems with terms drawn uniformly from the ``digits``-digit numbers; deterministic in ``seed``.

    Problems whose prompt is in ``exclude`` are skipped (used to keep held-out problems out of training).
    """
    _check(n_terms, digits)
    lo, hi = 10 ** (digits - 1), 10**digits - 1
    if digits == 1:
        lo = 0
    space = (hi - lo + 1) ** n_terms
    exclude = exclude or set()
    if n > space - len(exclude):
        raise ValueError(f"asked for {n} distinct problems but only {space - len(exclude)} exist")
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Problem] = []
    while len(out) < n:
        p = make_problem([rng.randint(lo, hi) for _ in range(n_terms)])
        if p.prompt in seen or p.prompt in exclude:
            continue
        seen.add(p.prompt)
        out.append(p)
    return out


def splits(
    n_train: int, n_eval: int, n_terms: int = 3, digits: int = 2, seed: int = 0
) -> tuple[list[Problem], list[Problem]]:
    """Disjoint (train, held-out) problem lists. The held-out set depends on ``seed`` only through its own stream."""
    held_out = generate(n_eval, n_terms, digits, seed=10_000 + seed)
    train = generate(n_train, n_terms, digits, seed=seed, exclude={p.prompt for p in held_out})
    return train, held_out
