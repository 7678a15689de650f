"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        params = [
            "cpu",
            pytest.param(
                "cuda",
                marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
            ),
        ]
        metafunc.parametrize("device", params)


FIXTURES = Path(__file__).parent / "fixtures"
SMOLLM2_TOKENIZER = FIXTURES / "smollm2_tokenizer"


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's real BPE tokenizer and chat template, saved as a fixture (no weights needed)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(SMOLLM2_TOKENIZER)


@pytest.fixture(scope="session")
def bos_tokenizer(smollm2_tokenizer):
    """SmolLM2's real tokenizer made Llama-3-like (Llama-3.2-1B-Instruct, ``configs/paper/llama1b-*``): its
    post-processor adds BOS (``<|endoftext|>``) to plain text and its chat template writes ``bos_token``."""
    import copy

    from tokenizers.processors import TemplateProcessing

    tok = copy.deepcopy(smollm2_tokenizer)
    bos = "<|endoftext|>"
    tok.bos_token = bos
    bos_id = tok.convert_tokens_to_ids(bos)
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    assert tok("x")["input_ids"][0] == bos_id and tok("x", add_special_tokens=False)["input_ids"][0] != bos_id
    return tok


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """Path of the real SmolLM2-135M-Instruct GGUF file (fetched once into the cache; `make smollm2`).

    Fails, never skips, when it cannot be had: the real-model path must stay proven.
    """
    from lgrpo.assets import fetch_smollm2

    try:
        return fetch_smollm2()
    except RuntimeError as err:
        pytest.fail(f"the real model is needed and could not be fetched: {err}")
