"""`make test` and `make demo` say what they build (the dry run `make -n`: nothing is built or run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def dry_run(target: str, tmp_path: Path) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venvs = [
        f"VENV={tmp_path / 'venv'}",
        f"VERL_VENV={tmp_path / 'venv-verl'}",
    ]  # neither exists: all is built
    proc = subprocess.run(
        ["make", "-n", "--no-print-directory", target, *venvs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.splitlines()


def test_make_test_runs_the_suite_before_building_the_verl_venv_and_says_each_step(tmp_path):
    lines = dry_run("test", tmp_path)
    suite = next(
        i for i, x in enumerate(lines) if "pytest" in x and "--ignore=tests/engines/test_verl.py" in x
    )
    verl_venv = next(i for i, x in enumerate(lines) if x.startswith("python3 -m venv") and "venv-verl" in x)
    verl_tests = next(
        i for i, x in enumerate(lines) if "pytest" in x and x.endswith(" tests/engines/test_verl.py")
    )
    assert suite < verl_venv < verl_tests  # the suite's result does not wait for the 2 GB verl environment
    installs = [i for i, x in enumerate(lines) if "pip install" in x and "--upgrade pip" not in x]
    assert len(installs) == 4  # torch and lgrpo, into each venv
    for i in installs:
        assert lines[i - 1].startswith('echo "make: ['), f"no progress line before: {lines[i]}"
        assert " -q " not in lines[i], f"pip's own progress is hidden: {lines[i]}"
    assert any("verl 0.9.1" in x and "2.0 GB" in x for x in lines)


def test_make_demo_builds_only_the_trl_venv(tmp_path):
    lines = dry_run("demo", tmp_path)
    assert not any("venv-verl" in x for x in lines)
    assert lines[-1].endswith("lgrpo train --out runs/demo --resume")
