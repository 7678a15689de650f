"""`lgrpo analyze` on synthetic rollout logs whose statistics are worked out by hand (METHOD.md §7, §8)."""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lgrpo.analysis.analyze import analyze_log
from lgrpo.analysis.rollouts import iter_step_blocks
from lgrpo.cli import main
from lgrpo.examples import (
    PAPER_COMPLETIONS,
    PAPER_INTERMEDIATE,
    PAPER_PATH_DEPTHS,
    PAPER_REWARDS,
    PAPER_SET_SIZES,
)

PAPER = list(zip(PAPER_COMPLETIONS, PAPER_REWARDS))  # METHOD.md §7
FLAT = [("AB", 1.0), ("CD", 0.0), ("EF", 0.0)]  # distinct first tokens: a flat tree


def line(step, group, text, reward):
    return {
        "step": step,
        "group": group,
        "prompt": "q",
        "completion": text,
        "completion_ids": [ord(c) for c in text],
        "reward": reward,
        "advantage": 0.0,
    }


def write_log(path: Path, lines: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def step0_lines(step=0):
    # the two groups interleaved: rows of a group need not be adjacent
    paper = [line(step, 7, t, r) for t, r in PAPER]
    flat = [line(step, "g2", t, r) for t, r in FLAT]
    return paper[:3] + flat[:1] + paper[3:] + flat[1:]


def step1_lines(step=1):
    # duplicates XY, XY share position 1 only with each other (a leaf), an unscored row, an empty completion
    return [
        line(step, 0, "XY", 1.0),
        line(step, 0, "XY", 1.0),
        line(step, 0, "XZ", 0.0),
        line(step, 0, "Q", None),
        line(step, 0, "", 0.0),
    ]


def expected_step0():
    depth = [*PAPER_PATH_DEPTHS, 1, 1, 1]
    inter = [*PAPER_INTERMEDIATE, 0.0, 0.0, 0.0]
    sizes = [sum(s) / len(s) for s in PAPER_SET_SIZES] + [1.0, 1.0, 1.0]
    shared = sum(x > 1 for s in PAPER_SET_SIZES for x in s)  # the flat group's 6 tokens all have |λ| = 1
    tokens = sum(len(s) for s in PAPER_SET_SIZES) + 6
    rewards = [r for _, r in PAPER] + [r for _, r in FLAT]
    return {
        "groups": 2,
        "completions": 9,
        "flat_fraction": 0.5,
        "path_depth_mean": statistics.mean(depth),
        "path_depth_median": statistics.median(depth),
        "intermediate_proportion_mean": statistics.mean(inter),
        "intermediate_proportion_median": statistics.median(inter),
        "process_set_size_mean": statistics.mean(sizes),
        "shared_token_fraction": shared / tokens,
        "reward_mean": statistics.mean(rewards),
    }


def expected_step1():
    # |λ| along XY: [3, 2] (X shared by XY, XY, XZ; Y by the two duplicates); XZ: [3, 1]; Q: [1]; the empty row
    # has no tokens and is left out of the per-completion statistics
    depth = [2, 2, 2, 1]
    inter = [0.5, 0.5, 0.5, 0.0]
    sizes = [(3 + 2) / 2, (3 + 2) / 2, (3 + 1) / 2, 1.0]
    return {
        "groups": 1,
        "completions": 5,
        "flat_fraction": 0.0,
        "path_depth_mean": statistics.mean(depth),
        "path_depth_median": statistics.median(depth),
        "intermediate_proportion_mean": statistics.mean(inter),
        "intermediate_proportion_median": statistics.median(inter),
        "process_set_size_mean": statistics.mean(sizes),
        "shared_token_fraction": 5 / 7,  # X, Y, X, Y, X of XY, XY, XZ, Q
        "reward_mean": statistics.mean([1.0, 1.0, 0.0, 0.0]),  # the null reward is left out
    }


def check(got: dict, want: dict):
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k


def test_known_statistics(tmp_path):
    log = write_log(tmp_path / "run" / "rollouts.jsonl", step0_lines() + step1_lines())
    result = analyze_log(log)
    assert [s["step"] for s in result["steps"]] == [0, 1]
    check(result["steps"][0], expected_step0())
    check(result["steps"][1], expected_step1())
    assert result["repeated"] == []


def test_streams_one_step_at_a_time(tmp_path):
    # a broken line inside step 1 must not stop step 0 from being yielded first: the reader is lazy
    log = tmp_path / "rollouts.jsonl"
    good = step0_lines() + step1_lines()[:1]
    log.write_text("".join(json.dumps(x) + "\n" for x in good) + '{"step": 1, "group": 0}\n')
    blocks = iter_step_blocks(log)
    first = next(blocks)
    assert first.step == 0 and len(first.records) == 9
    with pytest.raises(ValueError, match=r"rollouts.jsonl:11: missing field\(s\) completion_ids"):
        next(blocks)


def test_a_log_cut_mid_line_is_read_up_to_its_last_complete_line(tmp_path, capsys):
    """A live or killed run: the writer stopped inside a line of step 2. `lgrpo analyze` reads steps 0 and 1 (the
    hand-worked values) and warns; the same cut inside the file is an error naming the line."""
    log = write_log(tmp_path / "run" / "rollouts.jsonl", step0_lines() + step1_lines())
    whole = log.read_text()
    log.write_text(whole + json.dumps(line(2, 0, "AB", 1.0))[:30])
    with pytest.warns(UserWarning, match=r"rollouts\.jsonl:15: the last line was cut"):
        assert main(["analyze", str(tmp_path / "run"), "--out", str(tmp_path / "a")]) == 0
    result = json.loads((tmp_path / "a" / "prm_stats.json").read_text())
    assert [s["step"] for s in result["steps"]] == [0, 1]
    check(result["steps"][0], expected_step0())
    check(result["steps"][1], expected_step1())
    log.write_text(whole.replace("\n", "\n" + json.dumps(line(2, 0, "AB", 1.0))[:30] + "\n", 1))
    with pytest.raises(ValueError, match=r"rollouts\.jsonl:2: not valid JSON"):
        analyze_log(log)


def test_repeated_step(tmp_path):
    # step 0, step 1, then step 0 again with a different group (a resumed run, or two logs concatenated)
    again = [line(0, "late", t, r) for t, r in FLAT]
    log = write_log(tmp_path / "rollouts.jsonl", step0_lines() + step1_lines() + again)

    last = analyze_log(log, "last")
    assert last["repeated"] == [{"step": 0, "line": 15, "action": "last"}]
    s0 = last["steps"][0]
    assert (s0["groups"], s0["flat_fraction"], s0["path_depth_mean"]) == (1, 1.0, 1.0)

    merged = analyze_log(log, "merge")["steps"][0]
    want = expected_step0()
    assert merged["groups"] == 3 and merged["completions"] == 12
    assert merged["flat_fraction"] == pytest.approx(2 / 3)
    assert merged["path_depth_mean"] == pytest.approx((want["path_depth_mean"] * 9 + 3) / 12)

    with pytest.raises(ValueError, match="step 0 reappears"):
        analyze_log(log, "error")

    clash = write_log(tmp_path / "clash.jsonl", step0_lines() + step1_lines() + [line(0, 7, "ZZ", 1.0)])
    with pytest.raises(ValueError, match=r"group.*7.*cannot be merged"):
        analyze_log(clash, "merge")


def test_cli_writes_json_and_figure(tmp_path, capsys):
    run = tmp_path / "run"
    write_log(run / "rollouts.jsonl", step0_lines(0) + step1_lines(1) + step0_lines(2))
    assert main(["analyze", str(run), "--no-progress", "--out", str(tmp_path / "out")]) == 0
    stats = json.loads((tmp_path / "out" / "prm_stats.json").read_text())
    assert [s["step"] for s in stats["steps"]] == [0, 1, 2]
    check(stats["steps"][2], expected_step0())
    png = (tmp_path / "out" / "prm_stats.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "3 steps" in capsys.readouterr().out


def test_missing_log_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match=r"no rollouts\.jsonl; train with rollout_log=True"):
        main(["analyze", str(tmp_path)])
    bad = write_log(tmp_path / "r" / "rollouts.jsonl", [{"step": "x", "group": 0, "completion_ids": []}])
    with pytest.raises(SystemExit, match="`step` must be an integer"):
        main(["analyze", str(bad.parent), "--no-progress"])
    floats = write_log(
        tmp_path / "f" / "rollouts.jsonl",
        [line(0, 0, "ab", 1.0), {**line(0, 0, "c", 0.0), "completion_ids": [1.5]}],
    )
    with pytest.raises(SystemExit, match="line 2: `completion_ids` must be a list of integer token ids"):
        main(["analyze", str(floats.parent), "--no-progress"])


def brute_force_step(rows: list[tuple[object, list[int], float]]) -> dict:
    """Per-step statistics straight from the definitions (METHOD.md §2, §8), O(k²·T) per group."""
    depth, inter, size_mean, flat_groups, groups = [], [], [], 0, sorted({g for g, _, _ in rows}, key=str)
    shared = tokens = 0
    for g in groups:
        seqs = [s for gg, s, _ in rows if gg == g]
        group_flat = True
        for s in seqs:
            sizes = [sum(len(o) > t and o[: t + 1] == s[: t + 1] for o in seqs) for t in range(len(s))]
            group_flat &= all(x == 1 for x in sizes)
            shared += sum(x > 1 for x in sizes)
            tokens += len(s)
            if not s:
                continue
            dups = sum(o == s for o in seqs)
            depth.append(1 + sum(a != b for a, b in itertools.pairwise(sizes)))
            inter.append(sum(x > dups for x in sizes) / len(s))
            size_mean.append(sum(sizes) / len(s))
        flat_groups += group_flat
    return {
        "groups": len(groups),
        "completions": len(rows),
        "flat_fraction": flat_groups / len(groups),
        "path_depth_mean": statistics.mean(depth),
        "path_depth_median": statistics.median(depth),
        "intermediate_proportion_mean": statistics.mean(inter),
        "intermediate_proportion_median": statistics.median(inter),
        "process_set_size_mean": statistics.mean(size_mean),
        "shared_token_fraction": shared / tokens,
        "reward_mean": statistics.mean(r for _, _, r in rows),
    }


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from([0, 1, "b"]), st.lists(st.integers(0, 2), min_size=1, max_size=6),
                           st.sampled_from([0.0, 0.5, 1.0])), min_size=1, max_size=9),
        min_size=1, max_size=3,
    )
)  # fmt: skip
def test_matches_brute_force(tmp_path_factory, steps):
    lines = [
        {"step": k, "group": g, "completion_ids": ids, "reward": r}
        for k, rows in enumerate(steps)
        for g, ids, r in rows
    ]
    log = write_log(tmp_path_factory.mktemp("bf") / "rollouts.jsonl", lines)
    got = analyze_log(log)["steps"]
    assert len(got) == len(steps)
    for k, rows in enumerate(steps):
        check(got[k], brute_force_step(rows))
