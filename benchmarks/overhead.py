"""Wall time per training step of LambdaGRPOTrainer with weighting="lambda" against weighting="uniform".

One trainer, one from-scratch model, one prompt stream and seed; the trainer's ``weighting`` switches between
"lambda" and "uniform" every ``--block`` steps (default: every step), so the two arms alternate step by step and
drift in machine load hits both alike. A step is everything from the start of one optimizer step to its end:
generation, rewards, λ weights and tree statistics, loss, backward, optimizer. The first ``--warmup`` steps are not
timed. Target: lambda / uniform ≤ 1.02 (the paper's "negligible cost").

It also times the work only the λ arm does directly: ``lambda_weights``, plus the process sets they are computed from
(``process_blocks``) when ``--no-prm-stats`` leaves them to the λ arm alone (with the ``prm/*`` statistics on, both
arms compute the process sets). On a busy machine that figure is steadier than the difference of two noisy step
times.

    python benchmarks/overhead.py                                   # tiny model on CPU (a minute or two)
    python benchmarks/overhead.py --device cuda --model-size 100m --group-size 16 --max-completion-length 1000

Completions are forced to ``--max-completion-length`` tokens (EOS suppressed until then) so that both arms
process the same number of tokens. Prints ms/step for each arm (mean and median over all timed steps), the ratio of
the means, the median of paired (adjacent-step) ratios, and the time spent in ``lambda_weights``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch

MODEL_SIZES = {
    # name: (hidden, layers, heads, intermediate)
    "tiny": (64, 2, 4, 256),
    "10m": (256, 8, 8, 1024),
    "100m": (768, 12, 12, 3072),  # ≈113M parameters with the small vocabulary (GPT-2-small-like body)
}
CHARS = "0123456789+-*=()xyab "


def build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<unk>", *CHARS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", padding_side="left"
    )


def build_model(tok, size: str, max_positions: int, seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    hidden, layers, heads, inter = MODEL_SIZES[size]
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=heads, intermediate_size=inter, max_position_embeddings=max_positions,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model


def reward_share(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    """Share of digits in the completion (any dense reward will do: only the time is measured)."""
    return [sum(c.isdigit() for c in s) / max(len(s), 1) for s in completions]


class Timed:
    """Wrap a function of ``lgrpo.engines.trl`` and accumulate its wall time (synchronising CUDA around it)."""

    def __init__(self, module: Any, name: str, cuda: bool) -> None:
        self.module, self.name, self.cuda, self.fn = module, name, cuda, getattr(module, name)
        self.seconds, self.calls = 0.0, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out

    def __enter__(self) -> Timed:
        setattr(self.module, self.name, self)
        return self

    def __exit__(self, *exc: Any) -> None:
        setattr(self.module, self.name, self.fn)


def run(model_dir: str, tok, dataset, a: argparse.Namespace, out_dir: str) -> dict[str, Any]:
    """One trainer whose ``weighting`` alternates between "lambda" and "uniform" every ``a.block`` steps.

    Returns the wall time of every step after the warm-up, per arm, and the seconds spent in ``lambda_weights`` and
    ``tree_stats`` over the whole run.
    """
    from transformers import TrainerCallback

    import lgrpo.engines.trl as engine
    from lgrpo.engines.trl import LambdaGRPOConfig, LambdaGRPOTrainer

    cuda = a.device == "cuda"
    total = a.warmup + 2 * a.pairs * a.block

    class Alternate(TrainerCallback):
        """Sets the arm of each step before it starts (generation included) and times it to its end."""

        def __init__(self) -> None:
            self.trainer: Any = None
            self.start = 0.0
            self.times: dict[str, list[float]] = {"lambda": [], "uniform": []}
            self.order: list[str] = []

        def arm(self, step: int) -> str:
            return ("lambda", "uniform")[(step // a.block) % 2]

        def on_step_begin(self, args, state, control, **kw):
            self.trainer.weighting = self.arm(state.global_step)
            if cuda:
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            dt = time.perf_counter() - self.start
            step = state.global_step - 1  # global_step was incremented before on_step_end
            if step >= a.warmup:
                self.times[self.arm(step)].append(dt)
                self.order.append(self.arm(step))

    args = LambdaGRPOConfig(
        output_dir=out_dir,
        weighting="lambda",
        log_prm_stats=not a.no_prm_stats,
        per_device_train_batch_size=a.group_size * a.prompts_per_step,
        num_generations=a.group_size,
        max_completion_length=a.max_completion_length,
        generation_kwargs={"min_new_tokens": a.max_completion_length},  # same token count in both arms
        max_steps=total,
        learning_rate=1e-5,
        beta=a.beta,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=not cuda,
        bf16=cuda,
        seed=a.seed,
        disable_tqdm=False,
        loss_type=a.loss_type,
    )
    timer = Alternate()
    trainer = LambdaGRPOTrainer(
        model=model_dir, reward_funcs=reward_share, args=args, train_dataset=dataset, processing_class=tok,
        callbacks=[timer],
    )  # fmt: skip
    timer.trainer = trainer
    with (
        Timed(engine, "process_blocks", cuda) as tb,
        Timed(engine, "lambda_weights", cuda) as tw,
        Timed(engine, "tree_stats", cuda) as ts,
    ):
        trainer.train()
    return {
        "times": timer.times,
        "process_blocks_s": tb.seconds,
        "process_blocks_calls": tb.calls,
        "lambda_weights_s": tw.seconds,
        "tree_stats_s": ts.seconds,
        "steps": total,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--model-size", choices=list(MODEL_SIZES), default="tiny")
    p.add_argument("--group-size", type=int, default=8, help="completions per prompt (num_generations)")
    p.add_argument("--prompts-per-step", type=int, default=4)
    p.add_argument("--max-completion-length", type=int, default=64)
    p.add_argument("--pairs", type=int, default=8, help="timed (lambda, uniform) pairs of blocks")
    p.add_argument("--block", type=int, default=1, help="consecutive steps per arm before switching")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start")
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--loss-type", default="dapo", choices=["grpo", "bnpo", "dr_grpo", "dapo"])
    p.add_argument("--no-prm-stats", action="store_true", help="log_prm_stats=False (both arms)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for name in ("prompts_per_step", "max_completion_length", "pairs", "block"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(a, name)}")
    if a.group_size < 2:
        p.error(f"--group-size: expected at least 2 (GRPO needs groups), got {a.group_size}")
    if a.warmup < 0:
        p.error(f"--warmup: expected a non-negative integer, got {a.warmup}")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available on this machine")

    from datasets import Dataset

    tok = build_tokenizer()
    total = a.warmup + 2 * a.pairs * a.block
    g = torch.Generator().manual_seed(a.seed)
    xs = torch.randint(0, 100, (a.prompts_per_step * total, 2), generator=g).tolist()
    dataset = Dataset.from_dict({"prompt": [f"{x}+{y}=" for x, y in xs]})
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(tok, a.model_size, max_positions=a.max_completion_length + 32, seed=a.seed)
        n_params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(f"{tmp}/model")
        del model
        print(
            f"device={a.device} model={a.model_size} ({n_params / 1e6:.1f}M params) group={a.group_size} "
            f"prompts/step={a.prompts_per_step} completion={a.max_completion_length} tokens loss={a.loss_type} "
            f"beta={a.beta} prm_stats={not a.no_prm_stats} steps={total} (warm-up {a.warmup}, then lambda/uniform "
            f"alternating every {a.block} step(s), {a.pairs} pairs)",
            flush=True,
        )
        res = run(f"{tmp}/model", tok, dataset, a, f"{tmp}/out")

    times = res["times"]
    for arm, t in times.items():
        print(f"{arm:8s} {1e3 * statistics.fmean(t):9.1f} ms/step (median {1e3 * statistics.median(t):.1f}, "
              f"min {1e3 * min(t):.1f}, n={len(t)})")  # fmt: skip
    for arm, t in times.items():  # every step, in order: shows how noisy the machine was
        print(f"{arm:8s} steps (ms): {' '.join(f'{1e3 * x:.0f}' for x in t)}")
    ratio = statistics.fmean(times["lambda"]) / statistics.fmean(times["uniform"])
    pair_ratios = [lam / uni for lam, uni in zip(times["lambda"], times["uniform"])]
    print(
        f"ratio lambda/uniform = {ratio:.3f} (ratio of means); median of paired ratios {statistics.median(pair_ratios):.3f}; target <= 1.02"
    )
    n_lambda = sum(
        (step // a.block) % 2 == 0 for step in range(res["steps"])
    )  # lambda steps, warm-up included
    # The process sets (process_blocks) are computed once per generation batch and shared by the weights and the
    # prm/* statistics: with the statistics on both arms compute them, with --no-prm-stats only the lambda arm does.
    b_ms = 1e3 * res["process_blocks_s"] / max(res["process_blocks_calls"], 1)
    w_ms = 1e3 * res["lambda_weights_s"] / max(n_lambda, 1)
    s_ms = 1e3 * res["tree_stats_s"] / res["steps"]
    extra = w_ms + (b_ms if a.no_prm_stats else 0.0)
    fastest = 1e3 * min(times["uniform"])
    print(
        f"process sets (process_blocks, {'lambda arm only' if a.no_prm_stats else 'both arms'}): {b_ms:.2f} ms per "
        f"generation batch; lambda_weights from them: {w_ms:.2f} ms per lambda step; tree_stats (prm/* metrics, "
        f"both arms): {s_ms:.2f} ms/step"
    )
    print(
        f"extra work of weighting='lambda': {extra:.2f} ms per lambda step = {100 * extra / fastest:.3f}% of the "
        "fastest uniform step"
    )


if __name__ == "__main__":
    main()
