"""Math answers: the ``\\boxed{}`` answer of a completion, checked against a gold answer with math-verify.

This is the one implementation of answer checking in lgrpo: the training reward (:class:`MathReward`), the
stopping rule used during generation (:class:`BoxedStoppingCriteria`, :func:`truncate_after_boxed`) and
``lgrpo eval`` all use it.

Why a worker process: math-verify bounds its own time with ``signal.alarm``, which only works in the main thread
and cannot interrupt a long computation inside C code (sympy evaluating ``9^{9^{9^9}}`` as an integer is one
such computation). :func:`verify` therefore sends the work to a long-lived helper process (``python -m
lgrpo.tasks.math_answers --worker``) over a pipe and kills and restarts it when an answer takes longer than the
time limit (its memory is capped too). The round trip costs well under a millisecond, works from any thread, and
nothing the answer contains can hang or crash the caller.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

SYSTEM_PROMPT = "Let's think step by step and output the final answer within \\boxed{}."

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_COMMAND_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
# the argument of a box written without braces, as in ``\boxed 5`` or ``\boxed \pi``: a control word, or a run of
# characters up to white space, ``$``, a brace or a backslash (``\boxed 50.`` boxes 50, like math-verify reads it)
_BARE_ARG_RE = re.compile(r"\\[A-Za-z]+|[^\s$\\{}]+")


# what a blank box holds: white space, spacing commands (\, \; \: \! \  \quad \qquad ~) and empty groups
_BLANK_RE = re.compile(
    r"(?:\s|~|\\[,;:! ]|\\q?quad(?![A-Za-z])|\\(?:text|mathrm|textrm|mbox|hbox)\s*\{\s*\}|\{|\})*"
)


def _first_box_span(text: str, final: bool = True) -> tuple[int, int, int, int] | None:
    """(start of ``\\boxed``, start and end of its content, end of the box) of the first box, if it has closed.

    A braced box ``\\boxed{…}`` closes with the brace that balances its opening one (escaped ``\\{``, ``\\}`` do not
    count, so ``\\boxed{\\left\\{ x \\right.}`` closes); its content ends before that brace. A box without braces
    (``\\boxed 5``) takes one bare argument (see ``_BARE_ARG_RE``, trailing ``.,;:`` dropped); it is closed once
    something follows the argument, or, when ``final`` (the text is complete), at the end of the text.
    """
    for match in _BOX_COMMAND_RE.finditer(text):
        begin = match.end()
        if begin >= len(text):
            return None  # nothing after the command yet
        if text[begin] == "{":
            depth, i = 1, begin + 1
            while i < len(text):
                c = text[i]
                if c == "\\":
                    i += 2  # an escaped character (\{, \}, \\) never opens or closes a group
                    continue
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        return match.start(), begin + 1, i, i + 1
                i += 1
            return None  # the first box is still open: later boxes are nested in it or come after it
        arg = _BARE_ARG_RE.match(text, begin)
        if arg is None:
            continue  # e.g. ``\boxed}``: not a box with an argument
        if arg.end() == len(text) and not final:
            return None  # the argument may still grow (``\boxed 5`` → ``\boxed 50``)
        end = arg.end()
        while end > begin + 1 and text[end - 1] in ".,;:":
            end -= 1
        return match.start(), begin, end, end
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the first complete box of a finished text, or None when there is none or it is blank.

    ``\\boxed{...}`` (braces balanced), ``\\boxed {...}``, ``\\fbox{...}``, and a box without braces such as
    ``\\boxed 5`` (content ``5``). A blank box (``\\boxed{}``, ``\\boxed{ }``, ``\\boxed{\\,}``, ``\\boxed{\\text{}}``,
    ``\\boxed{{}}``: nothing but white space, LaTeX spacing and empty groups) gives no answer.
    """
    span = _first_box_span(text)
    content = None if span is None else text[span[1] : span[2]].strip()
    return None if content is None or _BLANK_RE.fullmatch(content) else content


def boxed_closed(text: str) -> bool:
    """Whether the first box of ``text``, a text that may still grow, has closed (see :func:`extract_boxed`)."""
    return _first_box_span(text, final=False) is not None


def truncate_after_boxed(text: str) -> str:
    """A finished ``text`` up to the end of its first box (its closing brace); unchanged when no box has closed."""
    span = _first_box_span(text)
    return text if span is None else text[: span[3]]


# --------------------------------------------------------------------------------------------------------------
# The verification worker
# --------------------------------------------------------------------------------------------------------------


# Upright letters and operator names that math-verify 0.9 misreads: it turns ``\\mathrm{e}`` into ``\\text{e}``
# and then drops a trailing ``\\text{…}`` as if it were a unit, so ``3+4\\mathrm{i}`` reads as ``3+4`` and
# ``1-\\frac{1}{\\mathrm{e}}`` as the stub ``1 - \\frac{1}{``; ``\\operatorname{sin} x`` does not parse at all.
_UPRIGHT_LETTER_RE = re.compile(
    r"\\(?:mathrm|textrm|mathup|operatorname|text|rm)\s*\{\s*([eid])\s*\}|\{\s*\\rm\s+([eid])\s*\}"
)
# operator names that LaTeX (and so latex2sympy) also spells as a command of their own
_KNOWN_OPERATORS = [  # each checked to parse as a command (``\\coth`` does not: it reads as cot·h, so it is left out)
    "arcsin",
    "arccos",
    "arctan",
    "arccot",
    "arcsec",
    "arccsc",
    "sinh",
    "cosh",
    "tanh",
    "sin",
    "cos",
    "tan",
    "cot",
    "sec",
    "csc",
    "log",
    "ln",
    "exp",
    "gcd",
    "lcm",
    "max",
    "min",
]
_UPRIGHT_OPERATOR_RE = re.compile(
    r"\\(?:operatorname|mathrm|textrm|mathup)\s*\{\s*(" + "|".join(_KNOWN_OPERATORS) + r")\s*\}"
)


def normalize_upright(latex: str) -> str:
    """``latex`` with upright constants and operator names written the way math-verify reads them.

    ``\\mathrm{e}``, ``\\mathrm{i}``, ``\\mathrm{d}`` (also ``\\operatorname``, ``\\textrm``, ``\\text``, ``{\\rm e}``) become
    ``e`` (Euler's number), ``i`` (the imaginary unit), ``d`` (as in ``dx``); ``\\operatorname{sin}`` and the like
    become ``\\sin``. Other letters and names are left alone.
    """
    latex = _UPRIGHT_LETTER_RE.sub(lambda m: m.group(1) or m.group(2), latex)
    return _UPRIGHT_OPERATOR_RE.sub(lambda m: "\\" + m.group(1), latex)


def _as_latex(answer: str) -> str:
    """Wrap a bare answer so that math-verify's LaTeX extractor reads it whole."""
    # `\$` is a currency sign, not math mode: "\$12" means 12 (math-verify would otherwise find no answer)
    answer = normalize_upright(answer.replace("\\$", "").strip())
    if _BOXED_RE.search(answer) or "$" in answer:
        return answer
    return "\\boxed{" + answer + "}"


# Prose outside any LaTeX command: math-verify reads "see the figure" as the product s·e·e·t·h·…, which any
# reordering of its letters equals. Prose is two or more words (one of three letters or more), or one word of four
# letters or more with a lower-case letter ("Proof"); products of variables ("abc", "2xy + yz") and point names
# ("ABC", "ABCD") are not. Text inside ``\\text{…}`` is read as one symbol, and known unit words are dropped, so
# those are left to math-verify.
_TEXT_GROUP_RE = re.compile(
    r"\\(?:text|textbf|textit|mbox|mathrm|textrm|operatorname|begin|end)\s*\{[^{}]*\}"
)
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")


def _last_box(text: str) -> str | None:
    """Content of the last closed box of ``text`` (what math-verify reads from a gold solution), or None."""
    content = None
    for match in _BOX_COMMAND_RE.finditer(text):
        span = _first_box_span(text[match.start() :])
        if span is not None:
            content = text[match.start() :][span[1] : span[2]]
    return content


def _prose_word(gold: str) -> str | None:
    box = _last_box(gold)  # a worked solution as the gold: only its (last) boxed answer is read
    bare = _COMMAND_RE.sub(" ", _TEXT_GROUP_RE.sub(" ", normalize_upright(gold if box is None else box)))
    words = _WORD_RE.findall(bare)
    long = [w for w in words if len(w) >= 4 and not w.isupper()]
    if long:
        return long[0]
    if len(words) >= 2 and any(len(w) >= 3 for w in words):
        return max(words, key=len)
    return None


def _gold_problem_in_process(gold: str) -> str | None:
    """Why ``gold`` cannot be scored (it is prose, or math-verify reads only part of it, or none), else None."""
    from math_verify import parse

    word = _prose_word(gold)
    if word is not None:
        return f"not mathematics (the word {word!r})"
    parsed = parse(_as_latex(gold), parsing_timeout=None)  # type: ignore[arg-type]
    if not parsed or isinstance(parsed[0], str):
        return "math-verify cannot parse it"
    read = parsed[-1] if isinstance(parsed[-1], str) else ""
    if read.count("{") != read.count("}"):  # math-verify kept a stub of the answer, such as `1 - \frac{1}{`
        return f"math-verify reads only {read!r} of it"
    return None


def _is_exact(x: Any) -> bool:
    """Whether a parsed answer is exact: an expression without decimals (integers, fractions, powers, roots, π, e,
    factorials, and expressions in variables built from them)."""
    import sympy

    return isinstance(x, sympy.Expr) and not x.has(sympy.Float)


def _exactly_equal(a: Any, b: Any) -> bool:
    """Equality of two exact expressions, decided by exact arithmetic: the simplified difference is zero.

    math-verify compares them numerically, rounding the difference to 15 digits *absolutely*, so ``2^{-99}`` equalled
    ``2^{-98}`` there, and ``x = 2^{-99}`` equalled ``x = 2^{-98}``.
    """
    import sympy

    diff = sympy.simplify(a.doit() - b.doit())
    if diff.is_zero is not None:
        return bool(diff.is_zero)
    if diff.free_symbols:
        return False  # not identically zero as far as sympy can tell (math-verify's symbolic check agrees)
    # a number simplify could not decide: equal when they agree to 60 significant digits (relative, never absolute)
    scale = max(abs(sympy.N(a, 80)), abs(sympy.N(b, 80)))
    return bool(abs(sympy.N(diff, 80)) <= scale * sympy.Float(10) ** -60)


def _install_exact_comparison() -> None:
    """Route math-verify's numeric comparison of two exact expressions to :func:`_exactly_equal`.

    math-verify calls ``grader.sympy_numeric_eq`` for every pair of expressions it compares numerically, also inside
    tuples, sets, intervals and equations; a decimal on either side keeps math-verify's documented rounding (``1/3``
    equals ``0.333333``).
    """
    from math_verify import grader

    numeric_eq = grader.sympy_numeric_eq
    if getattr(numeric_eq, "_lgrpo_exact", False):
        return

    def exact_or_numeric_eq(a: Any, b: Any, float_rounding: int, numeric_precision: int) -> bool:
        if _is_exact(a) and _is_exact(b):
            return _exactly_equal(a, b)
        return numeric_eq(a, b, float_rounding, numeric_precision)

    exact_or_numeric_eq._lgrpo_exact = True  # type: ignore[attr-defined]
    grader.sympy_numeric_eq = exact_or_numeric_eq


def _verify_in_process(pred: str, gold: str) -> bool:
    """math-verify on two answer strings, with no time limit (the caller bounds it). ``gold`` is checked first with
    :func:`_gold_problem_in_process`."""
    from math_verify import parse
    from math_verify import verify as mv_verify

    _install_exact_comparison()
    gold_parsed = parse(_as_latex(gold), parsing_timeout=None)  # type: ignore[arg-type]
    pred_parsed = parse(_as_latex(pred), parsing_timeout=None)  # type: ignore[arg-type]
    if not gold_parsed or not pred_parsed:
        return False
    # math-verify's verify(gold, target) is asymmetric: a gold inequality accepts an interval, not the reverse
    return bool(mv_verify(gold_parsed, pred_parsed, timeout_seconds=None))


# Memory the worker may use: an answer such as 10^{10^{10}} would otherwise grow an integer by gigabytes before
# the time-out; past the limit it fails with MemoryError and scores 0 instead.
_WORKER_MEMORY_BYTES = 4 * 2**30


def _limit_worker() -> None:
    """Cap the worker's memory, and (Linux) have the kernel kill it when its parent dies mid-computation."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (_WORKER_MEMORY_BYTES, _WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _worker_main() -> None:
    """Serve ``[pred, gold]`` JSON lines on stdin with ``[ok, error]`` JSON lines on a private copy of stdout.

    ``pred`` None asks about the gold alone: the reply's ``ok`` is then the reason it cannot be scored, or None.
    """
    import logging

    _limit_worker()
    logging.disable(logging.CRITICAL)  # math-verify warns about its disabled timeout; we bound time ourselves
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol
    _verify_in_process("1", "1")  # import and warm up math-verify before saying we are ready
    out.write("ready\n")
    for line in sys.stdin:
        try:
            pred, gold = json.loads(line)
            if pred is None:
                reply: list[Any] = [_gold_problem_in_process(gold), None]
            else:
                reply = [_verify_in_process(pred, gold), None]
        except Exception as exc:  # any failure is an unverified answer, reported to the parent
            reply = [False, f"error: {type(exc).__name__}"]
        out.write(json.dumps(reply) + "\n")


# Starting Python and importing math-verify and sympy takes about a second, far more on a loaded machine; this
# is not counted in a request's time limit.
_STARTUP_TIMEOUT_S = 60.0
_SRC_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Proc:
    """One worker process and the unread bytes of its replies."""

    def __init__(self) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "lgrpo.tasks.math_answers", "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([_SRC_DIR, os.environ.get("PYTHONPATH", "")])},
        )
        self.pid = os.getpid()  # the process that owns the pipes
        self.ready = False
        self.buffer = b""

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.popen.poll() is None

    def kill(self) -> None:
        if self.pid == os.getpid():
            self.popen.kill()
            self.popen.wait()

    def readline(self, timeout: float) -> bytes | None:
        """One line from the worker, or None when none comes in time or the worker has exited."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.popen.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line


class _Worker:
    """The verification worker, used by one thread at a time.

    After a timeout the busy process is killed and a spare, started in the background after the first timeout,
    takes over at once, so a run of pathological answers costs about ``timeout`` each and no start-up time.
    """

    def __init__(self) -> None:
        self.proc: _Proc | None = None
        self.spare: _Proc | None = None
        self.lock = threading.Lock()

    def close(self) -> None:
        for proc in (self.proc, self.spare):
            if proc is not None:
                proc.kill()
        self.proc = self.spare = None

    def _replace(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # killing the process is the only way to stop C code that is still computing
        spare_ok = self.spare is not None and self.spare.alive()
        self.proc = self.spare if spare_ok else _Proc()
        self.spare = _Proc()

    def request(self, pred: str | None, gold: str, timeout: float) -> tuple[Any, str | None]:
        with self.lock:
            if self.proc is None or not self.proc.alive():
                # first use, a forked child (the parent's pipes are not ours), or a dead worker
                self.proc, self.spare = _Proc(), None
            proc = self.proc
            assert proc.popen.stdin is not None
            if not proc.ready:
                if proc.readline(_STARTUP_TIMEOUT_S) != b"ready":
                    self._replace()
                    if (
                        importlib.util.find_spec("math_verify") is None
                    ):  # every answer would score 0, silently
                        raise ImportError(
                            "answer checking needs math-verify: pip install 'math-verify>=0.8.0' (lgrpo[eval])"
                        )
                    return False, "error: worker did not start"
                proc.ready = True
            try:
                proc.popen.stdin.write((json.dumps([pred, gold]) + "\n").encode())
                proc.popen.stdin.flush()
            except OSError:
                self._replace()
                return False, "error: worker died"
            line = proc.readline(timeout)
            if line is None:
                died = proc.popen.poll() is not None
                self._replace()
                return False, "error: worker died" if died else "timeout"
            ok, err = json.loads(line)
            return ok, err


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    # The worker needs none of what follows; skipping torch and transformers keeps its start fast.
    _worker_main()
    raise SystemExit(0)

import torch  # noqa: E402
from transformers import StoppingCriteria  # noqa: E402

_WORKER = _Worker()
atexit.register(_WORKER.close)


class Verdict(NamedTuple):
    """The check of one answer: ``score`` 1.0 (right), 0.0 (wrong, no answer, time-out, error) or NaN (unscorable).

    ``tag`` is None for an answer that was checked, ``"no_answer"`` (no closed box, or an empty one),
    ``"unscorable: <why>"`` (the gold cannot be checked; never the completion's fault), ``"timeout"``, or
    ``"error: <kind>"``.
    """

    score: float
    tag: str | None

    @property
    def unscorable(self) -> bool:
        return self.tag is not None and self.tag.startswith("unscorable")


DEFAULT_TIMEOUT_S = 5.0
_GOLD_PROBLEMS: dict[
    str, str | None
] = {}  # gold -> why it cannot be scored (None: it can); decided once per gold


def gold_problem(gold: str, timeout: float = DEFAULT_TIMEOUT_S) -> str | None:
    """Why ``gold`` cannot be scored, or None when it can.

    A gold cannot be scored when it is empty, is prose rather than mathematics (``see the figure``), or math-verify
    parses none or only part of it (``1 - \\frac{1}{`` of a gold it could not read whole). A time-out or an error
    while checking is reported as such (``"timeout"``, ``"error: …"``) and not remembered.
    """
    gold = str(gold).strip() if gold is not None else ""
    if not gold:
        return "empty gold answer"
    if gold in _GOLD_PROBLEMS:
        return _GOLD_PROBLEMS[gold]
    problem, err = _WORKER.request(None, gold, timeout)
    if err is not None:
        return err
    _GOLD_PROBLEMS[gold] = problem
    return problem


def verify(completion: str, gold: str, timeout: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Score a completion's first ``\\boxed{}`` answer against ``gold`` (see :class:`Verdict`).

    The two sides are not interchangeable: ``gold`` is the reference (math-verify's ``gold``), the completion's box
    the prediction (its ``target``). math-verify's comparison is asymmetric — a gold inequality ``1 < x < 2``
    accepts the interval ``(1, 2)`` as an answer, but a gold interval does not accept an inequality — and only the
    gold is checked for being scorable. Two answers without decimals (integers, fractions, powers, roots, factorials,
    π, e, i, and expressions in variables) are compared exactly; a decimal on either side keeps math-verify's rounding
    to 6 places (``1/3`` equals ``0.333333``). ``timeout`` bounds each call to math-verify in seconds (the worker is killed past it). Never
    raises; safe to call from any thread.
    """
    try:
        problem = gold_problem(gold, timeout)
        if problem in ("timeout",) or (problem or "").startswith("error"):
            return Verdict(0.0, problem)
        if problem is not None:
            return Verdict(math.nan, f"unscorable: {problem}")
        pred = extract_boxed(completion)
        if pred is None:
            return Verdict(0.0, "no_answer")
        ok, err = _WORKER.request(pred, str(gold), timeout)
        return Verdict(1.0 if ok and err is None else 0.0, err)
    except Exception as exc:  # a reward must never stop a run
        return Verdict(0.0, f"error: {type(exc).__name__}")


def _completion_text(completion: Any) -> str:
    """TRL passes plain strings, or for conversational data a list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def log_verdicts(verdicts: Sequence[Verdict], log_metric: Any | None) -> None:
    """Log the share of ``verdicts`` per outcome through TRL's ``log_metric`` (a reward function's keyword argument).

    ``reward/unscorable``, ``reward/no_answer``, ``reward/verify_timeouts``, ``reward/verify_errors``: fractions of
    the generation batch's completions. TRL averages them over processes and over the logging step and writes them
    with the step's other metrics (so they are in ``trainer_state.json`` and survive a resume). No-op when
    ``log_metric`` is None (a call from outside TRL) or ``verdicts`` is empty.
    """
    if log_metric is None or not verdicts:
        return
    n = len(verdicts)
    tags = [v.tag or "" for v in verdicts]
    log_metric("reward/unscorable", sum(t.startswith("unscorable") for t in tags) / n)
    log_metric("reward/no_answer", sum(t == "no_answer" for t in tags) / n)
    log_metric("reward/verify_timeouts", sum(t == "timeout" for t in tags) / n)
    log_metric("reward/verify_errors", sum(t.startswith("error") for t in tags) / n)


from lgrpo.tasks.task import AnswerReward  # noqa: E402


class MathReward(AnswerReward):
    """TRL reward function: 1.0 when the completion's boxed answer equals the ``answer`` column by math-verify
    (:func:`verify`), else 0.0; NaN when that gold answer cannot be scored (TRL and lgrpo leave NaN rewards out of
    the group statistics). Logs the shares of unscorable golds, missing answers, time-outs and errors
    (:func:`log_verdicts`).
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
        self.timeout = timeout
        super().__init__(lambda completion, gold: verify(completion, gold, timeout=timeout), "math_reward")


# token ids whose text contains "}", per tokenizer: decoding a whole vocabulary once per generate call adds up
_BRACE_IDS: weakref.WeakKeyDictionary[Any, torch.Tensor] = weakref.WeakKeyDictionary()


def _closing_token_ids(tokenizer: Any) -> torch.Tensor:
    ids = _BRACE_IDS.get(tokenizer)
    if ids is None:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        ids = torch.tensor([i for i, t in enumerate(texts) if "}" in t], dtype=torch.long)
        _BRACE_IDS[tokenizer] = ids
    return ids


class BoxedStoppingCriteria(StoppingCriteria):
    """Stop each sequence of a ``generate`` call as soon as its first ``\\boxed{...}`` closes.

    Only the generated part is decoded. ``prompt_lengths`` (an int or one per row) gives where generation starts
    in ``input_ids``; by default it is taken from the first call of each ``generate`` (``input_ids`` then holds
    the padded prompt plus one new token). A new ``generate`` call is recognised by ``input_ids`` not being the
    previous call's ``input_ids`` plus one token; :meth:`reset` makes it explicit. A row is decoded only on steps
    whose new token contains ``}``, so the cost stays small (a box without braces, ``\\boxed 5``, is therefore seen
    at the next such token). Returns a bool tensor of shape (batch,).
    """

    def __init__(self, tokenizer: Any, prompt_lengths: int | Sequence[int] | None = None) -> None:
        self.tokenizer = tokenizer
        self.prompt_lengths = prompt_lengths
        self.reset()

    def reset(self) -> None:
        """Forget the previous ``generate`` call."""
        self._start: torch.Tensor | None = None
        self._done: torch.Tensor | None = None
        self._prev: torch.Tensor | None = None  # input_ids of the previous call

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        batch, length = input_ids.shape
        prev = self._prev
        if (
            self._done is None
            or prev is None
            or prev.shape != (batch, length - 1)
            or not torch.equal(input_ids[:, :-1], prev)
        ):  # a new generate call (a length check alone is fooled by a new prompt as long as the last text)
            if self.prompt_lengths is None:
                self._start = torch.full((batch,), length - 1, dtype=torch.long)
            elif isinstance(self.prompt_lengths, int):
                self._start = torch.full((batch,), self.prompt_lengths, dtype=torch.long)
            else:
                self._start = torch.as_tensor(list(self.prompt_lengths), dtype=torch.long)
            self._done = torch.zeros(batch, dtype=torch.bool)
        self._prev = input_ids
        assert self._start is not None
        candidates = torch.isin(input_ids[:, -1].cpu(), _closing_token_ids(self.tokenizer)) & ~self._done
        for row in candidates.nonzero().flatten().tolist():
            text = self.tokenizer.decode(input_ids[row, int(self._start[row]) :], skip_special_tokens=True)
            if boxed_closed(text):
                self._done[row] = True
        return self._done.clone().to(input_ids.device)  # type: ignore[return-value]


def boxed_cut_length(ids: Sequence[int], tokenizer: Any, eos_token_ids: Sequence[int] = ()) -> int | None:
    """Number of leading tokens of a completion up to and including the token that closes its first box.

    Works on token ids, for any tokenizer: with BPE the closing brace may share a token with other characters
    (SmolLM2 writes ``}}``, ``}{`` and ``}.`` as one token each), and that token is kept whole. Only the part before
    the first of ``eos_token_ids`` counts. Returns None when no box closes there (see :func:`boxed_closed`; a box
    without braces, ``\\boxed 5``, closes at the token after its argument).

    Why a search over decoded prefixes: a token's text depends on its neighbours (byte-level BPE), so the closing
    token is found as the shortest prefix whose decoded text has a closed box — monotone in the prefix length,
    found with ``O(log T)`` decodes.
    """
    ids = list(ids)
    stops = set(eos_token_ids)
    limit = next((i for i, t in enumerate(ids) if t in stops), len(ids))

    def closed(n: int) -> bool:
        return boxed_closed(tokenizer.decode(ids[:n], skip_special_tokens=True))

    if limit == 0 or not closed(limit):
        return None
    lo, hi = 1, limit  # invariant: closed(hi); the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if closed(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def cut_after_boxed(
    completion_ids: Sequence[Sequence[int]],
    tokenizer: Any,
    eos_token_id: int,
    logprobs: Sequence[Sequence[float | None]] | None = None,
) -> tuple[list[list[int]], list[list[float | None]] | None, list[bool]]:
    """Cut each completion after the token that closes its first ``\\boxed{…}`` and close it with ``eos_token_id``.

    The generation-side form of :func:`truncate_after_boxed`, for any generator (transformers, vLLM, …): a row
    whose box closes is ``ids[:n] + [eos]`` with ``n = boxed_cut_length(ids)``, so it ends with EOS and counts as
    terminated, and its EOS is trained like a generated one. ``logprobs`` (vLLM's sampling log-probabilities, one
    per token) are cut alike; the added EOS was not sampled, so it gets NaN, which TRL reads as "no
    importance-sampling correction". Rows without a closed box are returned unchanged.

    Args:
        completion_ids: ``B`` lists of token ids (no padding).
        tokenizer: decodes ids to text.
        eos_token_id: the token appended after the cut (for SmolLM2 also its pad token, ``<|im_end|>``).
        logprobs: optional, ``B`` lists of the same lengths as ``completion_ids``.

    Returns:
        ``(ids, logprobs or None, cut)`` where ``cut[i]`` says whether row ``i`` was cut (and closed with EOS).
    """
    if logprobs is not None and len(logprobs) != len(completion_ids):
        raise ValueError(f"logprobs: {len(logprobs)} rows for {len(completion_ids)} completions")
    out_ids, out_lp, cut = [], [] if logprobs is not None else None, []
    for i, row in enumerate(completion_ids):
        row = list(row)
        n = boxed_cut_length(row, tokenizer, (eos_token_id,))
        lp = None if logprobs is None else list(logprobs[i])
        if n is not None:
            row = [*row[:n], eos_token_id]
            if lp is not None:
                lp = [*lp[:n], float("nan")]
        out_ids.append(row)
        cut.append(n is not None)
        if out_lp is not None:
            out_lp.append(lp)
    return out_ids, out_lp, cut
