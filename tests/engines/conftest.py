"""Fixtures shared by the engine tests (tiny, Hub-free: see ``trl_helpers.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # --import-mode=importlib: make trl_helpers importable


@pytest.fixture(scope="module")
def tok():
    from trl_helpers import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tok) -> str:
    # A saved model: with beta != 0 TRL loads the reference model from the policy's path.
    from trl_helpers import build_model

    d = tmp_path_factory.mktemp("tiny_model")
    build_model(tok, seed=0).save_pretrained(d)
    return str(d)
