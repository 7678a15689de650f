"""The ``lgrpo`` entry point: OpenMP's wait policy is set before torch loads (issue 15 §7)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DISPLAY_ENV")
LGRPO = [
    "-m",
    "lgrpo.cli",
    "toy",
    "--help",
]  # `lgrpo toy` imports torch when its parser is built: after the entry point
TORCH = ["-c", "import torch"]


def omp_wait(argv: list[str], **env: str) -> list[str]:
    """libgomp's wait settings (policy, spin count) as it reports them when torch loads it, in a fresh process."""
    clean = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    proc = subprocess.run(
        [sys.executable, *argv],
        env={**clean, "OMP_DISPLAY_ENV": "VERBOSE", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [ln.strip() for ln in proc.stderr.splitlines() if "WAIT_POLICY" in ln or "SPINCOUNT" in ln]
    assert lines, proc.stderr  # libgomp printed its settings: torch (and OpenMP) was loaded
    return lines


def test_importing_the_cli_does_not_load_torch():
    code = "import sys, lgrpo.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_lgrpo_makes_openmp_wait_passively():
    passive = omp_wait(TORCH, OMP_WAIT_POLICY="PASSIVE")
    assert omp_wait(TORCH) != passive  # torch alone keeps OpenMP's default: the check below can fail
    assert omp_wait(LGRPO) == passive


@pytest.mark.parametrize("env", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "12345"}])
def test_lgrpo_keeps_the_users_openmp_wait(env):
    assert omp_wait(LGRPO, **env) == omp_wait(TORCH, **env)
