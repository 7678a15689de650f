"""``lgrpo train``: supervised warm start, then GRPO / λ-GRPO with ``LambdaGRPOTrainer``; resumable.

With no ``--config`` it runs the embedded CPU default (``configs/default.yaml``): a tiny Qwen2 model with a char
tokenizer, warm-started on worked solutions of 4-term one-digit sums, then λ-GRPO. What it writes (config, metrics,
rollout log, summary, warm start, checkpoints) and how a run resumes: :mod:`lgrpo.experiments.run_folder`. Under
``accelerate launch``/``torchrun`` every process trains and evaluates its share; only the main process writes.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import math
import os
import random
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from lgrpo.experiments.config import TrainConfig, add_flags, flag_overrides, load_config, to_dict
from lgrpo.experiments.run_folder import CKPT_DIR, MERGED_DIR, SFT_DONE, RunFolder, checkpoint_step
from lgrpo.models import LoadError, check_model_source
from lgrpo.tasks import Task, build_task

FLAGS = ("rl.max_steps", "rl.weighting", "seed")  # config keys that have a flag of their own

# ----------------------------------------------------------------------------------------------------------------
# model


def build_model(cfg: TrainConfig, task: Task | None = None, dtype: str | None = None):
    """(model, tokenizer): the tiny model from the config, or any checkpoint (:func:`lgrpo.models.load_model`) in
    ``dtype`` (default: ``model.dtype`` resolved by :func:`lgrpo.models.resolve_dtype`).

    The tiny model's character tokenizer covers printable ASCII plus every other character of ``task``'s text; it is
    saved with the run's models, and :func:`lgrpo.models.load_tokenizer` rebuilds it with the same ids.
    """
    from lgrpo import models

    m = cfg.model
    if m.name_or_path is None:
        tok = models.char_tokenizer("".join(set("".join(task.texts()))) if task is not None else "")
        model = models.tiny_causal_lm(
            tok, m.arch, m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size, seed=cfg.seed
        )
        return model, tok
    return models.load_model(m.name_or_path, dtype or models.resolve_dtype(m.dtype))


def set_threads(cfg: TrainConfig) -> int:
    """Set torch's intra-op thread count: ``cfg.threads``, or min(cores, 4) when it is 0; returns it.

    The ``lgrpo`` command line also lets idle OpenMP threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``, set before
    torch loads, unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``: :func:`lgrpo.cli.passive_openmp_wait`):
    beside one other busy process on 2 cores a step then took 1.4-1.9× its quiet time instead of 5-11×, for
    20-25 % of quiet speed (``benchmarks/threads.py``; docs/training.md, "Determinism and threads").
    """
    import torch

    n = cfg.threads or max(1, min(os.cpu_count() or 1, 4))
    torch.set_num_threads(n)
    return n


# ----------------------------------------------------------------------------------------------------------------
# held-out evaluation


def eval_shard(n: int, rank: int, world: int) -> list[int]:
    """The held-out prompt indices process ``rank`` of ``world`` evaluates: every ``world``-th from ``rank``, padded
    by repeating one of them (prompt 0 when it has none) to ``ceil(n / world)``, so that every process makes the
    same ``generate`` calls; a repeat's score is dropped when the scores are gathered."""
    mine = list(range(rank, n, world))
    return mine + [mine[0] if mine else 0] * (-(-n // world) - len(mine))


def evaluate(model, tokenizer, task: Task, cfg: TrainConfig) -> float:
    """Greedy accuracy on the held-out rows: the decoding path of ``lgrpo eval``
    (:func:`lgrpo.evaluation.generate.greedy_completions`) and the task's check; unscorable golds are left out.

    On several processes each takes every ``num_processes``-th prompt and the scores are gathered; every process
    runs the same number of ``generate`` calls (a short shard repeats a prompt whose score is dropped), as ZeRO-3
    needs every rank in each forward pass.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    from lgrpo.evaluation.generate import greedy_completions

    state = PartialState()
    n, world = len(task.held_out), state.num_processes
    mine = eval_shard(n, state.process_index, world)
    problems = [task.held_out[j]["problem"] for j in mine]
    completions = greedy_completions(
        model, tokenizer, task.prompt_format, problems, cfg.eval.max_new_tokens, cfg.eval.batch_size
    )
    texts = [text for batch in completions for text in batch]
    scored = [(j, task.check(text, task.held_out[j]).score) for j, text in zip(mine, texts, strict=True)]
    if world > 1:
        scored = gather_object(scored)
    scores = dict(scored).values()  # a padded repeat collapses onto its prompt
    scorable = [x for x in scores if not math.isnan(x)]  # unscorable golds are left out
    return sum(scorable) / len(scorable) if scorable else math.nan


# ----------------------------------------------------------------------------------------------------------------
# supervised warm start


def sft_examples(task: Task, tokenizer) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, worked solution ids + EOS) of each training row with a solution; empty when the task has none.

    The prompt is tokenized as RL and evaluation tokenize it (:meth:`PromptFormat.token_ids`: e.g. BOS for a plain-text
    prompt when the tokenizer adds one), so the warm start trains on the sequences RL starts from.
    """
    rows = list(zip(task.train, task.solutions or []))
    if not rows:
        return []
    prompts = task.prompt_format.token_ids([row["problem"] for row, _ in rows], tokenizer)
    eos = [tokenizer.eos_token_id]
    return [
        (p, tokenizer(sol, add_special_tokens=False)["input_ids"] + eos) for p, (_, sol) in zip(prompts, rows)
    ]


def sft_learning_rate(s, step: int) -> float:
    """The warm start's learning rate at ``step`` (1-based) of ``s.steps``: linear warmup over ``s.warmup_steps``,
    then constant, or with ``s.lr_scheduler_type == "cosine"`` a half cosine from ``s.learning_rate`` (first step after
    the warmup) down to 0 one step after the last (the shape of transformers' ``get_cosine_schedule_with_warmup``)."""
    if step <= s.warmup_steps:
        return s.learning_rate * step / max(1, s.warmup_steps)
    if s.lr_scheduler_type == "constant":
        return s.learning_rate
    progress = (step - s.warmup_steps - 1) / max(1, s.steps - s.warmup_steps)
    return s.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def sft(model, tokenizer, task: Task, cfg: TrainConfig, out: Path | None) -> None:
    """Teacher-forced cross-entropy on the worked solutions (loss on solution tokens + EOS only); saves to ``out``
    (atomically) unless it is None (the other processes of a multi-process run)."""
    import torch
    from tqdm.auto import tqdm

    s = cfg.sft
    rng = random.Random(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, weight_decay=0.0)
    encoded = sft_examples(task, tokenizer)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        bar = tqdm(range(1, s.steps + 1), desc="sft", unit="step", dynamic_ncols=True, disable=out is None)
        for step in bar:
            batch = rng.sample(encoded, min(s.batch_size, len(encoded)))
            length = max(len(p) + len(c) for p, c in batch)
            ids = torch.full((len(batch), length), tokenizer.pad_token_id)
            labels = torch.full((len(batch), length), -100)
            attn = torch.zeros((len(batch), length), dtype=torch.long)
            for row, (p, c) in enumerate(batch):  # right padding; builds a [B, T] batch once per step
                n = len(p) + len(c)
                ids[row, :n] = torch.tensor(p + c)
                labels[row, len(p) : n] = torch.tensor(c)
                attn[row, :n] = 1
            for group in opt.param_groups:
                group["lr"] = sft_learning_rate(s, step)
            loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if out is None:
        return
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / SFT_DONE).write_text(json.dumps({"steps": s.steps, "final_loss": loss.item()}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # atomic: a killed warm start leaves no half-written `sft/`


def load_sft(path: Path, cfg: TrainConfig):
    """A saved model folder, by absolute path: TRL (β > 0 reference) and PEFT (an adapter's base) load it again.
    Loaded in ``model.dtype`` (resolved; the warm start itself is saved in float32)."""
    from lgrpo.models import load_model, resolve_dtype

    return load_model(str(Path(path).resolve()), resolve_dtype(cfg.model.dtype))


def save_final(trainer, tokenizer, cfg: TrainConfig, folder: RunFolder) -> Path:
    """``OUT/final``: the LoRA adapter (its base model named by absolute path) or the fully fine-tuned model, with
    the tokenizer; with ``model.save_merged`` and LoRA also the merged model in ``OUT/final/merged``."""
    final = folder.final
    if folder.main:
        shutil.rmtree(final, ignore_errors=True)
    trainer.save_model(str(final))  # every process takes part (sharded models); the main one writes
    if folder.main:
        tokenizer.save_pretrained(final)
        if cfg.model.save_merged and cfg.model.lora_r > 0:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(final / MERGED_DIR)
            tokenizer.save_pretrained(final / MERGED_DIR)
    return final


# ----------------------------------------------------------------------------------------------------------------
# RL


def use_vllm(cfg: TrainConfig) -> bool:
    if cfg.rl.use_vllm != "auto":
        return cfg.rl.use_vllm == "true"
    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def build_grpo_config(cfg: TrainConfig, out_dir: str | Path):
    """The ``LambdaGRPOConfig`` of a run (one optimizer step per generation batch of prompts × group).

    Checks the settings that only TRL/transformers can (scheduler, optimizer, vLLM) first, naming the config key.
    """
    import torch
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    r = cfg.rl
    for key, value, names in (
        ("rl.lr_scheduler_type", r.lr_scheduler_type, [s.value for s in SchedulerType]),
        ("rl.optim", r.optim, [o.value for o in OptimizerNames]),
    ):
        if value not in names:
            raise ValueError(f"config key {key!r}: expected one of {', '.join(names)}; got {value!r}")
    if r.use_vllm == "true" and importlib.util.find_spec("vllm") is None:
        raise ValueError(
            "config key 'rl.use_vllm': 'true' but vllm is not installed (pip install 'trl[vllm]'), "
            "or use rl.use_vllm=auto"
        )
    batch = r.prompts_per_step * r.num_generations
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun / accelerate launch
    if batch % world:
        raise ValueError(
            f"config key 'rl.prompts_per_step': the {batch} completions of a step (rl.prompts_per_step × "
            f"rl.num_generations) do not split over {world} processes"
        )
    micro = r.micro_batch_size or batch // world  # completions per forward/backward, per process
    if (batch // world) % micro:
        raise ValueError(
            f"config key 'rl.micro_batch_size': {micro} does not divide the {batch // world} completions each of "
            f"the {world} processes takes per step (rl.prompts_per_step × rl.num_generations / processes)"
        )
    cuda = torch.cuda.is_available()
    pretrained = cfg.model.name_or_path is not None
    with warnings.catch_warnings():  # transformers renames gradient_checkpointing; TRL still sets it
        warnings.simplefilter("ignore", FutureWarning)
        return _lambda_grpo_config(cfg, out_dir, batch, micro, world, cuda, pretrained)


def _lambda_grpo_config(
    cfg: TrainConfig, out_dir, batch: int, micro: int, world: int, cuda: bool, pretrained: bool
):
    import dataclasses

    from lgrpo.engines.trl import LambdaGRPOConfig, _refused_options
    from lgrpo.models import resolve_dtype

    r, per_step = cfg.rl, "rl.prompts_per_step, rl.num_generations, rl.micro_batch_size"
    own: dict[str, tuple[Any, str]] = {  # LambdaGRPOConfig field: (value, where lgrpo takes it from)
        "output_dir": (str(Path(out_dir) / CKPT_DIR), "--out"),
        "weighting": (r.weighting, "rl.weighting"),
        "lambda_power": (r.lambda_power, "rl.lambda_power"),
        "rollout_log": (r.rollout_log, "rl.rollout_log"),
        "stop_after_boxed": (r.stop_after_boxed, "rl.stop_after_boxed"),
        "tree_packing": (r.tree_packing, "rl.tree_packing"),
        "tree_packing_always": (r.tree_packing_always, "rl.tree_packing_always"),
        "max_steps": (r.max_steps, "rl.max_steps"),
        "learning_rate": (r.learning_rate, "rl.learning_rate"),
        "lr_scheduler_type": (r.lr_scheduler_type, "rl.lr_scheduler_type"),
        "warmup_steps": (r.warmup_steps, "rl.warmup_steps"),
        "optim": (r.optim, "rl.optim"),
        "weight_decay": (r.weight_decay, "rl.weight_decay"),
        "max_grad_norm": (r.max_grad_norm, "rl.max_grad_norm"),
        "per_device_train_batch_size": (micro, per_step),
        "gradient_accumulation_steps": (batch // (micro * world), per_step),
        "num_generations": (r.num_generations, "rl.num_generations"),
        "num_iterations": (r.num_iterations, "rl.num_iterations"),
        "temperature": (r.temperature, "rl.temperature"),
        "top_p": (r.top_p, "rl.top_p"),
        "top_k": (r.top_k, "rl.top_k"),
        "max_completion_length": (r.max_completion_length, "rl.max_completion_length"),
        "beta": (r.beta, "rl.beta"),
        # METHOD.md §1/§4: the KL term is D, not P·D (TRL's default multiplies by P)
        "use_bias_correction_kl": (False, "lgrpo train (METHOD.md's KL term)"),
        "epsilon": (r.epsilon, "rl.epsilon"),
        "loss_type": (r.loss_type, "rl.loss_type"),
        "scale_rewards": (r.scale_rewards, "rl.scale_rewards"),
        "use_vllm": (use_vllm(cfg), "rl.use_vllm"),
        "save_steps": (r.save_steps, "rl.save_steps"),
        "save_total_limit": (r.save_total_limit, "rl.save_total_limit"),
        "logging_steps": (r.logging_steps, "rl.logging_steps"),
        "seed": (cfg.seed, "seed"),
        "data_seed": (cfg.seed, "seed"),
        "bf16": (cuda and resolve_dtype(cfg.model.dtype) == "bfloat16", "model.dtype"),
        "use_cpu": (not cuda, "lgrpo train (CUDA when there is one)"),
    }
    defaults = {  # lgrpo's choices where TRL's differ; rl.trl may change them
        "log_prm_stats": True,
        "vllm_mode": "colocate",
        "save_strategy": "steps",
        "report_to": "none",
        # saves GPU memory for real models; on a CPU it only costs time (and generation loses its KV cache)
        "gradient_checkpointing": pretrained and cuda,
        "dataloader_num_workers": 0,
        "log_completions": False,
        "disable_tqdm": False,
    }
    fields = {f.name for f in dataclasses.fields(LambdaGRPOConfig) if f.init}
    for key in r.trl:
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=1)
            raise ValueError(
                f"config key 'rl.trl.{key}': LambdaGRPOConfig (TRL's GRPOConfig) has no field {key!r}"
                + (f"; did you mean 'rl.trl.{close[0]}'?" if close else "")
            )
        if key in own:
            raise ValueError(
                f"config key 'rl.trl.{key}': lgrpo sets {key} from {own[key][1]}; set that instead"
            )
    kwargs = {k: v for k, (v, _) in own.items()} | defaults | r.trl
    try:
        args = LambdaGRPOConfig(**kwargs)
    except (ValueError, TypeError) as e:
        if not r.trl:
            raise
        raise ValueError(
            f"config key 'rl.trl' ({', '.join(r.trl)}): LambdaGRPOConfig refused it: {e}"
        ) from None
    refused = _refused_options(args)  # what LambdaGRPOTrainer would refuse when built, after the warm start
    if refused:
        raise ValueError(f"config key 'rl.trl': {'; '.join(refused)}")
    _check_report_to(args.report_to)
    return args


def _check_report_to(report_to: list[str]) -> None:
    """A logging backend whose package is missing fails here, not after the warm start (transformers' callbacks
    raise only when the trainer is built)."""
    from transformers.integrations import get_available_reporting_integrations

    available = set(get_available_reporting_integrations())
    missing = [name for name in report_to if name not in ("none", "all") and name not in available]
    if missing:
        raise ValueError(
            f"config key 'rl.trl.report_to': {', '.join(missing)} is not installed here "
            f"(available: {', '.join(sorted(available)) or 'none'}); pip install {' '.join(missing)}"
        )


def lora_config(cfg: TrainConfig):
    if cfg.model.lora_r == 0:
        return None
    from peft import LoraConfig

    m = cfg.model
    targets = (
        m.lora_target_modules
        if m.lora_target_modules == "all-linear"
        else [t.strip() for t in m.lora_target_modules.split(",")]
    )
    return LoraConfig(
        r=m.lora_r,
        lora_alpha=m.lora_alpha,
        lora_dropout=m.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def check_lora_targets(cfg: TrainConfig, model) -> None:
    """ValueError naming ``model.lora_target_modules`` when a listed module name matches no module of ``model``."""
    m = cfg.model
    if m.lora_r == 0 or m.lora_target_modules == "all-linear":
        return
    names = [n for n, _ in model.named_modules()]
    targets = [t.strip() for t in m.lora_target_modules.split(",")]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names if n})
        raise ValueError(
            f"config key 'model.lora_target_modules': no module named {', '.join(missing)} in the model "
            f"(module names: {', '.join(leaves)}; or all-linear)"
        )


def _metrics_callback(task: Task, tokenizer, cfg: TrainConfig, eval_log: dict):
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        """Held-out accuracy every ``eval.every`` steps, added to the step's logged line (which the trainer writes)."""

        def __init__(self) -> None:
            self.pending: float | None = None

        def on_step_end(self, args, state, control, model=None, **kwargs):
            at_end = state.global_step >= state.max_steps
            if model is not None and (at_end or (cfg.eval.every and state.global_step % cfg.eval.every == 0)):
                self.pending = evaluate(model, tokenizer, task, cfg)
                eval_log[state.global_step] = self.pending
                control.should_log = True  # the accuracy must land on a line even off the logging grid

        def on_log(self, args, state, control, logs=None, **kwargs):
            # the trainer's RunFolderLog, the last callback, writes the line (through checkpoints/metrics.jsonl)
            if logs is not None and "train_runtime" not in logs and self.pending is not None:
                logs["eval/accuracy"] = self.pending
                self.pending = None

    return MetricsCallback()


def _quiet_progress(eval_log: dict):
    from transformers.trainer_callback import ProgressCallback

    class QuietProgress(ProgressCallback):
        """TRL's progress bar without the dict it prints per log; shows reward and the last held-out accuracy."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "reward" in logs:
                post = {"reward": f"{logs['reward']:.3f}"}
                if eval_log:
                    post["acc"] = f"{eval_log[max(eval_log)]:.3f}"
                self.training_bar.set_postfix(post, refresh=False)

    return QuietProgress()


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    sft_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
) -> dict:
    """Run one training job into the run folder ``out_dir``; returns the summary.

    ``resume``: continue from the folder's last complete checkpoint (none: start fresh, saying so); ``resume_from``:
    continue from that checkpoint, wherever it lies; the folder's metrics and rollout log are cut back to its step.
    ``sft_dir`` overrides where the warm start lives (``lgrpo compare`` shares one per seed between arms). On
    several processes (``accelerate launch``, ``torchrun``) every process trains, only the main one writes.
    """
    t0 = time.time()
    resume = resume or resume_from is not None
    grpo_args = build_grpo_config(cfg, out_dir)  # validates the TRL side before anything is written or built
    task = build_task(cfg)  # reads (and checks) the data before anything is written or a model is loaded
    if cfg.model.name_or_path is not None:
        check_model_source(cfg.model.name_or_path)  # a missing local path, before the warm start
    from accelerate import PartialState

    _ = grpo_args.device  # sets up the process group (gloo on CPU, NCCL on GPUs) the way the trainer will
    state = PartialState()
    folder = RunFolder(out_dir, main=state.is_main_process)
    if not resume and folder.holds_a_run():
        raise ValueError(
            f"--out {folder.path}: already holds a run; pass --resume to continue it, or choose another --out"
        )
    if resume_from is None and resume and (summary := folder.read_summary()) is not None:
        print(f"{folder.path}: already complete", file=sys.stderr)
        return summary
    ckpt = folder.resume_point(resume, resume_from)  # checks --resume-from before any work
    # Not resuming, over an unfinished run (one stopped before its first checkpoint) of *another* config: its warm
    # start and its step-0 accuracy belong to that config and are redone, not reused.
    stale = ckpt is None and folder.config.exists() and folder.saved_config() != to_dict(cfg)
    sft_path = Path(sft_dir) if sft_dir is not None else folder.sft
    reuse_sft = (sft_path / SFT_DONE).exists() and not (stale and sft_dir is None)
    done = checkpoint_step(ckpt) if ckpt is not None else 0
    state.wait_for_everyone()  # every process has read the folder as it was before this run writes to it
    if folder.main and folder.summary.exists():  # --resume-from in a finished run: it will be finished again
        folder.summary.unlink()
    folder.write_config(cfg)
    state.wait_for_everyone()

    import torch
    import transformers

    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
    threads = set_threads(cfg)
    transformers.set_seed(cfg.seed)
    transformers.logging.set_verbosity_error()

    warm_start = bool(task.solutions) and cfg.sft.steps > 0 and not reuse_sft
    # the warm start fine-tunes every weight: float32, so that small updates are not rounded away in bfloat16
    model, tokenizer = build_model(cfg, task, "float32" if warm_start else None)
    seconds_warm_start = 0.0  # reused or none: lgrpo compare's second arm reuses the seed's warm start
    check_lora_targets(cfg, model)  # PEFT would only tell when the trainer is built, after the warm start
    if task.solutions and cfg.sft.steps > 0:
        if reuse_sft:
            if folder.main:
                print(f"warm start: reusing {sft_path}", file=sys.stderr)
        else:
            # every process trains the same warm start (same seed, same batches), so none waits long at the barrier
            # below (a collective's time-out); the main process's copy is saved and loaded by all
            t_sft = time.time()
            sft(model, tokenizer, task, cfg, sft_path if folder.main else None)
            seconds_warm_start = time.time() - t_sft
        state.wait_for_everyone()
        model, tokenizer = load_sft(sft_path, cfg)
    elif cfg.sft.steps > 0 and folder.main:
        scratch = (
            " a tiny model built from scratch gets no reward without one."
            if cfg.model.name_or_path is None
            else ""
        )
        print(
            f"warm start skipped: task {cfg.data.task!r} has no worked solutions (sft.steps={cfg.sft.steps} ignored;"
            f" the file task has them with data.answer_format=gsm8k).{scratch}",
            file=sys.stderr,
        )
    if cfg.rl.beta != 0.0 and cfg.model.lora_r == 0 and not getattr(model.config, "_name_or_path", ""):
        # TRL loads the β > 0 reference model from the policy's path; a policy built from a config has none, so
        # give it one: the initial weights, saved (deterministic in the seed, so a resumed run rebuilds the same).
        if folder.main:
            model.save_pretrained(folder.init)
            tokenizer.save_pretrained(folder.init)
        state.wait_for_everyone()
        model, tokenizer = load_sft(folder.init, cfg)

    if stale and folder.main:
        folder.write_metrics([])
    folder.trim_to(done, cfg.rl.rollout_log)  # what a killed run logged past its checkpoint goes
    folder.link_engine_logs(cfg.rl.rollout_log)
    state.wait_for_everyone()
    lines = folder.read_metrics()
    before = next((line["eval/accuracy"] for line in lines if line["step"] == 0), None)
    if before is None:
        before = evaluate(model, tokenizer, task, cfg)
        folder.write_metrics([{"step": 0, "eval/accuracy": before}, *lines])
    if folder.main:
        print(f"held-out accuracy before RL: {before:.3f}", file=sys.stderr)

    from datasets import Dataset

    from lgrpo.engines.trl import LambdaGRPOTrainer

    eval_log: dict[int, float] = {}
    grpo_args.reward_weights = task.reward_weights
    trainer = LambdaGRPOTrainer(
        model=model,
        reward_funcs=task.reward_funcs,
        args=grpo_args,
        train_dataset=Dataset.from_list(task.train_rows()),
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
        callbacks=[_metrics_callback(task, tokenizer, cfg, eval_log)],
    )
    from transformers.trainer_callback import ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_quiet_progress(eval_log))
    t_rl = time.time()
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
    seconds_rl = time.time() - t_rl
    state.wait_for_everyone()
    lines = folder.read_metrics()
    after = eval_log.get(cfg.rl.max_steps)
    if after is None:  # resumed from the final checkpoint: the killed run may have measured it already
        after = next(
            (ln["eval/accuracy"] for ln in lines if ln["step"] == cfg.rl.max_steps and "eval/accuracy" in ln),
            None,
        )
    if after is None:
        after = evaluate(trainer.model, tokenizer, task, cfg)
        folder.append_metrics({"step": cfg.rl.max_steps, "eval/accuracy": after})
        lines.append({"step": cfg.rl.max_steps, "eval/accuracy": after})
    save_final(trainer, tokenizer, cfg, folder)  # last: merging LoRA changes the model in place
    rewards = [line["reward"] for line in lines if "reward" in line]
    tail = rewards[-max(1, len(rewards) // 10) :]
    summary = {
        "accuracy_before": before,
        "accuracy_after": after,
        "seconds": round(time.time() - t0, 1),
        "seconds_warm_start": round(seconds_warm_start, 1),
        "seconds_rl": round(seconds_rl, 1),
        "weighting": cfg.rl.weighting,
        "lambda_power": cfg.rl.lambda_power,
        "seed": cfg.seed,
        "steps": cfg.rl.max_steps,
        "reward_last10pct": sum(tail) / len(tail) if tail else math.nan,
        "eval_size": len(task.held_out),
        "resumed_from_step": done if ckpt is not None else None,
        "threads": threads,
        "processes": state.num_processes,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "model": cfg.model.name_or_path or f"tiny-{cfg.model.arch}",
        "task": cfg.data.task,
    }
    folder.write_summary(summary)  # last: marks the run finished
    state.wait_for_everyone()
    return summary


# ----------------------------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML run config (default: the embedded CPU default, configs/default.yaml)"
    )
    parser.add_argument("--out", default="runs/train", help="run directory (default: runs/train)")
    add_flags(parser, FLAGS)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last complete checkpoint (none: start fresh)",
    )
    parser.add_argument(
        "--resume-from",
        metavar="CHECKPOINT",
        help="continue the run in --out from this checkpoint directory (…/checkpoint-<step>); its metrics and "
        "rollout log are cut back to that step",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. rl.beta=0.04"
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The resolved config: file, then key=value overrides, then the dedicated flags. Raises SystemExit on errors."""
    overrides = [*(args.overrides or []), *flag_overrides(args, FLAGS)]
    try:
        return load_config(args.config, overrides)
    except ValueError as e:
        raise SystemExit(f"lgrpo {getattr(args, 'command_name', 'train')}: error: {e}") from None


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    folder = RunFolder(args.out)
    resume = args.resume or args.resume_from is not None
    if resume and folder.config.exists():
        # a resumed run continues with its own config; command-line values must agree with it
        try:
            saved = load_config(folder.config)
        except ValueError as e:
            raise SystemExit(f"lgrpo train: error: --resume: {folder.config} does not load: {e}") from None
        given = args.config or args.overrides or flag_overrides(args, FLAGS)
        if given and to_dict(saved) != to_dict(cfg):
            raise SystemExit(
                f"lgrpo train: error: --resume uses {folder.config}; drop the other config options"
            )
        cfg = saved
    try:
        summary = train(cfg, folder.path, resume=resume, resume_from=args.resume_from)
    except (ValueError, LoadError) as e:
        raise SystemExit(f"lgrpo train: error: {e}") from None
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(json.dumps(summary, indent=2))
        print(
            f"held-out accuracy {summary['accuracy_before']:.3f} -> {summary['accuracy_after']:.3f} "
            f"in {summary['seconds']:.0f} s; results in {folder.path}"
        )
    return 0
