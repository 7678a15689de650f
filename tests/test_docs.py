"""The code in README.md and docs/*.md runs as written (issue 15 §2), through Sybil.

Sybil (https://sybil.readthedocs.io, a maintained pytest plug-in for testing documentation) parses the Markdown
files; the repository's root ``conftest.py`` hands README.md and docs/*.md to the set-up in this module
(:data:`SYBIL`), so ``pytest`` (and ``make test``) collects every fenced code block as one test item, e.g.
``README.md::line:49,column:1``. Running only the docs: ``python -m pytest -q README.md docs``.

What is run
  - ```` ```python ```` blocks: executed in the pytest process. The blocks of one file share one namespace and run
    in the order of the file, as if pasted into one Python session: a block may use what an earlier block of the
    same file defined (say so in the text: "continuing the example above"), never a name defined nowhere.
  - ```` ```bash ```` blocks: run by ``bash -euo pipefail`` after ``source .venv/bin/activate`` (what the README
    asks a reader to do once), line by line as written; the block fails on the first command that fails. The
    blocks of one file run in one fresh folder, in order, so a later block may read what an earlier one wrote
    (``runs/train``, ...). The folder has ``.venv`` (the environment running the tests), ``configs/``,
    ``benchmarks/`` and ``examples/`` (links to the repository) and the data files of :data:`FILES`. A bash block
    with the same commands (comments aside) as one that already passed, in an earlier file, is reported skipped,
    naming that block.
  - A fence with any other language, or none (```` ```text ````, ```` ```json ````, a command synopsis with
    ``[--flag N]`` placeholders), is not run. ``py``, ``sh``, ``shell``, ``console`` and ``zsh`` are refused
    by :func:`test_code_blocks_use_a_language_the_test_runs`: write ``python`` or ``bash``.

Marking a block that cannot run here (needs a GPU, the Hub, hours, or is ``make test`` itself): put Sybil's skip
directive, with the reason as a quoted string, on the line before the fence::

    <!-- skip: next "needs a GPU and the 1.5B model's weights" -->
    ```bash
    lgrpo train --config configs/paper/qwen1.5b-beta0.yaml
    ```

The reason is printed in pytest's summary (``SKIPPED ... README.md:10: needs a GPU ...``). A skip directive
without a reason fails :func:`test_skip_directives_give_a_reason`. Prefer tiny sizes (below) to a skip: a skipped
block can drift from the code unnoticed.

Substitutions: the only edits made to a block before it runs; each must still match some block
(:func:`test_every_substitution_is_used`).
  - Python, :data:`PY_SUBS`: ``"path/to/model"`` becomes a tiny Qwen2 model folder with its character tokenizer
    (``lgrpo.models``, written by the test); ``~/.cache/lgrpo/SmolLM2-135M-Instruct.Q4_1.gguf`` becomes the path
    ``lgrpo.assets.fetch_smollm2()`` returns (fetching it first, as ``make smollm2`` does); on a machine without
    CUDA the commented CPU line ``# use_cpu=True,`` is uncommented (the one line the README names for a CPU); and
    ``LambdaGRPOConfig(`` gets :data:`TINY_TRL` (one step, 8-token completions) as keywords that win over the
    block's own.
  - Bash, :data:`SH_SUBS`: ``make smollm2`` becomes its Makefile recipe ``python -m lgrpo.assets``; each
    ``lgrpo train`` / ``lgrpo compare`` command (also under ``torchrun ... -m lgrpo.cli train``) gets
    :data:`TINY_TRAIN` appended (overrides win when given last: 2 warm-start steps, 1 RL step of 2 prompts × 4
    completions of at most 8 tokens, 4 held-out problems, a checkpoint every step);
    ``lgrpo toy`` gets :data:`TINY_TOY`; ``lgrpo eval --model`` gets :data:`TINY_EVAL`; ``checkpoint-50`` becomes
    ``checkpoint-1`` (the tiny run saves every step). Appended words go before a trailing ``# comment``.

A block that needs a file the reader would have (``gsm8k/train.jsonl``, ``run/rollouts.jsonl``, ...) gets a small
one from :data:`FILES`, written into the folder before the file's first block runs: add an entry when a new block
names a new data file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from collections.abc import Callable
from pathlib import Path

import pytest
from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGUAGES = ("python", "bash")
REFUSED_LANGUAGES = ("py", "sh", "shell", "console", "zsh", "python3", "pycon")
LINKED = ("configs", "benchmarks", "examples")  # repository folders the bash blocks name by relative path
SMOLLM2_PATH = "~/.cache/lgrpo/SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_MODEL = "tiny-model"  # folder (in the doc's work folder) that "path/to/model" stands for

TINY_TRL = "max_steps=1, max_completion_length=8"
TINY_TRAIN = (
    "sft.steps=2 rl.max_steps=1 rl.save_steps=1 data.train_size=64 data.eval_size=4 eval.every=0 "
    "rl.max_completion_length=8 eval.max_new_tokens=8 sft.batch_size=8 rl.num_generations=4 rl.prompts_per_step=2"
)
TINY_TOY = "--steps 5 --seeds 1 --workers 1"
TINY_EVAL = "--limit 2 --max-new-tokens 8"


def _gsm8k(n: int) -> str:
    rows = [{"question": f"What is {a} plus {a + 1}?", "answer": f"{a}+{a + 1}={2 * a + 1} #### {2 * a + 1}"}
            for a in range(n)]  # fmt: skip
    return "".join(json.dumps(r) + "\n" for r in rows)


def _rollouts() -> str:
    rows = []
    for step in (1, 2):
        for group, (prompt, completions) in enumerate((("4+1=", ("5", "5=5", "14=5")), ("2+2=", ("4", "5")))):
            for text in completions:
                ids = [ord(c) for c in text]
                rows.append({"step": step, "group": group, "prompt": prompt, "completion": text,
                             "completion_ids": ids, "reward": float(text.endswith(str(eval(prompt[:-1])))),
                             "advantage": 0.0})  # fmt: skip
    return "".join(json.dumps(r) + "\n" for r in rows)


# data files the blocks name, written into each file's work folder (paths relative to it)
FILES: dict[str, Callable[[], str]] = {
    "gsm8k/train.jsonl": lambda: _gsm8k(24),
    "test.jsonl": lambda: _gsm8k(3),
    "data/math500.jsonl": lambda: "".join(
        json.dumps({"problem": f"What is ${a}+{a}$?", "answer": str(2 * a)}) + "\n" for a in range(3)
    ),
    "generations.jsonl": lambda: (
        json.dumps({"id": "1", "answer": "4", "completion": "2+2 = \\boxed{4}"})
        + "\n"
        + json.dumps({"id": "2", "answer": "6", "completion": "3+3 = \\boxed{7}"})
        + "\n"
    ),
    "run/rollouts.jsonl": _rollouts,
}


# ---------------------------------------------------------------------------------------------------------------
# substitutions


def _tiny_model(workdir: Path) -> str:
    """A tiny randomly initialised Qwen2 with the character tokenizer, saved once per work folder."""
    folder = workdir / TINY_MODEL
    if not (folder / "config.json").is_file():
        from lgrpo.models import char_tokenizer, tiny_causal_lm

        tokenizer = char_tokenizer()
        model = tiny_causal_lm(tokenizer, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return str(folder)


def _smollm2() -> str:
    from lgrpo.assets import fetch_smollm2

    return str(fetch_smollm2())


def _cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()


# (name, pattern, replacement(match, workdir) -> str, applies) for python blocks
PY_SUBS: list[tuple[str, str, Callable[[re.Match, Path], str], Callable[[], bool]]] = [
    ("model path", r'"path/to/model"', lambda m, w: repr(_tiny_model(w)), lambda: True),
    ("SmolLM2 GGUF", re.escape(f'"{SMOLLM2_PATH}"'), lambda m, w: repr(_smollm2()), lambda: True),
    ("CPU line", r"# (use_cpu=True,)", lambda m, w: m.group(1), _cpu_only),
    ("tiny TRL config", r"\bLambdaGRPOConfig\(", lambda m, w: "_docs_tiny(LambdaGRPOConfig)(", lambda: True),
]


def _docs_tiny(cls: type) -> Callable:
    """``cls(**kwargs)`` with :data:`TINY_TRL` winning over the block's own keywords."""
    tiny = eval(f"dict({TINY_TRL})")

    def build(*args, **kwargs):
        return cls(*args, **{**kwargs, **tiny})

    return build


# (name, pattern, replacement) applied to the code part of each logical line of a bash block (comment excluded)
SH_SUBS: list[tuple[str, str, Callable[[re.Match], str]]] = [
    ("make smollm2", r"\bmake smollm2\b", lambda m: "python -m lgrpo.assets"),
    (
        "tiny train",
        r"(?:^|[\s/])lgrpo(?:\.cli)? (?:train|compare)\b.*$",
        lambda m: f"{m.group(0).rstrip()} {TINY_TRAIN}",
    ),
    ("tiny toy", r"(?:^|[\s/])lgrpo toy\b.*$", lambda m: f"{m.group(0).rstrip()} {TINY_TOY}"),
    ("tiny eval", r"(?:^|[\s/])lgrpo eval\b.*--model\b.*$", lambda m: f"{m.group(0).rstrip()} {TINY_EVAL}"),
    ("checkpoint", r"\bcheckpoint-50\b", lambda m: "checkpoint-1"),
]


def _split_comment(line: str) -> tuple[str, str]:
    """``(code, comment)``: the comment starts at the first ``#`` outside quotes that follows a blank."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i:]
    return line, ""


def _logical_lines(source: str) -> list[str]:
    lines, current = [], ""
    for raw in source.splitlines():
        current += raw
        if raw.endswith("\\"):
            current += "\n"
            continue
        lines.append(current)
        current = ""
    if current:
        lines.append(current)
    return lines


def substitute_bash(source: str, used: set[str] | None = None) -> str:
    out = []
    for line in _logical_lines(source):
        code, comment = _split_comment(line)
        for name, pattern, replace in SH_SUBS:
            new = re.sub(pattern, replace, code)
            if new != code and used is not None:
                used.add(name)
            code = new
        out.append(f"{code.rstrip()}  {comment}" if comment and code.strip() else code + comment)
    return "\n".join(out) + "\n"


def substitute_python(source: str, workdir: Path, used: set[str] | None = None) -> str:
    for name, pattern, replace, applies in PY_SUBS:
        if not applies():
            continue
        new = re.sub(pattern, lambda m, r=replace: r(m, workdir), source)
        if new != source and used is not None:
            used.add(name)
        source = new
    return source


# ---------------------------------------------------------------------------------------------------------------
# Sybil set-up: one work folder per file


def _setup(namespace: dict) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="lgrpo-docs-"))
    (workdir / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    for name in LINKED:
        (workdir / name).symlink_to(ROOT / name, target_is_directory=True)
    for rel, make in FILES.items():
        path = workdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
    namespace["__docs_workdir__"] = workdir


def _teardown(namespace: dict) -> None:
    shutil.rmtree(namespace.pop("__docs_workdir__"), ignore_errors=True)


@contextlib.contextmanager
def _chdir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def evaluate_python(example: Example) -> None:
    workdir = example.namespace["__docs_workdir__"]
    source = substitute_python(example.parsed, workdir)
    # pad so that a traceback names the line of the Markdown file
    code = compile("\n" * (example.line + example.parsed.line_offset) + source, example.path, "exec")
    namespace = example.namespace
    namespace["_docs_tiny"] = _docs_tiny
    with _chdir(workdir):
        exec(code, namespace)
    namespace.pop("__builtins__", None)


_BASH_RAN: dict[str, str] = {}  # a bash block's text -> where it passed (README.md:197)


def evaluate_bash(example: Example) -> None:
    workdir = example.namespace["__docs_workdir__"]
    script = substitute_bash(example.parsed)
    where = f"{Path(example.path).relative_to(ROOT)}:{example.line}"
    key = " ".join(
        " ".join(_split_comment(x)[0] for x in _logical_lines(example.parsed)).split()
    )  # code only
    if key in _BASH_RAN:
        raise unittest.SkipTest(f"the same commands as {_BASH_RAN[key]}, which passed")
    proc = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\nsource .venv/bin/activate\nset -x\n{script}"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "PS4": "+ $ "},
    )
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-6000:]
        raise AssertionError(f"{where}: bash block failed (exit {proc.returncode}); ran:\n{script}\n{output}")
    _BASH_RAN[key] = where


SYBIL = Sybil(
    parsers=[
        CodeBlockParser("python", evaluate_python),
        CodeBlockParser("bash", evaluate_bash),
        SkipParser(),
    ],
    path=str(ROOT),
    patterns=["README.md", "docs/*.md"],
    setup=_setup,
    teardown=_teardown,
)


def collect_file(file_path: Path, parent: pytest.Collector):
    """The root conftest's ``pytest_collect_file``: README.md and docs/*.md only."""
    if file_path.resolve() in DOCS:
        return SYBIL.pytest()(file_path, parent)
    return None


def skip_at_block(item: pytest.Item, report: pytest.TestReport) -> None:
    """A skipped block's report names its file and line (``README.md:12: needs a GPU``), not Sybil's code."""
    example = getattr(item, "example", None)
    if report.skipped and example is not None and isinstance(report.longrepr, tuple):
        report.longrepr = (str(Path(example.path).relative_to(ROOT)), example.line, report.longrepr[2])


# ---------------------------------------------------------------------------------------------------------------
# the rules above hold for every doc

FENCE = re.compile(r"^```(\S*)\s*$")
SKIP = re.compile(r"<!--\s*skip:\s*(\w+)(.*?)-->")


def _blocks(path: Path) -> list[tuple[int, str, str, str]]:
    """``(line, language, source, the non-blank line before the fence)`` of every fenced block of ``path``."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            start = i
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                i += 1
            before = next((x for x in reversed(lines[:start]) if x.strip()), "")
            blocks.append((start + 1, m.group(1), "\n".join(lines[start + 1 : i]), before))
        i += 1
    return blocks


def test_code_blocks_use_a_language_the_test_runs():
    bad = [
        f"{p.relative_to(ROOT)}:{line}: ```{lang}"
        for p in DOCS
        for line, lang, _, _ in _blocks(p)
        if lang.lower() in REFUSED_LANGUAGES
    ]
    assert not bad, (
        "write ```python or ```bash (run by the tests) or mark text that is not run as ```text:\n"
        + "\n".join(bad)
    )


def test_skip_directives_give_a_reason():
    bad = []
    for p in DOCS:
        for line, text in enumerate(p.read_text().splitlines(), 1):
            for action, rest in SKIP.findall(text):
                if action in ("next", "start") and not re.fullmatch(r'\s*"[^"]+"\s*', rest):
                    bad.append(f"{p.relative_to(ROOT)}:{line}: {text.strip()}")
    assert not bad, 'a skip directive needs a reason: <!-- skip: next "needs a GPU" -->\n' + "\n".join(bad)


def test_every_substitution_is_used(tmp_path):
    used_py: set[str] = set()
    used_sh: set[str] = set()
    for p in DOCS:
        for _, lang, source, _ in _blocks(p):
            if lang == "python":
                for (
                    name,
                    pattern,
                    _,
                    _,
                ) in PY_SUBS:  # pattern only: building the tiny model is not needed here
                    if re.search(pattern, source):
                        used_py.add(name)
            elif lang == "bash":
                substitute_bash(source, used_sh)
    assert used_py == {s[0] for s in PY_SUBS}, "unused python substitutions: remove them from PY_SUBS"
    assert used_sh == {s[0] for s in SH_SUBS}, "unused bash substitutions: remove them from SH_SUBS"


def test_make_smollm2_is_what_the_substitution_runs():
    recipe = (ROOT / "Makefile").read_text().split("\nsmollm2:")[1].splitlines()[1].strip()
    assert recipe == "$(BIN)/python -m lgrpo.assets"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("lgrpo train --seed 1", f"lgrpo train --seed 1 {TINY_TRAIN}"),
        (
            "lgrpo train rl.beta=0.04   # any key",
            f"lgrpo train rl.beta=0.04 {TINY_TRAIN}  # any key",
        ),
        (
            "torchrun --nproc_per_node 2 -m lgrpo.cli train",
            f"torchrun --nproc_per_node 2 -m lgrpo.cli train {TINY_TRAIN}",
        ),
        (
            ".venv/bin/lgrpo toy --out runs/toy     # or: make toy",
            f".venv/bin/lgrpo toy --out runs/toy {TINY_TOY}  # or: make toy",
        ),
        ("lgrpo eval --predictions g.jsonl --out d", "lgrpo eval --predictions g.jsonl --out d"),
        ('python -c "import x  # not a comment"', 'python -c "import x  # not a comment"'),
        ("make smollm2   # prints the path", "python -m lgrpo.assets  # prints the path"),
    ],
)
def test_substitute_bash(line, expected):
    assert substitute_bash(line) == expected + "\n"
