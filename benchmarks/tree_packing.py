"""Padded vs prompt-once vs tree packing, and the automatic choice, side by side on the same batches.

The arms are the trainer's own paths (``LambdaGRPOTrainer._get_per_token_logps_and_entropies``): ``padded``
(``tree_packing`` off: TRL's padded batch, fused LM head), ``prompt_once`` and ``tree`` (that layout forced with
``tree_packing_always``), and ``auto`` (``tree_packing="auto"``: each call lays out the tree and
``lgrpo.packing.choose_packing`` picks tree or padded, prompt-once never having the lower estimate; its decision
time included). The first-use self-check is
off in the timed arms and timed on its own.

``rollouts RUN_DIR``: REAL ROLLOUTS. The recorded generation batches of a run folder (``rollouts.jsonl``: by
default its first ``--early`` and last ``--late`` steps) with the run's own model (``model.name_or_path`` of its
``config.yaml``, LoRA as configured) or ``--model``. Prompt ids come from the log (``prompt_ids``) or, in older
logs, are rebuilt from the run's config (prompt format, system prompt, chat template). Per batch: seconds per loss
(policy log-probs and entropies, λ-weighted loss, backward), median of ``--repeat`` rounds with the arms
alternating. Ends with ``real rollouts: tree/prompt_once X.XXx, tree/padded Y.YYx`` (medians over the batches of
the per-batch speed-ups of the tree).

``synthetic``: SYNTHETIC groups. A from-scratch Qwen2 (``--model-size``, default ~10M parameters) or SmolLM2's
weights (``--smollm2``) and fixed generation batches of ``--groups`` groups of ``--k`` completions of ``--length``
tokens after a 32-token prompt, in which all completions of a group share a stem chosen so that a fraction ``f`` of
the completion tokens is shared (1 − unique/all; printed as measured). Per setting: loss (as above) and step (the
reference pass, β = 0.04, no gradient; the loss, its backward and an AdamW step).

``train``: ``lgrpo train`` (embedded default, or ``--config``) for ``--steps`` RL steps with ``rl.tree_packing`` off
and on (forced), same seed; prints TRL's ``step_time`` (a whole optimizer step: generation, rewards, reference pass,
loss, backward, optimizer) and the logged unique-token fraction and loss.

    python benchmarks/tree_packing.py rollouts runs/smollm2 --repeat 5   # first 3 and last 3 steps of the run
    python benchmarks/tree_packing.py rollouts RUN --steps 1 2 40 --model ~/.cache/lgrpo/SmolLM2-135M-Instruct.Q4_1.gguf
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


def make_trainer(tok, model, out: str, temperature: float = 1.0):
    from datasets import Dataset

    from lgrpo.engines.trl import LambdaGRPOConfig, LambdaGRPOTrainer

    args = LambdaGRPOConfig(
        output_dir=out, per_device_train_batch_size=2, num_generations=2, max_steps=1, report_to="none",
        use_cpu=not torch.cuda.is_available(), bf16=False, save_strategy="no", disable_tqdm=True,
        loss_type="grpo", beta=0.0, tree_packing="auto", temperature=temperature,
    )  # fmt: skip
    data = Dataset.from_dict({"prompt": ["1+1="] * 4})
    t = LambdaGRPOTrainer(
        model=model, reward_funcs=lambda completions, **_: [0.0] * len(completions), args=args,
        train_dataset=data, processing_class=tok,
    )  # fmt: skip
    t.model.train()
    t._packing_checked = True
    t.current_gradient_accumulation_steps = 1
    t.beta = 0.04  # the KL term; its reference pass is timed on the policy weights (a same-sized model)
    return t


ARMS = ("padded", "prompt_once", "tree", "auto")


def set_arm(t, arm: str) -> None:
    """The trainer's own paths: padded (TRL's), forced prompt-once, forced tree, or the automatic choice."""
    t.tree_packing = arm != "padded"
    t.packing_mode = "auto" if arm in ("auto", "padded") else arm
    t.args.tree_packing_always = arm in ("tree", "prompt_once")
    t._packing_checked = True  # the first-use self-check is timed on its own (self_check_seconds)


def with_weights(t, batch: dict, group) -> dict:
    from lgrpo.objectives import lambda_weights

    return dict(
        batch, lambda_weights=lambda_weights(batch["completion_ids"], batch["completion_mask"], group)
    )


def time_arms(t, batch: dict, repeat: int, opt, warmup: bool, arms=ARMS, step: bool = True) -> dict:
    """Alternate the arms: seconds per loss (fwd+bwd) and per step (reference pass + loss + AdamW); the auto arm's
    choice (``padded``/``prompt_once``/``tree``, the last call's) is returned under ``"auto_pick"``."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    att = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    T = batch["completion_ids"].shape[1]
    set_arm(t, "padded")
    with torch.no_grad():
        batch = dict(batch, ref_per_token_logps=t._get_per_token_logps_and_entropies(t.model, ids, att, T)[0])
    out: dict = {f"{what}_{arm}": [] for what in ("loss", "step") for arm in arms}
    for r in range(
        repeat + 1
    ):  # round 0 warms up (on the first setting only: later ones reuse the warm paths)
        if r == 0 and not warmup:
            continue
        for arm in arms:
            set_arm(t, arm)
            t.model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            t._compute_loss(t.model, dict(batch)).backward()
            t1 = time.perf_counter()
            if arm == "auto":
                m = t._metrics["train"]
                out["auto_pick"] = (
                    "padded" if not m["packing/packed_fraction"][-1] else
                    "tree" if m["packing/tree_fraction"][-1] else "prompt_once"
                )  # fmt: skip
            if step:
                with torch.no_grad():
                    ref = t._get_per_token_logps_and_entropies(t.model, ids, att, T)[0]
                t.model.zero_grad(set_to_none=True)
                t._compute_loss(
                    t.model, dict(batch, ref_per_token_logps=ref)
                ).backward()  # the step's reference
                opt.step()
            t2 = time.perf_counter()
            if r:
                out[f"loss_{arm}"].append(t1 - t0)
                out[f"step_{arm}"].append(t2 - t1)
    return out


def self_check_seconds(t, batch: dict) -> tuple[float, bool]:
    """Seconds of the first-use self-check (one group, no gradient, ``auto``: the tree) on this batch, and whether
    it passed."""
    set_arm(t, "auto")
    t._packing_checked = False
    unwrapped = t.accelerator.unwrap_model(t.model)
    t0 = time.perf_counter()
    t._packing_self_check(
        unwrapped, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"],
        batch["completion_mask"].bool(),
    )  # fmt: skip
    return time.perf_counter() - t0, t.tree_packing


def synthetic(args: argparse.Namespace) -> None:
    from lgrpo.packing import choose_packing, pack_groups, pair_cost

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
        print("SYNTHETIC groups (stem shared by construction); seconds per loss fwd+bwd, medians")
        print(
            f"{'length':>6} {'k':>3} {'shared':>6}  {'padded':>8} {'prompt1':>8} {'tree':>8} {'auto':>8}  "
            f"{'tree/p1':>7} {'tree/pad':>8}  auto picks (decide s)  auto/best  step: tree/padded"
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
                # what the automatic choice costs on every call: the tree's layout and the test
                t0 = time.perf_counter()
                tree = pack_groups(
                    *(batch[x] for x in ("prompt_ids", "prompt_mask")), *completions(batch),
                    pair_cost=pair_cost(model),
                )  # fmt: skip
                choose_packing({"tree": tree}, (batch["prompt_ids"].shape[0], PROMPT_LEN + length), model)
                decide = time.perf_counter() - t0
                group = torch.arange(batch["prompt_ids"].shape[0]) // k
                res = time_arms(
                    t, with_weights(t, batch, group), args.repeat, opt, warmup=first, step=not args.loss_only
                )
                first = False
                pick = res.pop("auto_pick")
                m = {
                    k: statistics.median(v)
                    for k, v in res.items()
                    if not (args.loss_only and k[:5] == "step_")
                }
                best = min(m[f"loss_{a}"] for a in ("padded", "prompt_once", "tree"))
                row = {
                    "length": length, "k": k, "groups": args.groups, "shared": float(shared),
                    **{key: round(v, 4) for key, v in m.items()}, "auto_pick": pick, "decide_s": decide,
                    "auto_over_best": m["loss_auto"] / best,
                }  # fmt: skip
                step = "-" if args.loss_only else f"{m['step_padded'] / m['step_tree']:.2f}x"
                print(
                    f"{length:>6} {k:>3} {float(shared):>6.2f}  {m['loss_padded']:>7.3f}s "
                    f"{m['loss_prompt_once']:>7.3f}s {m['loss_tree']:>7.3f}s {m['loss_auto']:>7.3f}s  "
                    f"{m['loss_prompt_once'] / m['loss_tree']:>6.2f}x {m['loss_padded'] / m['loss_tree']:>7.2f}x  "
                    f"{pick:>11} ({decide:.3f}s)  {row['auto_over_best']:>8.3f}  {step}",
                    flush=True,
                )
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps({"bench": "synthetic", "model": args.model_size, **row}) + "\n")


def rollout_batches(run_dir: Path, tok, steps: list[int] | None, n_early: int, n_late: int) -> list[tuple]:
    """``(step, batch, group, source)`` for the chosen steps of ``run_dir/rollouts.jsonl``: TRL's generation batch
    as trained (left-padded prompts, right-padded completions). Prompt ids come from the log's ``prompt_ids``; in
    logs written before that field existed they are rebuilt from the run's config (prompt format, system prompt,
    chat template: ``PromptFormat.text``) and the tokenizer (``source`` says which)."""
    from lgrpo.experiments.config import load_config
    from lgrpo.tasks.task import PromptFormat

    by_step: dict[int, list[dict]] = {}
    with open(run_dir / "rollouts.jsonl") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                by_step.setdefault(int(rec["step"]), []).append(rec)
    known = sorted(by_step)
    if steps is None:
        steps = sorted(set(known[:n_early] + known[-n_late:]))
    missing = [x for x in steps if x not in by_step]
    if missing:
        raise ValueError(
            f"--steps: {missing} not in {run_dir}/rollouts.jsonl (steps {known[0]}..{known[-1]})"
        )
    fmt = None
    out = []
    for step in steps:
        recs = by_step[step]
        if all("prompt_ids" in r for r in recs):
            prompts, source = [r["prompt_ids"] for r in recs], "logged"
        else:
            if fmt is None:
                fmt = PromptFormat.from_config(load_config(run_dir / "config.yaml"))
            prompts = [tok(fmt.text(r["prompt"], tok), add_special_tokens=False)["input_ids"] for r in recs]
            source = "rebuilt"
        comps = [r["completion_ids"] for r in recs]
        B, P, T = len(recs), max(map(len, prompts)), max(max(map(len, comps)), 1)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        pid, pm = torch.full((B, P), pad), torch.zeros(B, P, dtype=torch.long)
        cid, cm = torch.full((B, T), pad), torch.zeros(B, T, dtype=torch.long)
        for i, (p_, c_) in enumerate(zip(prompts, comps)):
            pid[i, P - len(p_) :], pm[i, P - len(p_) :] = torch.tensor(p_), 1
            if c_:
                cid[i, : len(c_)], cm[i, : len(c_)] = torch.tensor(c_), 1
        group = torch.tensor([r["group"] for r in recs])
        batch = {
            "prompt_ids": pid, "prompt_mask": pm, "completion_ids": cid, "completion_mask": cm,
            "advantages": torch.tensor([float(r.get("advantage") or 0.0) for r in recs]),
            "old_per_token_logps": None, "num_items_in_batch": cm.sum().float(),
        }  # fmt: skip
        out.append((step, batch, group, source))
    return out


def rollouts(args: argparse.Namespace) -> None:
    """Padded vs prompt-once vs tree vs the automatic choice on the recorded batches of a run."""
    from lgrpo.experiments.config import load_config
    from lgrpo.models import load_model
    from lgrpo.packing import choose_packing, pack_groups, pair_cost
    from lgrpo.process import process_blocks

    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    cfg = load_config(run_dir / "config.yaml")
    name = args.model or cfg.model.name_or_path
    if name is None:
        raise ValueError(
            f"--model: {run_dir}/config.yaml has no model.name_or_path (a from-scratch model); give one"
        )
    model, tok = load_model(str(Path(name).expanduser()), "float32")
    if (
        cfg.model.lora_r and not args.no_lora
    ):  # the run's own trainable setup (LoRA adapters on every linear layer)
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=cfg.model.lora_r, lora_alpha=cfg.model.lora_alpha, lora_dropout=0.0,
            target_modules=cfg.model.lora_target_modules,
        ))  # fmt: skip
    batches = rollout_batches(run_dir, tok, args.steps, args.early, args.late)
    with tempfile.TemporaryDirectory() as out:
        t = make_trainer(
            tok, model, out, temperature=cfg.rl.temperature
        )  # TRL fixes its fused head's at init
        opt = torch.optim.AdamW([p for p in t.model.parameters() if p.requires_grad], lr=1e-6)
        print(f"REAL ROLLOUTS {run_dir} (model {name}{', LoRA r=' + str(cfg.model.lora_r) if cfg.model.lora_r and not args.no_lora else ''}); "
              f"threads {torch.get_num_threads()}; seconds per loss fwd+bwd, median of {args.repeat}, arms alternated")  # fmt: skip
        print(
            f"{'step':>5} {'rows':>4} {'prompt':>6} {'compl':>5} {'c-uniq':>6} {'tok pad/p1/tree':>16}  "
            f"{'padded':>7} {'prompt1':>7} {'tree':>7} {'auto':>7}  {'tree/p1':>7} {'tree/pad':>8}  "
            f"{'auto picks':>11} {'auto/best':>9} {'dec ms':>6}  prompts"
        )
        ratios_p1, ratios_pad, rows_out, loss_auto = [], [], [], []
        for n, (step, batch, group, source) in enumerate(batches):
            cm = batch["completion_mask"].bool()
            blocks = process_blocks(batch["completion_ids"], cm, group)
            c_unique = float((cm.float() / blocks.sizes.clamp(min=1)).sum() / cm.sum())
            lay = {
                m: pack_groups(batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"], cm, mode=m)
                for m in ("prompt_once", "tree")
            }
            padded_tokens = batch["prompt_ids"].shape[0] * (batch["prompt_ids"].shape[1] + cm.shape[1])
            t0 = (
                time.perf_counter()
            )  # the automatic choice's own work on this batch: the tree's layout and the test
            tree = pack_groups(*(batch[x] for x in ("prompt_ids", "prompt_mask", "completion_ids")), cm,
                               pair_cost=pair_cost(model))  # fmt: skip
            choose_packing({"tree": tree}, (cm.shape[0], padded_tokens // cm.shape[0]), model)
            decide = time.perf_counter() - t0
            if n == 0:
                check, check_ok = self_check_seconds(t, batch)
            res = time_arms(t, with_weights(t, batch, group), args.repeat, opt, warmup=n == 0, step=False)
            pick = res.pop("auto_pick")
            m = {key: statistics.median(v) for key, v in res.items() if v}
            best = min(m[f"loss_{a}"] for a in ("padded", "prompt_once", "tree"))
            row = {
                "step": step, "rows": int(cm.shape[0]), "prompt_tokens": int(batch["prompt_mask"].sum()),
                "completion_tokens": int(cm.sum()), "completion_unique_fraction": c_unique,
                "padded_tokens": padded_tokens, "prompt_once_tokens": lay["prompt_once"].packed_tokens,
                "tree_tokens": lay["tree"].packed_tokens, **{k: round(v, 4) for k, v in m.items()},
                "auto_pick": pick, "auto_over_best": m["loss_auto"] / best, "decide_s": decide, "prompts": source,
            }  # fmt: skip
            rows_out.append(row)
            loss_auto.append(m["loss_auto"])
            ratios_p1.append(m["loss_prompt_once"] / m["loss_tree"])
            ratios_pad.append(m["loss_padded"] / m["loss_tree"])
            print(
                f"{step:>5} {row['rows']:>4} {row['prompt_tokens']:>6} {row['completion_tokens']:>5} {c_unique:>6.2f} "
                f"{padded_tokens:>5}/{row['prompt_once_tokens']:>4}/{row['tree_tokens']:>4}  "
                f"{m['loss_padded']:>6.3f}s {m['loss_prompt_once']:>6.3f}s {m['loss_tree']:>6.3f}s "
                f"{m['loss_auto']:>6.3f}s  {ratios_p1[-1]:>6.2f}x {ratios_pad[-1]:>7.2f}x  {pick:>11} "
                f"{row['auto_over_best']:>9.3f} {decide * 1e3:>6.1f}  {source}",
                flush=True,
            )
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(
                        json.dumps({"bench": "rollouts", "run": str(run_dir), "model": str(name), **row})
                        + "\n"
                    )
        print(
            f"first-use self-check: {'passed' if check_ok else 'FAILED'} in {check:.3f}s, once per run (one group, "
            f"no gradient, the tree); median loss pass here {statistics.median(loss_auto):.3f}s"
        )
        print(
            f"real rollouts: tree/prompt_once {statistics.median(ratios_p1):.2f}x, "
            f"tree/padded {statistics.median(ratios_pad):.2f}x"
        )


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
    s.add_argument("--loss-only", action="store_true", help="time the loss pass only, not the training step")
    s.add_argument("--out", default=None, help="append one JSON line per setting")
    s.set_defaults(fn=synthetic)
    q = sub.add_parser("rollouts", help="padded vs prompt-once vs tree on a run's recorded batches")
    q.add_argument("run_dir", help="a run folder with rollouts.jsonl and config.yaml")
    q.add_argument("--model", default=None, help="default: the run's model.name_or_path")
    q.add_argument(
        "--steps", type=int, nargs="+", default=None, help="default: the first --early and last --late"
    )
    q.add_argument("--early", type=int, default=3)
    q.add_argument("--late", type=int, default=3)
    q.add_argument("--repeat", type=int, default=5)
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--no-lora", action="store_true", help="time the full model even if the run used LoRA")
    q.add_argument("--out", default=None, help="append one JSON line per batch")
    q.set_defaults(fn=rollouts)
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
