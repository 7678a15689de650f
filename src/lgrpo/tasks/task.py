"""One Task interface and the registry of tasks that ``lgrpo train``, ``lgrpo compare`` and ``lgrpo eval`` use.

A :class:`Task` is everything a run needs to know about its problems:

- ``train`` / ``held_out``: rows ``{"problem": str, "answer": str, ...}`` (extra columns are passed to the reward
  functions, e.g. reasoning-gym's ``rg_index``); :meth:`Task.train_rows` turns them into TRL rows with a ``prompt``;
- ``prompt_format``: how a problem becomes a prompt (:class:`PromptFormat`), the same for training, the held-out
  evaluation inside ``lgrpo train`` and ``lgrpo eval --model RUN``;
- ``reward_funcs`` and ``reward_weights``: TRL reward functions (correctness first, then e.g. a format reward);
- ``check``: the verdict on one completion for one row (held-out accuracy), the correctness reward's own check;
- ``solutions``: worked solutions of the training rows for a supervised warm start, or None.

Tasks (``data.task``): ``arithmetic``, ``openrs``, ``file`` (the user's own ``.jsonl``/``.json``/``.parquet`` file or
``datasets`` folder, fields named in the config) and ``reasoning_gym:<name>`` (any reasoning-gym dataset, its own
scorer as the reward). :func:`register_task` adds one.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lgrpo.data import gold_and_solution, read_rows

if TYPE_CHECKING:
    from lgrpo.experiments.config import TrainConfig
    from lgrpo.tasks.math_answers import Verdict


@dataclass(frozen=True)
class PromptFormat:
    """How a problem becomes a prompt.

    ``chat``: the prompt is chat messages (``system_prompt`` as the system message when given, then the problem as the
    user message), rendered by the tokenizer's chat template; otherwise plain text: the problem, preceded by
    ``system_prompt`` and a blank line when given.
    """

    system_prompt: str | None = None
    chat: bool = False

    def prompt(self, problem: str) -> str | list[dict[str, str]]:
        """The prompt as TRL takes it: chat messages, or a string."""
        if self.chat:
            messages = [{"role": "user", "content": problem}]
            if self.system_prompt:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            return messages
        return f"{self.system_prompt}\n\n{problem}\n" if self.system_prompt else problem

    def text(self, problem: str, tokenizer: Any) -> str:
        """The prompt as the text the model reads (chat template applied, generation prompt opened)."""
        prompt = self.prompt(problem)
        if isinstance(prompt, str):
            return prompt
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the prompt format is chat messages but the tokenizer has no chat template")
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    @property
    def add_special_tokens(self) -> bool:
        """Whether tokenizing :meth:`text` adds the tokenizer's special tokens (e.g. BOS), as TRL tokenizes prompts in
        training: not for a chat template, whose text already holds them (a template that writes ``bos_token``
        gives one BOS), and the tokenizer's defaults for plain text. The one rule for every path that tokenizes a
        prompt (warm start, RL, ``lgrpo eval`` with either backend)."""
        return not self.chat

    def token_ids(self, problems: list[str], tokenizer: Any) -> list[list[int]]:
        """The token ids of each problem's prompt, unpadded (see :attr:`add_special_tokens`)."""
        texts = [self.text(p, tokenizer) for p in problems]
        return tokenizer(texts, add_special_tokens=self.add_special_tokens)["input_ids"]

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> PromptFormat:
        """The run's format: ``data.system_prompt: true`` = the paper's system prompt through the chat template,
        ``false`` = the bare problem as plain text."""
        from lgrpo.tasks.math_answers import SYSTEM_PROMPT

        return cls(SYSTEM_PROMPT, chat=True) if cfg.data.system_prompt else cls()

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> PromptFormat:
        """The format for a model without a run config: the paper's system prompt, through the chat template when
        the tokenizer has one (as ``data.system_prompt: true``), else as plain text before the problem."""
        from lgrpo.tasks.math_answers import SYSTEM_PROMPT

        return cls(SYSTEM_PROMPT, chat=bool(getattr(tokenizer, "chat_template", None)))


Check = Callable[[str, str], "Verdict"]  # (completion, gold answer) -> verdict


@dataclass
class Task:
    """A training task; see the module docstring."""

    name: str
    train: list[dict[str, Any]]
    held_out: list[dict[str, Any]]
    prompt_format: PromptFormat
    reward_funcs: list[Any]
    check: Callable[[str, dict[str, Any]], Verdict]
    reward_weights: list[float] = field(default_factory=list)
    solutions: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.reward_weights:
            self.reward_weights = [1.0] * len(self.reward_funcs)
        if len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(
                f"task {self.name!r}: {len(self.reward_weights)} reward weights for {len(self.reward_funcs)} functions"
            )
        if self.solutions is not None and len(self.solutions) != len(self.train):
            raise ValueError(
                f"task {self.name!r}: {len(self.solutions)} solutions for {len(self.train)} rows"
            )
        if not self.train or not self.held_out:
            raise ValueError(
                f"task {self.name!r}: {len(self.train)} training and {len(self.held_out)} held-out rows"
            )

    def train_rows(self) -> list[dict[str, Any]]:
        """TRL's dataset rows: ``prompt`` (in the task's format) and every other column but ``problem``."""
        return [
            {
                "prompt": self.prompt_format.prompt(r["problem"]),
                **{k: v for k, v in r.items() if k != "problem"},
            }
            for r in self.train
        ]

    def texts(self) -> Iterator[str]:
        """Every text of the task (prompts, answers, solutions): what a character tokenizer must cover."""
        fmt = self.prompt_format
        for row in (*self.train, *self.held_out):
            prompt = fmt.prompt(row["problem"])
            yield prompt if isinstance(prompt, str) else "".join(m["content"] for m in prompt)
            yield str(row["answer"])
        yield from self.solutions or []


# ----------------------------------------------------------------------------------------------------------------
# answer checks and the rewards built on them


def exact_check(completion: str, gold: str) -> Verdict:
    """1.0 when the completion's first boxed answer equals ``gold`` as a string (both stripped), else 0.0."""
    from lgrpo.tasks.math_answers import Verdict, extract_boxed

    answer = extract_boxed(completion)
    if answer is None:
        return Verdict(0.0, "no_answer")
    return Verdict(float(answer == str(gold).strip()), None)


def answer_check(cfg: TrainConfig) -> Check:
    """The run's check of a completion against a gold answer: exact match for ``arithmetic`` with ``rl.reward:
    exact``, else math-verify (:func:`lgrpo.tasks.math_answers.verify`) with ``rl.verify_timeout``."""
    if cfg.data.task == "arithmetic" and cfg.rl.reward == "exact":
        return exact_check
    from lgrpo.tasks.math_answers import verify

    timeout = cfg.rl.verify_timeout
    return lambda completion, gold: verify(completion, gold, timeout=timeout)


class AnswerReward:
    """TRL reward function: ``check(completion, answer)`` per completion (NaN when the gold cannot be scored).

    Logs the shares of unscorable golds, missing answers, time-outs and errors through TRL's ``log_metric``
    (:func:`lgrpo.tasks.math_answers.log_verdicts`).
    """

    def __init__(self, check: Check, name: str) -> None:
        self.check = check
        self.__name__ = name  # TRL names the reward's metrics after it

    def __call__(
        self, prompts: Any, completions: list, answer: list[str], log_metric: Any = None, **kwargs: Any
    ) -> list[float]:
        from lgrpo.tasks.math_answers import _completion_text, log_verdicts

        verdicts = [self.check(_completion_text(c), a) for c, a in zip(completions, answer, strict=True)]
        log_verdicts(verdicts, log_metric)
        return [v.score for v in verdicts]


class FormatReward:
    """TRL reward function: 1.0 when the completion gives an answer in the asked format (``extract`` finds one)."""

    __name__ = "format"

    def __init__(self, extract: Callable[[str], str | None] | None = None) -> None:
        from lgrpo.tasks.math_answers import extract_boxed

        self.extract = extract or extract_boxed

    def __call__(self, prompts: Any, completions: list, **kwargs: Any) -> list[float]:
        from lgrpo.tasks.math_answers import _completion_text

        return [float(self.extract(_completion_text(c)) is not None) for c in completions]


def _answer_task(
    cfg: TrainConfig, name: str, train: list[dict], held: list[dict], solutions: list[str] | None
) -> Task:
    """A task whose rows carry a gold ``answer`` checked by :func:`answer_check`."""
    check = answer_check(cfg)
    funcs: list[Any] = [AnswerReward(check, "exact_answer" if check is exact_check else "math_reward")]
    weights = [1.0]
    if cfg.rl.format_weight:
        funcs.append(FormatReward())
        weights.append(cfg.rl.format_weight)
    task = Task(
        name,
        train,
        held,
        PromptFormat.from_config(cfg),
        funcs,
        lambda completion, row: check(completion, row["answer"]),
        weights,
        solutions,
    )
    if check is not exact_check:
        report_unscorable(task, cfg.rl.verify_timeout)
    return task


def report_unscorable(task: Task, timeout: float, examples: int = 3, file: Any = None) -> int:
    """Check every gold answer of ``task`` with math-verify; print how many cannot be scored, with examples.

    Returns the number of unscorable rows (training and held-out). Their reward is NaN and they are left out of
    held-out accuracy; they stay in the data.
    """
    from tqdm.auto import tqdm

    from lgrpo.tasks.math_answers import gold_problem

    bad: list[tuple[str, str]] = []
    n = 0
    rows = (*task.train, *task.held_out)
    # about 2-10 ms a distinct gold (math-verify in the worker): a bar for the large sets (OpenRS: 7,000 rows)
    for row in tqdm(rows, desc=f"checking {task.name}'s gold answers", disable=len(rows) < 1000, leave=False):
        problem = gold_problem(str(row["answer"]), timeout)
        if problem is not None and not (problem == "timeout" or problem.startswith("error")):
            n += 1
            if len(bad) < examples:
                bad.append((str(row["answer"]), problem))
    if n and int(os.environ.get("RANK", "0")) == 0:  # one report on several processes
        total = len(task.train) + len(task.held_out)
        shown = "; ".join(f"{gold[:60]!r}: {why}" for gold, why in bad)
        print(
            f"task {task.name}: {n} of {total} gold answers cannot be scored (reward NaN, left out of held-out "
            f"accuracy), e.g. {shown}",
            file=file or sys.stderr,
        )
    return n


# ----------------------------------------------------------------------------------------------------------------
# the tasks


def _arithmetic(cfg: TrainConfig, arg: str) -> Task:
    from lgrpo.tasks import arithmetic

    d = cfg.data
    train, held = arithmetic.splits(
        d.train_size, d.eval_size, d.n_terms, d.digits, seed=cfg.seed, operators=d.operators, style=d.style
    )
    rows = [{"problem": p.prompt, "answer": p.answer} for p in train]
    held_rows = [{"problem": p.prompt, "answer": p.answer} for p in held]
    return _answer_task(cfg, "arithmetic", rows, held_rows, [p.solution for p in train])


def split_held_out(items: list, eval_size: int, seed: int, source: str) -> tuple[list, list]:
    """(train, held-out): a seeded random sample of ``eval_size`` items is held out."""
    from lgrpo.models import LoadError

    if eval_size >= len(items):
        raise LoadError(f"{source} has {len(items)} rows; data.eval_size={eval_size} leaves none to train on")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held = set(order[:eval_size])
    return [items[i] for i in order if i not in held], [items[i] for i in order[:eval_size]]


def _file(cfg: TrainConfig, arg: str) -> Task:
    from lgrpo.models import LoadError

    d = cfg.data
    if not d.path:
        raise LoadError(
            "config key 'data.path': the file task needs a .jsonl/.json/.parquet file or dataset folder"
        )
    source = f"data.path={d.path!r}"
    fields = (d.problem_field, d.answer_field)
    hint = "name the fields with data.problem_field and data.answer_field"
    items = []
    for where, r in read_rows(d.path, fields, source, hint, located=True):
        gold, solution = gold_and_solution(r[d.answer_field], d.answer_format, where)
        items.append(({"problem": str(r[d.problem_field]), "answer": gold}, solution))
    train, held = split_held_out(items, d.eval_size, cfg.seed, source)
    solutions = [s for _, s in train]
    return _answer_task(
        cfg, "file", [r for r, _ in train], [r for r, _ in held], solutions if all(solutions) else None
    )


def _openrs(cfg: TrainConfig, arg: str) -> Task:
    from lgrpo.tasks.openrs import load_openrs

    d = cfg.data
    train, held = load_openrs(d.path, d.hub_id, d.eval_size, seed=cfg.seed)
    return _answer_task(cfg, "openrs", train, held, None)


def _reasoning_gym(cfg: TrainConfig, name: str) -> Task:
    from lgrpo.tasks.reasoning_gym import ReasoningGymReward, extract_answer, reasoning_gym_dataset

    d = cfg.data
    size = d.train_size + d.eval_size
    try:
        rows, reward = reasoning_gym_dataset(name, size=size, seed=cfg.seed, system_prompt=None, **d.options)
    except ValueError as e:
        raise ValueError(f"config key 'data.options' ({d.task}): {e}" if d.options else str(e)) from None
    items = [
        {"problem": r["entry"]["question"], "answer": r["answer"], "rg_index": r["rg_index"]} for r in rows
    ]
    train = items[: d.train_size]
    seen = {r["problem"] for r in train}
    held = [r for r in items[d.train_size :] if r["problem"] not in seen]  # a question is never in both
    funcs: list[Any] = [reward]
    weights = [1.0]
    if cfg.rl.format_weight:
        funcs.append(FormatReward(extract_answer))
        weights.append(cfg.rl.format_weight)

    def check(completion: str, row: dict) -> Verdict:
        return reward.check(completion, row["rg_index"])

    assert isinstance(reward, ReasoningGymReward)
    return Task(f"reasoning_gym:{name}", train, held, PromptFormat.from_config(cfg), funcs, check, weights)


TASKS: dict[str, Callable[[TrainConfig, str], Task]] = {
    "arithmetic": _arithmetic,
    "openrs": _openrs,
    "file": _file,
    "reasoning_gym": _reasoning_gym,
}


def register_task(name: str, build: Callable[[TrainConfig, str], Task]) -> None:
    """Make ``data.task=name`` (or ``name:arg``) build its task with ``build(cfg, arg)``."""
    TASKS[name] = build


def build_task(cfg: TrainConfig) -> Task:
    """The task named by ``data.task`` (``name`` or ``name:arg``), built from the config.

    Raises ``ValueError`` naming ``data.task`` for an unknown task and :class:`lgrpo.models.LoadError` when its data
    cannot be loaded.
    """
    name, _, arg = cfg.data.task.partition(":")
    if name not in TASKS:
        raise ValueError(
            f"config key 'data.task': unknown task {cfg.data.task!r} (known: {', '.join(TASKS)})"
        )
    return TASKS[name](cfg, arg)
