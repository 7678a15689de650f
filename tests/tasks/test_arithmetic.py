from lgrpo.tasks import arithmetic


def test_worked_solution_adds_left_to_right():
    p = arithmetic.make_problem([37, 45, 18])
    assert p.prompt == "37+45+18=?\n"
    assert p.solution == "37+45=82\n82+18=100\n\\boxed{100}"
    assert p.answer == "100"


def test_generate_is_deterministic_distinct_and_in_range():
    a = arithmetic.generate(300, n_terms=3, digits=2, seed=1)
    assert a == arithmetic.generate(300, n_terms=3, digits=2, seed=1)
    assert a != arithmetic.generate(300, n_terms=3, digits=2, seed=2)
    assert len({p.prompt for p in a}) == 300
    for p in a:
        terms = [int(t) for t in p.prompt[:-3].split("+")]
        assert len(terms) == 3 and all(10 <= t <= 99 for t in terms)
        assert int(p.answer) == sum(terms)


def test_splits_are_disjoint():
    train, held = arithmetic.splits(2000, 200, n_terms=4, digits=1, seed=0)
    assert len(train) == 2000 and len(held) == 200
    assert not {p.prompt for p in train} & {p.prompt for p in held}


def test_bad_sizes_raise():
    import pytest

    with pytest.raises(ValueError, match="n_terms"):
        arithmetic.generate(1, n_terms=1)
    with pytest.raises(ValueError, match="distinct"):
        arithmetic.generate(101, n_terms=2, digits=1)  # only 10 × 10 problems exist


def test_columns_solution_of_a_hand_worked_problem():
    p = arithmetic.make_problem([37, 45, 18], ["+", "-"], "columns")
    assert p.prompt == "What is 37 + 45 - 18? Show the steps.\n"
    assert p.solution == (
        "Step 1: 37 + 45. Ones: 7 + 5 = 12, write 2, carry 1. Tens: 3 + 4 + 1 = 8. So 37 + 45 = 82.\n"
        "Step 2: 82 - 18. Ones: 2 < 8, borrow 1: 12 - 8 = 4. Tens: 8 - 1 - 1 = 6. So 82 - 18 = 64.\n"
        "The answer is \\boxed{64}."
    )
    assert p.answer == "64"


def test_every_column_statement_is_true():
    """Brute force over many pairs: each `x + y (+ 1) = s` / `x - y (- 1) = d` holds, each `write` digit is the
    ones digit of its sum, and the closing `So a op b = r` is Python's a op b."""
    import random
    import re

    rng = random.Random(0)
    pairs = [(rng.randint(0, 999), rng.randint(0, 999)) for _ in range(400)] + [(100, 7), (1000, 1), (9, 9)]
    for a, b in pairs:
        for op in "+-":
            if op == "-" and a < b:
                a, b = b, a
            text = arithmetic.column_steps(a, op, b)
            for lhs, rhs in re.findall(r"(\d+(?: [+-] \d+)+) = (\d+)", text):
                assert eval(lhs) == int(rhs), (a, op, b, text)  # digits and +/- only
            for s, d in re.findall(r"= (\d+), write (\d)", text):
                assert int(s) % 10 == int(d)
            assert text.endswith(f"So {a} {op} {b} = {a + b if op == '+' else a - b}.")


def test_plus_minus_problems_stay_non_negative_and_use_both_operators():
    import re

    problems = arithmetic.generate(500, n_terms=3, digits=2, seed=3, operators="+-", style="columns")
    seen = set()
    for p in problems:
        expr = re.match(r"What is (.*)\? Show the steps\.\n", p.prompt).group(1)
        tokens = expr.split()
        total = int(tokens[0])
        for op, t in zip(tokens[1::2], tokens[2::2], strict=True):
            total = total + int(t) if op == "+" else total - int(t)
            assert total >= 0
            seen.add(op)
        assert int(p.answer) == total and p.solution.endswith(f"\\boxed{{{total}}}.")
    assert seen == {"+", "-"}
