"""The repository itself: checks a clean clone needs on every platform."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_no_two_tracked_paths_differ_only_in_case():
    """macOS and Windows file systems are case-insensitive: docs/METHOD.md and docs/method.md would clash."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    seen: dict[str, str] = {}
    for rel in files.splitlines():
        for i in range(1, rel.count("/") + 2):  # the file and every folder above it
            part = "/".join(rel.split("/")[:i])
            other = seen.setdefault(part.lower(), part)
            assert other == part, f"{part} and {other} differ only in case"
