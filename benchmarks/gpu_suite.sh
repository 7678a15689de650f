#!/usr/bin/env bash
# One prepared GPU check for lgrpo, < 8 minutes on one CUDA GPU (docs/tree_packing.md).
#
# Written for the device image: Python 3.12, torch 2.11, transformers 5.17; no trl, datasets or math-verify (tests
# that need them skip). Run from the repository root:   bash benchmarks/gpu_suite.sh [OUT_DIR]
#
#   1. the CUDA tests (every test parametrized on `device`, and the flex-attention packing test)
#   2. process sets on GPU vs CPU: equal, and the time of each
#   3. a training step (fwd+bwd+AdamW, bf16 autocast) on a ~100M-parameter Qwen2 with groups of 16 x 1,024 tokens:
#      tree-packed with a flex-attention BlockMask vs the padded batch, shared fractions 0, 0.7, 0.9, with the packed
#      log-probs checked against the padded ones first (fp32)
#   4. λ vs uniform: the same padded step with λ weights (process sets + lambda_weights + weighted loss) vs without
#   5. padded vs prompt-once vs tree (both flex BlockMask) on the same batches, and the automatic choice
#      (lgrpo.packing.choose_packing, its decision time included) against the best of the three
#
# GPU_SUITE_CPU=1 swaps the CUDA parts out for a check of the script itself on a CPU (parts 2-5 on the CPU with a
# ~10M model, 128-token completions, SDPA dense masks instead of flex attention, no bf16 autocast); part 1 then
# runs the same test files without the CUDA filter being able to select anything but the flex skip.
#
# Each part prints its figures and appends JSON lines to OUT_DIR/gpu_suite.jsonl (default: $OUT or ./gpu_suite_out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu_suite_out}}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export GPU_SUITE_OUT="$OUT_DIR/gpu_suite.jsonl"
PY="${PYTHON:-python}"
status=0

echo "== environment"
$PY - <<'EOF' || exit 1
import sys, torch, transformers
print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__)
import os
if os.environ.get("GPU_SUITE_CPU") == "1":
    print("device: CPU (GPU_SUITE_CPU=1: CUDA parts swapped out)")
else:
    assert torch.cuda.is_available(), "no CUDA device"
    print("device", torch.cuda.get_device_name(0))
EOF

echo "== 1. CUDA tests"
if $PY -c "import pytest" 2>/dev/null; then
    # -o addopts: pyproject's --timeout needs pytest-timeout, which the image may lack
    timeout 240 $PY -m pytest -q -x -p no:cacheprovider -o addopts="-ra --import-mode=importlib" -k "cuda or flex" \
        tests/test_process.py tests/test_objectives.py tests/test_packing.py
    rc=$?; [ $rc -eq 0 ] || [ $rc -eq 5 ] || status=1  # 5: nothing selected (a CPU has no cuda test)
else
    echo "pytest is not installed in this image: CUDA tests NOT run (carry a pytest wheel to run them)"; status=1
fi

echo "== 2. process sets: GPU vs CPU"
timeout 60 $PY - <<'EOF' || status=1
import json, os, time, torch
from lgrpo.process import process_blocks

def batch(G, K, T, shared, seed=0):
    g = torch.Generator().manual_seed(seed)
    stem = torch.randint(3, 40, (G, 1, int(shared * T)), generator=g).expand(G, K, -1)
    tail = torch.randint(3, 40, (G, K, T - stem.shape[2]), generator=g)
    ids = torch.cat([stem, tail], 2).reshape(G * K, T)
    lengths = torch.randint(T // 2, T + 1, (G * K,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return ids, mask, torch.arange(G).repeat_interleave(K)

SIZES = [(8, 16, 1024), (64, 16, 1024), (32, 64, 4096)] if os.environ.get("GPU_SUITE_CPU") != "1" else [(8, 16, 256)]
for G, K, T in SIZES:
    ids, mask, group = batch(G, K, T, 0.5)
    cpu = process_blocks(ids, mask, group).sizes
    t0 = time.perf_counter(); process_blocks(ids, mask, group); t_cpu = time.perf_counter() - t0
    cuda = torch.cuda.is_available() and os.environ.get("GPU_SUITE_CPU") != "1"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    dev = [x.cuda() if cuda else x for x in (ids, mask, group)]
    process_blocks(*dev); sync()
    t0 = time.perf_counter(); gpu = process_blocks(*dev).sizes; sync(); t_gpu = time.perf_counter() - t0
    assert torch.equal(gpu.cpu(), cpu), "process sets differ between GPU and CPU"
    row = {"bench": "process_sets", "G": G, "K": K, "T": T, "cpu_s": t_cpu, "gpu_s": t_gpu}
    print(f"G={G} K={K} T={T}: equal; CPU {t_cpu*1e3:.1f} ms, GPU {t_gpu*1e3:.1f} ms")
    open(os.environ["GPU_SUITE_OUT"], "a").write(json.dumps(row) + "\n")
EOF

echo "== 3+4+5. packed (flex BlockMask) vs padded steps, λ vs uniform, padded vs prompt-once vs tree; ~100M model, groups of 16 x 1,024 tokens"
timeout 330 $PY - <<'EOF' || status=1
import contextlib, json, os, statistics, time, torch
from overhead import build_model, build_tokenizer
from tree_packing import PROMPT_LEN, synthetic_batch
from lgrpo.objectives import lambda_weights, policy_loss
from lgrpo.packing import choose_packing, pack_groups, packed_logps

torch.manual_seed(0)
tok = build_tokenizer()
CPU = os.environ.get("GPU_SUITE_CPU") == "1"  # the CUDA parts swapped out: a check of this script on a CPU
K, T, REPEAT = (16, 1024, 3) if not CPU else (16, 128, 2)
SIZE, ATTN = ("100m", "flex_attention") if not CPU else ("10m", "sdpa")
dev = torch.device("cuda" if not CPU else "cpu")
sync = torch.cuda.synchronize if not CPU else (lambda: None)
autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if not CPU else contextlib.nullcontext
mask_of = (lambda p: p.block_mask()) if not CPU else (lambda p: None)  # None: the model's dense SDPA mask

def padded_logps(model, b):
    ids = torch.cat([b["prompt_ids"], b["completion_ids"]], 1)
    att = torch.cat([b["prompt_mask"], b["completion_mask"]], 1)
    logits = model(input_ids=ids, attention_mask=att, use_cache=False, logits_to_keep=T + 1).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, b["completion_ids"][..., None])[..., 0]

def step(model, opt, b, packed=None, weights=None):
    mask = b["completion_mask"]
    with autocast():
        if packed is None:
            logp = padded_logps(model, b)
        else:
            logp = packed_logps(model, packed, b["completion_ids"], mask_arg=mask_of(packed))[0]
    w = None
    if weights == "lambda":
        group = torch.arange(mask.shape[0], device=dev) // K
        w = lambda_weights(b["completion_ids"], mask, group)
    loss = policy_loss(logp, b["advantages"], mask, weights=w, loss_type="grpo")
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)

def timed(fn, n=REPEAT):
    fn(); sync()  # warm-up (flex attention compiles on first use)
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

out = open(os.environ["GPU_SUITE_OUT"], "a")
flex = build_model(tok, SIZE, PROMPT_LEN + T, seed=0).to(dev)
flex.config._attn_implementation = ATTN
padded = build_model(tok, SIZE, PROMPT_LEN + T, seed=0).to(dev)  # sdpa
print(f"model: {sum(p.numel() for p in padded.parameters()) / 1e6:.0f}M parameters")

# exactness first (fp32, no autocast): packed flex vs padded sdpa log-probs
b = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in synthetic_batch(tok, 1, K, T, 0.7, seed=2).items()}
p = pack_groups(b["prompt_ids"], b["prompt_mask"], b["completion_ids"], b["completion_mask"])
with torch.no_grad():
    ref = padded_logps(padded, b)
    for mode in ("tree", "prompt_once"):
        p = pack_groups(b["prompt_ids"], b["prompt_mask"], b["completion_ids"], b["completion_mask"], mode=mode)
        got = packed_logps(flex, p, b["completion_ids"], mask_arg=mask_of(p))[0]
        err = float((got - ref).abs().max() / ref.abs().max())
        print(f"packed {mode} ({ATTN}) vs padded log-probs, fp32: max relative error {err:.2e}")
        out.write(json.dumps({"bench": "packed_exact", "mode": mode, "rel_err": err}) + "\n")

opt_f = torch.optim.AdamW(flex.parameters(), lr=1e-7)
opt_p = torch.optim.AdamW(padded.parameters(), lr=1e-7)
for f in (0.0, 0.7, 0.9):
    b = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in synthetic_batch(tok, 1, K, T, f, seed=1).items()}
    p = pack_groups(b["prompt_ids"], b["prompt_mask"], b["completion_ids"], b["completion_mask"])
    t_packed = timed(lambda: step(flex, opt_f, b, packed=p))
    t_padded = timed(lambda: step(padded, opt_p, b))
    row = {"bench": "packed_step", "shared": f, "unique_token_fraction": p.unique_token_fraction,
           "packed_s": t_packed, "padded_s": t_padded, "speedup": t_padded / t_packed}
    print(f"shared {f:.1f} (unique-token fraction {p.unique_token_fraction:.2f}): packed {t_packed:.3f}s, "
          f"padded {t_padded:.3f}s, speed-up {t_padded / t_packed:.2f}x", flush=True)
    out.write(json.dumps(row) + "\n"); out.flush()

b = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in synthetic_batch(tok, 4, K, T, 0.7, seed=3).items()}
t_uniform = timed(lambda: step(padded, opt_p, b), n=5)
t_lambda = timed(lambda: step(padded, opt_p, b, weights="lambda"), n=5)
print(f"λ vs uniform (4 groups of 16 x {T:,}, padded step): λ {t_lambda:.3f}s, uniform {t_uniform:.3f}s, "
      f"ratio {t_lambda / t_uniform:.3f}")
out.write(json.dumps({"bench": "lambda_vs_uniform", "lambda_s": t_lambda, "uniform_s": t_uniform}) + "\n")

# 5. padded vs prompt-once vs tree on the same batches; the automatic choice (decision time included) vs the best
print(f"padded vs prompt-once vs tree ({ATTN}), steps of one group of {K} x {T:,}, median of {REPEAT}:")
for f in (0.0, 0.3, 0.7, 0.9):
    b = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in synthetic_batch(tok, 1, K, T, f, seed=4).items()}
    args = (b["prompt_ids"], b["prompt_mask"], b["completion_ids"], b["completion_mask"])
    lay = {m: pack_groups(*args, mode=m) for m in ("tree", "prompt_once")}
    times = {"padded": timed(lambda: step(padded, opt_p, b))}
    for m, p in lay.items():
        times[m] = timed(lambda: step(flex, opt_f, b, packed=p))
    t0 = time.perf_counter()
    pick = choose_packing({"tree": pack_groups(*args)}, (K, PROMPT_LEN + T), flex)  # what "auto" lays out
    decide = time.perf_counter() - t0
    auto = times[pick] + decide
    best = min(times.values())
    row = {"bench": "three_way", "shared": f, **{f"{m}_s": v for m, v in times.items()}, "auto_pick": pick,
           "decide_s": decide, "auto_over_best": auto / best}
    print(f"shared {f:.1f}: padded {times['padded']:.3f}s, prompt-once {times['prompt_once']:.3f}s, tree "
          f"{times['tree']:.3f}s; tree/prompt-once {times['prompt_once'] / times['tree']:.2f}x, tree/padded "
          f"{times['padded'] / times['tree']:.2f}x; auto picks {pick} ({decide * 1e3:.1f} ms), "
          f"auto/best {auto / best:.3f}", flush=True)
    out.write(json.dumps(row) + "\n"); out.flush()
EOF

echo "== done (status $status); figures in $GPU_SUITE_OUT"
exit $status
