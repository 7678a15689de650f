"""The ``lgrpo train`` run config: dataclasses, YAML loading, dotted ``key=value`` overrides, validation.

Everything is checked here, before any model is built: an unknown key or a bad value raises ``ValueError`` naming
the key. ``TrainConfig()`` is the embedded CPU default (mirrored in ``configs/default.yaml``).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lgrpo.data import ANSWER_FORMATS
from lgrpo.objectives import LOSS_TYPES

WEIGHTINGS = ("lambda", "uniform")
TASKS = ("arithmetic", "openrs", "file", "reasoning_gym:<name>")
REWARDS = ("exact", "math_verify")


@dataclass
class ModelConfig:
    """The policy. ``name_or_path`` empty: a tiny model built from the fields below with a char tokenizer."""

    name_or_path: str | None = (
        None  # a Hub id, a local folder or a .gguf file; None = tiny model from this config
    )
    arch: str = "qwen2"  # tiny model: "qwen2" or "llama"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512
    # pretrained weights: "float32", "bfloat16", "float16" or "auto" = bfloat16 where the hardware computes it
    # natively (a CUDA GPU that supports it; a CPU with AVX512-BF16 or AMX), else float32 (lgrpo.models.resolve_dtype).
    # LoRA adapters stay float32 (PEFT); the supervised warm start always trains in float32.
    dtype: str = "float32"
    lora_r: int = (
        0  # 0 = full fine-tuning; > 0 = LoRA on `lora_target_modules` (reference = adapter disabled)
    )
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    save_merged: bool = False  # LoRA: also write the adapter merged into its base to OUT/final/merged


@dataclass
class DataConfig:
    """The problems (``lgrpo.tasks``; docs/training.md). ``task``: ``arithmetic`` (generated sums of ``n_terms``
    numbers of ``digits`` digits), ``openrs``, ``file`` (your own file at ``path``) or ``reasoning_gym:<name>``."""

    task: str = "arithmetic"
    path: str | None = (
        None  # openrs/file: a .jsonl/.json/.parquet file or dataset folder; openrs: None = `hub_id`
    )
    hub_id: str = "knoveleng/open-rs"
    problem_field: str = "problem"  # file: the field holding the problem
    answer_field: str = "answer"  # file: the field holding the gold answer
    answer_format: str = "plain"  # file: "plain" (the field is the answer) or "gsm8k" ("... #### 42")
    n_terms: int = 4
    digits: int = 1
    operators: str = "+"  # arithmetic: "+" (sums) or "+-" (each later term added or subtracted)
    # arithmetic: worked solutions "compact" (a+b=c lines) or "columns" (digit by digit, asking for the steps)
    style: str = "compact"
    # reasoning_gym: the dataset's own config (e.g. {min_terms: 2, max_terms: 3, min_digits: 1, max_digits: 2} for
    # chain_sum), passed to reasoning_gym.create_dataset; checked when the task is built
    options: dict[str, Any] = field(default_factory=dict)
    train_size: int = (
        4000  # arithmetic, reasoning_gym: generated training problems (openrs/file: all but held-out)
    )
    eval_size: int = 200  # held-out problems for greedy accuracy
    system_prompt: bool = False  # wrap prompts in the chat template with the math system prompt


@dataclass
class SFTConfig:
    """Supervised warm start on the task's worked solutions (arithmetic; file with gsm8k answers). ``steps: 0`` skips it."""

    steps: int = 250
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    lr_scheduler_type: str = "constant"  # or "cosine": decays to 0 by the last step, after the linear warmup


@dataclass
class RLConfig:
    """GRPO / λ-GRPO through ``LambdaGRPOTrainer``; names follow TRL's ``GRPOConfig`` where they exist."""

    weighting: str = field(default="lambda", metadata={"help": "λ-GRPO or GRPO", "choices": WEIGHTINGS})
    lambda_power: float = 1.0
    max_steps: int = field(default=400, metadata={"help": "RL optimizer steps"})
    learning_rate: float = 1e-4
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = 0
    optim: str = "adamw_torch"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    num_generations: int = 8  # group size
    prompts_per_step: int = 8
    micro_batch_size: int = 0  # completions per forward/backward; 0 = the whole step (prompts × group)
    num_iterations: int = 1  # μ
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_completion_length: int = 48
    beta: float = 0.0  # KL coefficient
    epsilon: float = 0.2
    loss_type: str = "dapo"  # METHOD.md §11: the paper does not say; see docs/training.md
    scale_rewards: str = "group"
    reward: str = (
        "exact"  # arithmetic: "exact" (boxed answer == gold) or "math_verify"; openrs always math_verify
    )
    verify_timeout: float = 5.0  # seconds math-verify may spend on one answer (reward and held-out scoring)
    format_weight: float = 0.0  # > 0: add a format reward (an answer in the asked form) with this weight
    # cut each completion after its first closed \boxed{} (any generator) and close it with EOS
    stop_after_boxed: bool = False
    use_vllm: str = "auto"  # "auto" = when vllm is importable, "true", "false"
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 1
    rollout_log: bool = True  # rollouts.jsonl, read by lgrpo analyze / inspect
    # any other LambdaGRPOConfig field (e.g. {epsilon_high: 0.28, report_to: [tensorboard]}); checked against its
    # fields when the run starts, before any work (experiments/train.py: build_grpo_config)
    trl: dict[str, Any] = field(default_factory=dict)
    # pack each group for the log-probs (exact; docs/tree_packing.md): "auto" (true) picks padded or tree
    # per call, whichever is predicted cheaper (prompt-once never costs less than the tree); "tree", "prompt_once" (each still falls back to padded where
    # it would not pay); "off" (false)
    tree_packing: str = "auto"
    tree_packing_always: bool = False  # pack every call, even where predicted slower (benchmarks)


@dataclass
class EvalConfig:
    """Held-out greedy accuracy: before RL, every ``every`` steps, and after RL."""

    every: int = 25  # 0 = before and after only
    batch_size: int = 200
    max_new_tokens: int = 48


@dataclass
class TrainConfig:
    seed: int = field(default=0, metadata={"help": "random seed"})
    threads: int = 0  # torch intra-op threads; 0 = min(cores, 4); the CLI sets OMP_WAIT_POLICY=PASSIVE
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ----------------------------------------------------------------------------------------------------------------
# loading and overrides


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` (a field annotation), or ValueError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0])
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str and isinstance(value, (str, int, float)):
        return str(value).lower() if isinstance(value, bool) else str(value)  # rl.use_vllm=true -> "true"
    raise ValueError(f"config key {key!r}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def config_keys(obj: Any = None, prefix: str = "") -> list[str]:
    """Every dotted key of a :class:`TrainConfig` (``rl.beta``, ``model.lora_r``, ...), sections excluded."""
    obj = TrainConfig() if obj is None else obj
    keys = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys += config_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def closest_key(key: str) -> str | None:
    """The config key a mistyped ``key`` most likely meant: the one key with the same last part (``lora_r`` →
    ``model.lora_r``), else the closest spelling (``difflib``, ratio ≥ 0.6); None when nothing is close."""
    keys = config_keys()
    last = key.rpartition(".")[2]
    same = [k for k in keys if k.rpartition(".")[2] == last]
    if len(same) == 1:
        return same[0]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return close[0] if close else None


def _apply(obj: Any, values: dict[str, Any], prefix: str, source: str) -> None:
    types_ = _field_types(type(obj))
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in types_:
            known = ", ".join(f"{prefix}{n}" for n in types_)
            guess = closest_key(key)
            hint = f"; did you mean {guess!r}?" if guess else ""
            raise ValueError(f"unknown config key {key!r}{source}{hint} (known: {known})")
        current = getattr(obj, name)
        if isinstance(current, dict):  # a free mapping (rl.trl): later sources add to it key by key
            if not isinstance(value, dict):
                raise ValueError(f"config key {key!r}{source}: expected a mapping, got {value!r}")
            current.update(value)
        elif dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(
                    f"config key {key!r}{source}: expected a mapping of its fields, got {value!r}"
                )
            _apply(current, value, f"{key}.", source)
        else:
            setattr(obj, name, _coerce(key, value, types_[name]))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """The default config, updated by the YAML file at ``path`` and then by ``key=value`` ``overrides``; validated."""
    cfg = TrainConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"--config: no such file {str(path)!r}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"--config {path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"--config {path}: expected a mapping at the top level")
        _apply(cfg, data, "", f" in {path}")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected key=value, e.g. rl.beta=0.04")
        value = yaml.safe_load(raw) if raw.strip() else None
        nested: dict[str, Any] = {}
        node = nested
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        _apply(cfg, nested, "", " (command line)")
    validate(cfg)
    return cfg


def _choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"config key {key!r}: expected one of {choices}, got {value!r}")


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value != value or value < 0 or (value == 0 and not allow_zero):  # value != value: NaN
        raise ValueError(
            f"config key {key!r}: expected a {'non-negative' if allow_zero else 'positive'} number, got {value!r}"
        )


def validate(cfg: TrainConfig) -> None:
    """Check values and their combinations; ValueError naming the key."""
    m, d, s, r, e = cfg.model, cfg.data, cfg.sft, cfg.rl, cfg.eval
    _choice("model.arch", m.arch, ("qwen2", "llama"))
    _choice("model.dtype", m.dtype, ("float32", "bfloat16", "float16", "auto"))
    for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
        _positive(f"model.{k}", getattr(m, k))
    if m.hidden_size % m.num_heads:
        raise ValueError(
            f"config key 'model.hidden_size': {m.hidden_size} is not divisible by model.num_heads"
        )
    _positive("model.lora_r", m.lora_r, allow_zero=True)
    _positive("model.lora_alpha", m.lora_alpha)
    if not 0 <= m.lora_dropout < 1:
        raise ValueError(f"config key 'model.lora_dropout': expected a value in [0, 1), got {m.lora_dropout}")
    name, _, arg = d.task.partition(":")
    if (name == "reasoning_gym") != bool(arg) or name not in {t.partition(":")[0] for t in TASKS}:
        raise ValueError(f"config key 'data.task': expected one of {TASKS}, got {d.task!r}")
    if d.task == "file" and not d.path:
        raise ValueError(
            "config key 'data.path': the file task needs a .jsonl/.json/.parquet file or dataset folder"
        )
    _choice("data.answer_format", d.answer_format, ANSWER_FORMATS)
    for key in ("problem_field", "answer_field"):
        if not getattr(d, key):
            raise ValueError(f"config key 'data.{key}': expected a field name, got {getattr(d, key)!r}")
    if d.task == "arithmetic" or name == "reasoning_gym":
        _positive("data.train_size", d.train_size)
    if d.task == "arithmetic":
        if d.n_terms < 2:
            raise ValueError(f"config key 'data.n_terms': expected >= 2, got {d.n_terms}")
        if not 1 <= d.digits <= 6:
            raise ValueError(f"config key 'data.digits': expected 1..6, got {d.digits}")
        _choice("data.operators", d.operators, ("+", "+-"))
        _choice("data.style", d.style, ("compact", "columns"))
    if d.options and name != "reasoning_gym":
        raise ValueError(
            f"config key 'data.options': only reasoning_gym tasks take dataset options, and data.task is {d.task!r}"
        )
    _positive("data.eval_size", d.eval_size)
    if d.task == "arithmetic":
        space = (
            10 if d.digits == 1 else 9 * 10 ** (d.digits - 1)
        ) ** d.n_terms  # distinct sums of n_terms numbers
        if d.train_size + d.eval_size > space:
            raise ValueError(
                f"config key 'data.train_size': {d.train_size} training + {d.eval_size} held-out problems "
                f"(data.eval_size) exceed the {space} distinct sums of data.n_terms={d.n_terms} "
                f"data.digits={d.digits} numbers"
            )
    if d.task == "openrs" and m.name_or_path is None:
        raise ValueError("config key 'model.name_or_path': the openrs task needs a pretrained model")
    for k in ("steps", "warmup_steps"):
        _positive(f"sft.{k}", getattr(s, k), allow_zero=True)
    _positive("sft.batch_size", s.batch_size)
    _positive("sft.learning_rate", s.learning_rate)
    _choice("sft.lr_scheduler_type", s.lr_scheduler_type, ("constant", "cosine"))
    _choice("rl.weighting", r.weighting, WEIGHTINGS)
    _choice("rl.tree_packing", r.tree_packing, ("auto", "tree", "prompt_once", "off", "true", "false"))
    _positive("rl.lambda_power", r.lambda_power, allow_zero=True)
    _positive("rl.max_steps", r.max_steps)
    _positive("rl.learning_rate", r.learning_rate)
    _positive("rl.weight_decay", r.weight_decay, allow_zero=True)
    _positive("rl.warmup_steps", r.warmup_steps, allow_zero=True)
    _positive("rl.max_grad_norm", r.max_grad_norm, allow_zero=True)
    if r.num_generations < 2:
        raise ValueError(
            f"config key 'rl.num_generations': GRPO needs a group of at least 2, got {r.num_generations}"
        )
    _positive("rl.prompts_per_step", r.prompts_per_step)
    _positive("rl.micro_batch_size", r.micro_batch_size, allow_zero=True)
    batch = r.prompts_per_step * r.num_generations
    if r.micro_batch_size and batch % r.micro_batch_size:
        raise ValueError(
            f"config key 'rl.micro_batch_size': {r.micro_batch_size} does not divide the "
            f"{batch} completions of a step (rl.prompts_per_step × rl.num_generations)"
        )
    _positive("rl.num_iterations", r.num_iterations)
    _positive("rl.temperature", r.temperature)
    if not 0 < r.top_p <= 1:
        raise ValueError(f"config key 'rl.top_p': expected a value in (0, 1], got {r.top_p}")
    _positive("rl.top_k", r.top_k, allow_zero=True)
    _positive("rl.max_completion_length", r.max_completion_length)
    _positive("rl.beta", r.beta, allow_zero=True)
    _positive("rl.epsilon", r.epsilon)
    _choice("rl.loss_type", r.loss_type, tuple(LOSS_TYPES))
    _choice("rl.scale_rewards", r.scale_rewards, ("group", "batch", "none"))
    _choice("rl.reward", r.reward, REWARDS)
    _positive("rl.verify_timeout", r.verify_timeout)
    _positive("rl.format_weight", r.format_weight, allow_zero=True)
    _choice("rl.use_vllm", r.use_vllm, ("auto", "true", "false"))
    _positive("rl.save_steps", r.save_steps)
    _positive("rl.save_total_limit", r.save_total_limit)
    _positive("rl.logging_steps", r.logging_steps)
    _positive("eval.every", e.every, allow_zero=True)
    _positive("eval.batch_size", e.batch_size)
    _positive("eval.max_new_tokens", e.max_new_tokens)
    if e.every and e.every % r.logging_steps:
        raise ValueError(
            f"config key 'eval.every': {e.every} must be a multiple of rl.logging_steps ({r.logging_steps}) "
            "so eval/accuracy lands on a logged line"
        )
    _positive("threads", cfg.threads, allow_zero=True)


def add_flags(parser: argparse.ArgumentParser, keys: tuple[str, ...]) -> None:
    """Add ``--<name>`` for each dotted config key (``rl.max_steps`` → ``--max-steps``), its type, choices and help
    taken from the field (its ``metadata``); :func:`flag_overrides` turns the given ones into ``key=value``."""
    for key in keys:
        cls, name = TrainConfig, key
        while "." in name:
            head, name = name.split(".", 1)
            cls = _field_types(cls)[head]
        f = next(f for f in dataclasses.fields(cls) if f.name == name)
        tp = _field_types(cls)[name]
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"config_{key.replace('.', '__')}",
            type=tp,
            choices=f.metadata.get("choices"),
            metavar=None if "choices" in f.metadata else name.upper(),
            help=f"{f.metadata.get('help', name)} ({key})",
        )


def flag_overrides(args: argparse.Namespace, keys: tuple[str, ...]) -> list[str]:
    """``key=value`` for each flag of :func:`add_flags` that was given."""
    values = ((key, getattr(args, f"config_{key.replace('.', '__')}", None)) for key in keys)
    return [f"{key}={value}" for key, value in values if value is not None]


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
