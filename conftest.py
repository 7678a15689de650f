"""pytest set-up at the repository root: the code blocks of README.md and docs/*.md are tests too.

The Sybil set-up that runs them, and how a doc marks a block that cannot run, are in tests/test_docs.py. An
environment without Sybil (the verl one, which runs tests/engines/test_verl.py only) collects no docs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

if importlib.util.find_spec("sybil") is not None:
    _spec = importlib.util.spec_from_file_location(
        "lgrpo_docs_tests", Path(__file__).parent / "tests" / "test_docs.py"
    )
    _docs = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_docs)
    pytest_collect_file = _docs.collect_file

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        outcome = yield
        _docs.skip_at_block(item, outcome.get_result())
