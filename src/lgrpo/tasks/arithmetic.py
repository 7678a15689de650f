"""A procedural arithmetic task: multi-term sums with worked, step-by-step solutions and exact answers.

A problem is ``a+b+c`` (``n_terms`` numbers of ``digits`` digits). Its worked solution adds left to right, one line per
partial sum, and ends with the answer in ``\\boxed{}`` so the math-answer machinery (extraction, stop-after-boxed)
applies unchanged::

    prompt:     "37+45+18=?\\n"
    solution:   "37+45=82\\n82+18=100\\n\\boxed{100}"
    answer:     "100"

With ``operators="+-"`` each later term is added or subtracted (a subtraction only where the running total stays
non-negative). ``style="columns"`` asks for the steps and writes them digit by digit, one step per operation, the
worked solution a small pretrained model (SmolLM2-135M) is warm-started on (configs/smollm2-135m-reasoning.yaml)::

    prompt:     "What is 37 + 45 - 18? Show the steps.\n"
    solution:   "Step 1: 37 + 45. Ones: 7 + 5 = 12, write 2, carry 1. Tens: 3 + 4 + 1 = 8. So 37 + 45 = 82.\n"
                "Step 2: 82 - 18. Ones: 2 < 8, borrow 1: 12 - 8 = 4. Tens: 8 - 1 - 1 = 6. So 82 - 18 = 64.\n"
                "The answer is \\boxed{64}."

Solutions warm-start a model by supervised fine-tuning; the reward is exact match of the boxed answer
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


STYLES = ("compact", "columns")
COLUMNS = ("Ones", "Tens", "Hundreds", "Thousands", "Ten-thousands", "Hundred-thousands", "Millions")


def column_steps(a: int, op: str, b: int) -> str:
    """``a op b`` (``op`` ``+`` or ``-``, ``a >= b`` for ``-``; both non-negative) worked digit by digit, ones first:
    each column's sum or difference with its carry or borrow, then ``So a op b = result.``"""
    if a < 0 or b < 0 or op not in "+-" or (op == "-" and a < b):
        raise ValueError(
            f"column_steps: expected non-negative a {op} b with a >= b for '-', got {a} {op} {b}"
        )
    da, db = str(a)[::-1], str(b)[::-1]
    parts, carry = [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else None
        name, last = COLUMNS[min(i, len(COLUMNS) - 1)], i == max(len(da), len(db)) - 1
        if op == "+":
            terms = [str(v) for v in (x if i < len(da) else None, y, carry or None) if v is not None]
            total = x + (y or 0) + carry
            if len(terms) == 1:
                parts.append(f"{name}: {terms[0]}.")
            elif total >= 10 and not last:
                parts.append(f"{name}: {' + '.join(terms)} = {total}, write {total % 10}, carry 1.")
            else:
                parts.append(f"{name}: {' + '.join(terms)} = {total}.")
            carry = int(total >= 10)
        else:
            left = " - ".join([str(x), *(["1"] if carry else [])])
            x -= carry
            y = y or 0
            if x < y:
                parts.append(
                    f"{name}: {left if carry else x} < {y}, borrow 1: {x + 10} - {y} = {x + 10 - y}."
                )
                carry = 1
            else:
                shown = f"{left} - {y}" if i < len(db) else left
                parts.append(f"{name}: {shown} = {x - y}." if shown != str(x) else f"{name}: {x}.")
                carry = 0
    result = a + b if op == "+" else a - b
    return f"{' '.join(parts)} So {a} {op} {b} = {result}."


def make_problem(terms: list[int], ops: list[str] | None = None, style: str = "compact") -> Problem:
    """The problem ``terms[0] ops[0] terms[1] ...`` (at least two terms; ``ops`` default all ``+``), with its worked
    solution in ``style`` (``compact``: one ``a+b=c`` line per operation; ``columns``: digit by digit)."""
    if len(terms) < 2:
        raise ValueError(f"a sum needs at least two terms, got {terms}")
    ops = ops or ["+"] * (len(terms) - 1)
    if len(ops) != len(terms) - 1 or any(o not in "+-" or len(o) != 1 for o in ops):
        raise ValueError(f"expected {len(terms) - 1} operators, each '+' or '-', got {ops}")
    if style not in STYLES:
        raise ValueError(f"data.style must be one of {STYLES}, got {style!r}")
    lines, total = [], terms[0]
    for i, (op, t) in enumerate(zip(ops, terms[1:], strict=True), 1):
        new = total + t if op == "+" else total - t
        if style == "compact":
            lines.append(f"{total}{op}{t}={new}")
        else:
            lines.append(f"Step {i}: {total} {op} {t}. {column_steps(total, op, t)}")
        total = new
    if style == "compact":
        lines.append(f"\\boxed{{{total}}}")
        prompt = "".join(f"{o}{t}" for o, t in zip(["", *ops], terms, strict=True)) + "=?\n"
    else:
        lines.append(f"The answer is \\boxed{{{total}}}.")
        expr = " ".join(f"{o} {t}" if o else str(t) for o, t in zip(["", *ops], terms, strict=True))
        prompt = f"What is {expr}? Show the steps.\n"
    return Problem(prompt=prompt, solution="\n".join(lines), answer=str(total))


def _check(n_terms: int, digits: int, operators: str = "+", style: str = "compact") -> None:
    if n_terms < 2:
        raise ValueError(f"data.n_terms must be >= 2, got {n_terms}")
    if not 1 <= digits <= 6:
        raise ValueError(f"data.digits must be in 1..6, got {digits}")
    if operators not in ("+", "+-"):
        raise ValueError(f"data.operators must be '+' or '+-', got {operators!r}")
    if style not in STYLES:
        raise ValueError(f"data.style must be one of {STYLES}, got {style!r}")


def generate(
    n: int,
    n_terms: int = 3,
    digits: int = 2,
    seed: int = 0,
    exclude: set[str] | None = None,
    operators: str = "+",
    style: str = "compact",
) -> list[Problem]:
    """``n`` distinct problems with terms drawn uniformly from the ``digits``-digit numbers; deterministic in ``seed``.

    ``operators="+-"``: each later term is subtracted with probability 1/2 where the running total stays
    non-negative, else added. Problems whose prompt is in ``exclude`` are skipped (used to keep held-out problems
    out of training).
    """
    _check(n_terms, digits, operators, style)
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
        terms = [rng.randint(lo, hi) for _ in range(n_terms)]
        ops, total = [], terms[0]
        for t in terms[1:]:
            ops.append("-" if operators == "+-" and rng.random() < 0.5 and total >= t else "+")
            total += t if ops[-1] == "+" else -t
        p = make_problem(terms, ops, style)
        if p.prompt in seen or p.prompt in exclude:
            continue
        seen.add(p.prompt)
        out.append(p)
    return out


def splits(
    n_train: int,
    n_eval: int,
    n_terms: int = 3,
    digits: int = 2,
    seed: int = 0,
    operators: str = "+",
    style: str = "compact",
) -> tuple[list[Problem], list[Problem]]:
    """Disjoint (train, held-out) problem lists. The held-out set depends on ``seed`` only through its own stream."""
    held_out = generate(n_eval, n_terms, digits, seed=10_000 + seed, operators=operators, style=style)
    exclude = {p.prompt for p in held_out}
    train = generate(n_train, n_terms, digits, seed=seed, exclude=exclude, operators=operators, style=style)
    return train, held_out
