"""`lgrpo report` on tiny synthetic runs whose peak accuracies and steps are known."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lgrpo.analysis.report import _plot_key, load_run, smooth_window
from lgrpo.cli import main

# eval/accuracy per step; the training lines carry reward and prm/* metrics
ACC = {
    ("grpo", 0): {0: 0.10, 5: 0.30, 10: 0.20},  # peak 0.30 at 5
    ("grpo", 1): {0: 0.10, 5: 0.20, 10: 0.40},  # peak 0.40 at 10
    ("lambda", 0): {0: 0.10, 5: 0.50, 10: 0.50},  # peak 0.50, first reached at 5
    ("lambda", 1): {0: 0.20, 5: 0.60, 10: 0.30},  # peak 0.60 at 5
}


def write_run(path: Path, arm: str, seed: int, acc: dict[int, float], with_summary: bool = True) -> Path:
    path.mkdir(parents=True)
    lines = []
    for step in range(11):
        line = {
            "step": step,
            "reward": 0.1 * step + seed,
            "loss": 0.0,
            "prm/flat_fraction": 0.5,
            "prm/path_depth_mean": 1 + step / 10,
        }
        lines.append(line)
        if step in acc:
            lines.append({"step": step, "eval/accuracy": acc[step]})
    (path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    weighting = {"grpo": "uniform", "lambda": "lambda"}[arm]
    (path / "config.yaml").write_text(f"seed: {seed}\nweighting: {weighting}\nlambda_power: 1.0\n")
    if with_summary:
        summary = {
            "accuracy_before": acc[0],
            "accuracy_after": acc[10],
            "seconds": 12.0,
            "weighting": weighting,
            "lambda_power": 1.0,
            "seed": seed,
        }
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def table_row(report: str, arm: str) -> list[str]:
    section = report.split("## Peak held-out accuracy")[1]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == arm:
            return cells
    raise AssertionError(f"no row for {arm} in the peak table")


def test_compare_dir_two_arms_two_seeds(tmp_path):
    cmp = tmp_path / "cmp"
    for (arm, seed), acc in ACC.items():
        write_run(cmp / f"{arm}-seed{seed}", arm, seed, acc, with_summary=(arm, seed) != ("lambda", 1))
    (cmp / "comparison.json").write_text("{}")
    out = tmp_path / "rep"
    # λ-GRPO seed 1 has no summary.json (as if still running): counted only with --include-unfinished
    assert main(["report", str(cmp), "--out", str(out), "--include-unfinished"]) == 0
    report = (out / "report.md").read_text()

    # columns: arm | seeds | peak accuracy | step at peak | mean-curve peak (step) | final | before → after
    grpo = table_row(report, "GRPO")
    assert grpo[1] == "2"
    assert grpo[2] == "0.3500 ± 0.0707"  # mean of 0.30 and 0.40, sample std
    assert grpo[3] == "7.5 ± 3.5 s.d. (5, 10)"  # steps 5 and 10: mean 7.5, sample s.d. √12.5 = 3.54
    assert grpo[4] == "0.3000 (10)"  # mean curve 0.10, 0.25, 0.30
    assert grpo[5] == "0.3000"  # final values 0.20 and 0.40
    lam = table_row(report, "λ-GRPO")
    assert lam[2] == "0.5500 ± 0.0707" and lam[3] == "5 (all 2 seeds)" and lam[4] == "0.5500 (5)"
    assert lam[6] == "0.1000 → 0.5000"  # only seed 0 has a summary.json; seed 1's arm came from config.yaml

    for png in ("curves.png", "prm.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f"]({png})" in report
    peaks = json.loads((out / "report.json").read_text())["peaks"]
    assert [p["arm"] for p in peaks] == ["GRPO", "λ-GRPO"]
    assert peaks[0]["peak_step_mean"] == pytest.approx(7.5)


def test_two_run_dirs_and_errors(tmp_path):
    a = write_run(tmp_path / "a", "grpo", 0, ACC[("grpo", 0)])
    b = write_run(tmp_path / "b", "lambda", 3, ACC[("lambda", 0)])
    out = tmp_path / "rep"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert table_row(report, "GRPO")[2:4] == ["0.3000", "5"]  # one seed: no ±, an integer step
    assert table_row(report, "λ-GRPO")[2:4] == ["0.5000", "5"]
    assert re.search(r"\| λ-GRPO \| 3 \| `.*b` \| 0\.1000 → 0\.5000 \| – \| – \| 12 \|", report)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match=r"empty is not a run directory .*<arm>-seed<S>/"):
        main(["report", str(a), str(empty), "--out", str(out)])
    with pytest.raises(SystemExit, match="is not a directory"):
        main(["report", str(tmp_path / "nope")])


def test_a_live_run_with_a_cut_last_line_is_reported(tmp_path):
    """A run still writing (no summary, the last metrics line cut mid-write) reports up to its last complete line;
    a bad line inside the log is an error naming file:line."""
    a = write_run(tmp_path / "a", "grpo", 0, ACC[("grpo", 0)], with_summary=False)
    metrics = a / "metrics.jsonl"
    whole = metrics.read_text()
    metrics.write_text(whole + '{"step": 11, "eval/accuracy": 0.9')
    out = tmp_path / "rep"
    with pytest.warns(UserWarning, match=r"metrics\.jsonl:\d+: the last line was cut"):
        assert main(["report", str(a), "--out", str(out)]) == 0
    assert table_row((out / "report.md").read_text(), "GRPO")[2:4] == ["0.3000", "5"]  # not 0.9 at step 11
    metrics.write_text('{"step": 0, "rew\n' + whole)
    with pytest.raises(SystemExit, match=r"metrics\.jsonl:1: not valid JSON"):
        main(["report", str(a), "--out", str(out)])


def test_an_unfinished_seed_is_left_out_beside_finished_ones(tmp_path, capsys):
    """A study still running: grpo seed 1 has only its step-0 accuracy (0.9, above every finished peak). Counted, it
    would be seed 1's peak at step 0; it is left out with a warning unless --include-unfinished."""
    write_run(tmp_path / "grpo-seed0", "grpo", 0, ACC[("grpo", 0)])
    live = tmp_path / "grpo-seed1"
    live.mkdir()
    (live / "metrics.jsonl").write_text(json.dumps({"step": 0, "eval/accuracy": 0.9}) + "\n")
    (live / "config.yaml").write_text("seed: 1\nweighting: uniform\nlambda_power: 1.0\n")
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path), "--out", str(out)]) == 0
    assert "grpo-seed1 has no summary.json" in capsys.readouterr().err
    assert table_row((out / "report.md").read_text(), "GRPO")[1:4] == ["1", "0.3000", "5"]
    assert main(["report", str(tmp_path), "--out", str(out), "--include-unfinished"]) == 0
    assert table_row((out / "report.md").read_text(), "GRPO")[1:3] == ["2", "0.6000 ± 0.4243"]  # 0.3, 0.9


@pytest.mark.parametrize(
    ("smooth", "n", "want"), [(0, 400, 20), (0, 10, 1), (0, 30, 2), (5, 400, 5), (1, 400, 1)]
)
def test_smooth_window(smooth, n, want):
    assert smooth_window(smooth, n) == want


def test_curves_show_the_raw_series_faintly_under_its_moving_average(tmp_path):
    """Two seeds of one arm: the faint line is the per-step mean over seeds, the solid one its trailing mean over 3
    steps (worked out here by hand from write_run's rewards 0.1·step + seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [load_run(write_run(tmp_path / f"grpo-seed{s}", "grpo", s, ACC[("grpo", s)])) for s in (0, 1)]
    fig, ax = plt.subplots()
    assert _plot_key(ax, {"GRPO": runs}, {"GRPO": "C0"}, "reward", smooth=3)
    raw, solid = ax.get_lines()
    mean = [0.1 * step + 0.5 for step in range(11)]  # seeds 0 and 1
    want = [sum(mean[max(0, i - 2) : i + 1]) / len(mean[max(0, i - 2) : i + 1]) for i in range(11)]
    assert raw.get_alpha() < 0.5 and (solid.get_alpha() or 1.0) == 1.0
    assert list(raw.get_ydata()) == pytest.approx(mean)
    assert list(solid.get_ydata()) == pytest.approx(want)
    ax.clear()
    _plot_key(ax, {"GRPO": runs}, {"GRPO": "C0"}, "reward", smooth=1)  # raw only
    assert len(ax.get_lines()) == 1 and list(ax.get_lines()[0].get_ydata()) == pytest.approx(mean)
    plt.close(fig)


def _figure(arms: dict, key: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    _plot_key(ax, arms, {a: f"C{i}" for i, a in enumerate(arms)}, key, smooth=1)
    return fig, ax


def test_equal_curves_stay_visible_and_the_legend_says_so(tmp_path):
    """Two arms with the very same metrics: drawn in different line styles and markers, the second labelled as equal
    to the first; arms that differ are not labelled equal."""
    import matplotlib.pyplot as plt

    same = {0: 0.1, 5: 0.3, 10: 0.2}
    grpo = load_run(write_run(tmp_path / "grpo-seed0", "grpo", 0, same))
    lam = load_run(write_run(tmp_path / "lambda-seed0", "lambda", 0, same))
    fig, ax = _figure({"GRPO": [grpo], "λ-GRPO": [lam]}, "eval/accuracy")
    a, b = ax.get_lines()
    assert list(a.get_ydata()) == list(b.get_ydata())  # the case: equal curves
    assert (a.get_linestyle(), a.get_marker()) != (b.get_linestyle(), b.get_marker())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["GRPO (n=1)", "λ-GRPO (n=1), equal to GRPO"]
    plt.close(fig)
    other = load_run(write_run(tmp_path / "lambda-seed1", "lambda", 1, {0: 0.1, 5: 0.4, 10: 0.2}))
    fig, ax = _figure({"GRPO": [grpo], "λ-GRPO": [other]}, "eval/accuracy")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["GRPO (n=1)", "λ-GRPO (n=1)"]
    plt.close(fig)


@pytest.mark.parametrize(
    ("key", "values", "lo", "hi"),
    [
        # seeds 0.0 and 0.2: mean 0.1, s.d. 0.141, so mean - s.d. < 0 for a fraction
        ("eval/accuracy", (0.0, 0.2), 0.0, 0.1 + 0.02**0.5),
        # seeds 0.9 and 1.0: mean + s.d. = 1.02 > 1
        ("eval/accuracy", (0.9, 1.0), 0.95 - 0.005**0.5, 1.0),
        ("prm/flat_fraction", (0.0, 0.2), 0.0, 0.1 + 0.02**0.5),
        # a reward is clipped to the range of the values seen
        ("reward", (0.0, 0.2), 0.0, 0.2),
    ],
)
def test_bands_stay_in_the_range_the_quantity_can_take(tmp_path, key, values, lo, hi):
    import matplotlib.pyplot as plt

    runs = []
    for seed, v in enumerate(values):
        path = tmp_path / f"grpo-seed{seed}"
        path.mkdir()
        (path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, key: v}) + "\n" for s in (1, 2)))
        (path / "config.yaml").write_text(f"seed: {seed}\nweighting: uniform\n")
        runs.append(load_run(path))
    fig, ax = _figure({"GRPO": runs}, key)
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(lo) and ys.max() == pytest.approx(hi)
    plt.close(fig)


@pytest.mark.parametrize(("values", "want"), [((0.0, 0.0), (-0.03, 1.03)), ((0.55, 0.65), None)])
def test_a_fraction_axis_stays_within_0_and_1(tmp_path, values, want):
    """A constant fraction (0 on every step) is drawn against [0, 1] (matplotlib alone centres it on ±0.04); a
    varying one keeps matplotlib's close-up view, which lies inside [0, 1]."""
    import matplotlib.pyplot as plt

    runs = []
    for seed, v in enumerate(values):
        path = tmp_path / f"grpo-seed{seed}"
        path.mkdir()
        (path / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": s, "prm/flat_fraction": v}) + "\n" for s in (1, 2))
        )
        (path / "config.yaml").write_text(f"seed: {seed}\nweighting: uniform\n")
        runs.append(load_run(path))
    fig, ax = _figure({"GRPO": runs}, "prm/flat_fraction")
    y0, y1 = ax.get_ylim()
    if want is not None:
        assert (y0, y1) == pytest.approx(want)
    else:
        assert 0.4 < y0 < 0.55 and 0.65 < y1 < 0.8  # close up on 0.6 ± 0.071
    plt.close(fig)


def test_peak_steps_read_as_integers_and_a_trainer_run_without_accuracy_says_so(tmp_path):
    """Three seeds that all peak at step 0 print "0 (all 3 seeds)", not "0.0 ± 0.0"; a run that logged no
    eval/accuracy (a LambdaGRPOTrainer output_dir: metrics.jsonl and trainer_config.json) gets a row that says so."""
    cmp = tmp_path / "cmp"
    for seed in range(3):
        write_run(cmp / f"grpo-seed{seed}", "grpo", seed, {0: 0.5, 5: 0.2, 10: 0.1})
    trl_dir = tmp_path / "trl_out"
    trl_dir.mkdir()
    lines = [{"step": s, "reward": 0.1 * s, "prm/path_depth_mean": 1.5, "epoch": 0.1} for s in (1, 2, 3)]
    (trl_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (trl_dir / "trainer_config.json").write_text(
        json.dumps({"weighting": "lambda", "lambda_power": 1.0, "seed": 7})
    )
    out = tmp_path / "rep"
    assert main(["report", str(cmp), str(trl_dir), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert table_row(report, "GRPO")[2:4] == ["0.5000 ± 0.0000", "0 (all 3 seeds)"]
    row = table_row(report, "λ-GRPO")
    assert row[1:3] == ["0", "no held-out accuracy logged"]
    assert "No run of λ-GRPO logged held-out accuracy" in report
    assert re.search(r"\| λ-GRPO \| 7 \| `.*trl_out` \| – → – \|", report)


def test_report_defaults_to_the_run_folder(tmp_path, monkeypatch):
    """Without --out the report goes into the first run's folder, not the current directory (a repo root)."""
    a = write_run(tmp_path / "a", "grpo", 0, ACC[("grpo", 0)])
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(a)]) == 0
    assert (a / "report" / "report.md").exists()
    assert not (tmp_path / "report").exists()
