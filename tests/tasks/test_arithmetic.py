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
