"""Seconds per loss computation and per training step, tree-packed against padded (docs/tree_packing.md).

``synthetic``: one ``LambdaGRPOTrainer`` over a from-scratch Qwen2 model (``--model-size``, default ~10M parameters)
and fixed generation batches of ``--groups`` groups of ``--k`` completions of ``--length`` tokens after a 32-token
prompt, in which all completions of a group share a stem chosen so that a fraction ``f`` of the completion tokens is
shared (1 − unique/all; printed as measured). For each ``f`` and length it times, alternating the arms:

- ``loss``: the trainer's ``_compute_loss`` (policy log-probs and entropies, λ-weighted loss) and its backward;
- ``step``: a training step on the fixed batch without generation: the reference pass (β = 0.04, no gradient), the
  loss, its backward and an AdamW step.

The arms are the trainer's own paths: ``tree_packing`` off (TRL's padded batch, fused LM head) and on with
``tree_packing_always`` (packed), plus which one the automatic choice (``packing_pays``) takes.

``train``: ``lgrpo train`` (embedded default, or ``--config``) for ``--steps`` RL steps with ``rl.tree_packing`` off
and on (forced), same seed; prints TRL's ``step_time`` (a whole optimizer step: generation, rewards, reference pass,
loss, backward, optimizer) and the logged unique-token fraction and loss.

    python benchmarks/tree_packing.py synthetic                       # ~10M model, f = 0, .3, .7, .9, T = 256, 1024
    python benchmarks/tree_packing.py synthetic --lengths 256 --fractions 0.7 --repeat 5
    python benchmarks/tree_packing.py synthetic --smollm2 --lengths 256 --k 8 --fractions 0 0.7
    python benchmarks/tree_packing.py train --steps 8                 # the embedded default
    python benchmarks/tree_packing.py train --config configs/smollm2-135m.yaml --steps 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import MODEL_SIZES, build_model, build_tokenizer  # one model builder for the benchmarks

PROMPT_LEN = 32


def synthetic_batch(tok, groups: int, k: int, length: int, fraction: float, seed: int) -> dict:
    """A generation batch (TRL's dict) whose groups share a stem: ``fraction`` of completion tokens shared."""
    g = torch.Generator().manual_seed(seed)
    V = len(tok)
    first = 3  # ids below are <pad>, <eos>, <unk>
    stem_len = min(length, round(fraction * length * k / max(k - 1, 1)))
    prompts, comps = [], []
    for _ in range(groups):
        prompt = torch.randint(first, V, (PROMPT_LEN,), generator=g)
        stem = torch.randint(first, V, (stem_len,), generator=g)
        for i in range(k):
            tail = torch.randint(first, V, (length - stem_len,), generator=g)
            if tail.numel():
                tail[0] = first + (i % (V - first))  # the rows part at the first token after the stem
            prompts.append(prompt)
            comps.append(torch.cat([stem, tail]))
    B = len(comps)
    advantages = torch.randn(B, generator=g)
    return {
        "prompt_ids": torch.stack(prompts),
        "prompt_mask": torch.ones(B, PROMPT_LEN, dtype=torch.long),
        "completion_ids": torch.stack(comps),
        "completion_mask": torch.ones(B, length, dtype=torch.long),
        "advantages": advantages,
        "old_per_token_logps": None,
        "num_items_in_batch": torch.tensor(float(B * length)),
    }


def make_trainer(tok, model, out: str):
    from datasets import Dataset

    from lgrpo.engines.trl import LambdaGRPOConfig, LambdaGRPOTrainer

    args = LambdaGRPOConfig(
        output_dir=out, per_device_train_batch_size=2, num_generations=2, max_steps=1, report_to="none",
        use_cpu=not torch.cuda.is_available(), bf16=False, save_strategy="no", disable_tqdm=True,
        loss_type="grpo", beta=0.0, tree_packing=True, tree_packing_always=True,
    )  # fmt: skip
    data = Dataset.from_dict({"prompt": ["1+1="] * 4})
    t = LambdaGRPOTrainer(
        model=model, reward_funcs=lambda completions, **_: [0.0] * len(completions), args=args,
        train_dataset=data, processing_class=tok,
    )  # fmt: skip
    t.model.train()
    t.current_gradient_accumulation_steps = 1
    t.beta = 0.04  # the KL term; its reference pass is timed on the policy weights (a same-sized model)
    return t


def time_arms(t, batch: dict, repeat: int, opt, warmup: bool) -> dict[str, list[float]]:
    """Alternate packed / padded: seconds per loss (fwd+bwd) and per step (reference pass + loss + AdamW)."""
    from lgrpo.objectives import lambda_weights

    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    att = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    T = batch["completion_ids"].shape[1]
    group = torch.arange(ids.shape[0]) // int(t.args.num_generations)
    batch = dict(
        batch, lambda_weights=lambda_weights(batch["completion_ids"], batch["completion_mask"], group)
    )
    with torch.no_grad():
        batch["ref_per_token_logps"] = t._get_per_token_logps_and_entropies(t.model, ids, att, T)[0]
    out: dict[str, list[float]] = {"loss_packed": [], "loss_padded": [], "step_packed": [], "step_padded": []}
    for r in range(
        repeat + 1
    ):  # round 0 warms up (on the first setting only: later ones reuse the warm paths)
        if r == 0 and not warmup:
            continue
        for packed in (True, False):
            t.tree_packing = packed
            arm = "packed" if packed else "padded"
            t.model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            t._compute_loss(t.model, dict(batch)).backward()
            t1 = time.perf_counter()
            with torch.no_grad():
                ref = t._get_per_token_logps_and_entropies(t.model, ids, att, T)[0]
            t.model.zero_grad(set_to_none=True)
            t._compute_loss(
                t.model, dict(batch, ref_per_token_logps=ref)
            ).backward()  # the step's own reference
            opt.step()
            t2 = time.perf_counter()
            if r:
                out[f"loss_{arm}"].append(t1 - t0)
                out[f"step_{arm}"].append(t2 - t1)
    return out


def synthetic(args: argparse.Namespace) -> None:
    from lgrpo.packing import pack_groups, packing_pays, pair_cost

    def completions(b: dict) -> tuple:
        return b["completion_ids"], b["completion_mask"]

    torch.set_num_threads(args.threads)
    tok = build_tokenizer()
    max_len = PROMPT_LEN + max(args.lengths)
    if (
        args.smollm2
    ):  # real weights (Llama architecture, 49k vocabulary); token ids stay the char ids (timing only)
        from lgrpo.assets import fetch_smollm2
        from lgrpo.models import load_model

        model, _ = load_model(str(fetch_smollm2()), "float32")  # dequantised once, cached, trainable
        args.model_size = "SmolLM2-135M"
    else:
        model = build_model(tok, args.model_size, max_len, seed=0)
    n_params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as out:
        t = make_trainer(tok, model, out)
        opt = torch.optim.AdamW(t.model.parameters(), lr=1e-6)
        print(f"model {args.model_size}: {n_params / 1e6:.1f}M parameters; threads {torch.get_num_threads()}")
        print(
            f"{'length':>6} {'k':>3} {'shared':>6}  {'loss packed':>11} {'loss padded':>11} {'speed-up':>8}  "
            f"{'step packed':>11} {'step padded':>11} {'speed-up':>8}  auto"
        )
        first = True
        for length in args.lengths:
            k = args.k if length <= 256 else args.k_long
            for f in args.fractions:
                batch = synthetic_batch(tok, args.groups, k, length, f, seed=1)
                one_tree = pack_groups(
                    *(batch[x] for x in ("prompt_ids", "prompt_mask")), *completions(batch)
                )
                shared = (
                    1 - (one_tree.packed_tokens - args.groups * PROMPT_LEN) / batch["completion_mask"].sum()
                )
                t0 = (
                    time.perf_counter()
                )  # what the automatic choice costs on every call: the layout and the test
                packed = pack_groups(
                    *(batch[x] for x in ("prompt_ids", "prompt_mask")),
                    *completions(batch),
                    pair_cost=pair_cost(model),
                )
                auto = packing_pays(packed, (batch["prompt_ids"].shape[0], PROMPT_LEN + length), model)
                decide = time.perf_counter() - t0
                res = time_arms(t, batch, args.repeat, opt, warmup=first)
                first = False
                m = {key: statistics.median(v) for key, v in res.items()}
                row = {
                    "length": length, "k": k, "groups": args.groups, "shared": float(shared),
                    **{key: round(v, 4) for key, v in m.items()},
                    "loss_speedup": m["loss_padded"] / m["loss_packed"],
                    "step_speedup": m["step_padded"] / m["step_packed"], "auto_packs": bool(auto),
                    "decide_s": decide, "packed_rows": list(packed.input_ids.shape),
                }  # fmt: skip
                print(
                    f"{length:>6} {k:>3} {float(shared):>6.2f}  {m['loss_packed']:>10.3f}s {m['loss_padded']:>10.3f}s "
                    f"{row['loss_speedup']:>7.2f}x  {m['step_packed']:>10.3f}s {m['step_padded']:>10.3f}s "
                    f"{row['step_speedup']:>7.2f}x  {'packed' if auto else 'padded'} ({decide:.3f}s to decide)",
                    flush=True,
                )
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps({"bench": "synthetic", "model": args.model_size, **row}) + "\n")


def train(args: argparse.Namespace) -> None:
    results = {}
    for packed in (False, True):
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "lgrpo.cli", "train", "--out", out]
            if args.config:
                cmd += ["--config", args.config]
            cmd += [
                f"rl.max_steps={args.steps}", f"rl.tree_packing={str(packed).lower()}",
                "rl.tree_packing_always=true", "eval.every=0", "rl.save_steps=100000", *args.override,
            ]  # fmt: skip
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            lines = [json.loads(x) for x in Path(out, "metrics.jsonl").read_text().splitlines() if x.strip()]
            steps = [x for x in lines if "step_time" in x]
            results[packed] = (steps, wall)
    for packed, (steps, wall) in results.items():
        times = [x["step_time"] for x in steps[args.warmup :]]
        frac = [x["packing/unique_token_fraction"] for x in steps if "packing/unique_token_fraction" in x]
        print(
            f"{'packed' if packed else 'padded'}: step_time median {statistics.median(times):.3f}s mean "
            f"{statistics.mean(times):.3f}s over {len(times)} steps (first {args.warmup} untimed); first-step loss "
            f"{steps[0].get('loss')}; unique-token fraction {statistics.mean(frac) if frac else float('nan'):.3f}; "
            f"run wall {wall:.0f}s"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synthetic")
    s.add_argument("--model-size", default="10m", choices=sorted(MODEL_SIZES))
    s.add_argument(
        "--smollm2", action="store_true", help="SmolLM2-135M-Instruct's real weights (lgrpo.assets)"
    )
    s.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.3, 0.7, 0.9])
    s.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    s.add_argument("--k", type=int, default=16, help="group size for lengths <= 256")
    s.add_argument("--k-long", type=int, default=8, help="group size for longer completions (CPU memory)")
    s.add_argument("--groups", type=int, default=1)
    s.add_argument("--repeat", type=int, default=1)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--out", default=None, help="append one JSON line per setting")
    s.set_defaults(fn=synthetic)
    r = sub.add_parser("train")
    r.add_argument("--config", default=None)
    r.add_argument("--steps", type=int, default=8)
    r.add_argument("--warmup", type=int, default=1)
    r.add_argument("override", nargs="*", help="extra key=value overrides")
    r.set_defaults(fn=train)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
