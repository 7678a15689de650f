"""Tree packing: the layout against brute force, and packed vs padded log-probs, losses and gradients.

The reference is the ordinary padded batch (left-padded prompts + right-padded completions, one forward over all
rows, log-softmax of each completion token's previous position), computed here independently of lgrpo.packing.
Tolerance: 1e-5 relative (float32).
"""

from __future__ import annotations

import random

import pytest
import torch

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # the GPU image has no hypothesis (benchmarks/gpu_suite.sh); the property test then skips
    given = settings = st = None

from lgrpo.objectives import policy_loss
from lgrpo.packing import (
    check_packable,
    choose_packing,
    model_attention_mask,
    pack_groups,
    packed_logps,
    packing_pays,
)

RTOL = 1e-5

# ----------------------------------------------------------------------------------------------------------------
# helpers: build batches, the padded reference


def make_batch(prompts: list[list[int]], completions: list[list[int]], pad: int = 0):
    """Left-padded prompts ``[B, P]`` and right-padded completions ``[B, T]`` with their masks."""
    P = max(len(p) for p in prompts)
    T = max(max((len(c) for c in completions), default=1), 1)
    B = len(prompts)
    pid, pm = torch.full((B, P), pad), torch.zeros(B, P, dtype=torch.long)
    cid, cm = torch.full((B, T), pad), torch.zeros(B, T, dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        if p:
            pid[i, P - len(p) :], pm[i, P - len(p) :] = torch.tensor(p), 1
        if c:
            cid[i, : len(c)], cm[i, : len(c)] = torch.tensor(c), 1
    return pid, pm, cid, cm


def padded_logps(model, pid, pm, cid, cm, temperature: float = 1.0):
    """The padded batch's per-token log-probs ``[B, T]`` and entropies (what TRL computes), 0 on padding."""
    ids = torch.cat([pid, cid], 1)
    att = torch.cat([pm, cm], 1)
    logits = model(input_ids=ids, attention_mask=att, use_cache=False).logits.float() / temperature
    T = cid.shape[1]
    logsm = torch.log_softmax(logits[:, -T - 1 : -1], -1)
    logp = logsm.gather(-1, cid[:, :, None])[..., 0] * cm
    ent = -(logsm.exp() * logsm).sum(-1) * cm
    return logp, ent


def tiny(arch: str = "qwen2", attn: str = "sdpa", vocab: int = 64, seed: int = 0, **extra):
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    cls = {
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
        "llama": (LlamaConfig, LlamaForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
    }[arch]
    cfg = cls[0](
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        attn_implementation=attn,
        **extra,
    )
    torch.manual_seed(seed)
    return cls[1](cfg).eval()


def random_groups(rng: random.Random, vocab: int, n_groups: int, k: int, max_len: int):
    """Groups with shared prefixes, duplicates, strict prefixes, one-token and empty completions."""
    prompts, comps = [], []
    for _ in range(n_groups):
        prompt = [rng.randrange(1, vocab) for _ in range(rng.randint(1, 5))]
        stem = [rng.randrange(1, vocab) for _ in range(rng.randint(0, max_len))]
        group = []
        for _ in range(k):
            kind = rng.random()
            if kind < 0.2 and group:
                c = list(rng.choice(group))  # duplicate
            elif kind < 0.3 and group and rng.choice(group):
                c = rng.choice(group)[: rng.randint(1, len(rng.choice(group)) or 1)]  # strict prefix
            elif kind < 0.4:
                c = [rng.randrange(1, vocab)]  # one token
            else:
                cut = rng.randint(0, len(stem))
                c = stem[:cut] + [rng.randrange(1, vocab) for _ in range(rng.randint(0, max_len - cut))]
            group.append(c[:max_len])
        prompts += [prompt] * k
        comps += group
    order = list(range(len(prompts)))
    rng.shuffle(order)  # rows of a group need not be adjacent
    return [prompts[i] for i in order], [comps[i] for i in order]


# ----------------------------------------------------------------------------------------------------------------
# layout vs brute force


def check_layout(prompts, comps, row_tokens=None, pair_cost=None, mode="tree"):
    pid, pm, cid, cm = make_batch(prompts, comps)
    packed = pack_groups(pid, pm, cid, cm, row_tokens=row_tokens, pair_cost=pair_cost, mode=mode)
    # a node is one (tree, completion prefix) in a tree, one (row, position) in prompt-once
    node_key = (lambda i, c, t: (tree[i], tuple(c[: t + 1]))) if mode == "tree" else (lambda i, c, t: (i, t))
    tree = packed.group.tolist()
    # trees: rows of one tree share the prompt; without pair_cost one tree per distinct prompt
    for i in range(len(prompts)):
        for j in range(len(prompts)):
            if tree[i] == tree[j]:
                assert prompts[i] == prompts[j]
            elif not pair_cost:
                assert prompts[i] != prompts[j]
    R, N = packed.input_ids.shape
    ok = packed.allowed()[:, 0]
    flat_ids, flat_pos = packed.input_ids.flatten(), packed.position_ids.flatten()
    # unique tokens: one per distinct (prompt, completion prefix), one per distinct prompt token
    prefixes = {node_key(i, c, t) for i, c in enumerate(comps) for t in range(len(c))}
    prompt_tokens = sum(len(p) for p in {tree[i]: p for i, p in enumerate(prompts)}.values())
    assert packed.packed_tokens == len(prefixes) + prompt_tokens
    assert packed.unpacked_tokens == sum(len(p) + len(c) for p, c in zip(prompts, comps))
    node_of = {}
    for i, (p, c) in enumerate(zip(prompts, comps)):
        # the prompt's columns: the tokens of the context of t = 0
        r = int(packed.context_index[i, 0]) // N if c else None
        for t in range(len(c)):
            n = int(packed.token_index[i, t])
            assert node_of.setdefault(node_key(i, c, t), n) == n  # same tree and prefix (tree), same node
            assert int(flat_ids[n]) == c[t] and int(flat_pos[n]) == len(p) + t
            ctx = int(packed.context_index[i, t])
            if t:
                assert ctx == int(packed.token_index[i, t - 1])
            else:
                assert int(flat_ids[ctx]) == p[-1] and int(flat_pos[ctx]) == len(p) - 1
            # query (i, t) sees exactly its prompt and its own prefix
            assert n // N == r
            seen = set(torch.nonzero(ok[r, n % N]).flatten().tolist())
            cols = {int(packed.token_index[i, s]) % N for s in range(t + 1)}
            prompt_cols = set(
                range(
                    int(packed.context_index[i, 0]) % N - len(p) + 1, int(packed.context_index[i, 0]) % N + 1
                )
            )
            assert seen == cols | prompt_cols
            assert [int(flat_ids[r * N + x]) for x in sorted(prompt_cols)] == p
    assert len(set(node_of.values())) == len(node_of)
    # padding columns see themselves only
    used = torch.zeros(R * N, dtype=torch.bool)
    used[packed.token_index[packed.mask]] = True
    used[packed.context_index[packed.mask]] = True
    for r in range(R):
        for x in range(N):
            if int(packed.end[r, x]) == x + 1 and not used[r * N + x]:
                row = ok[r, x]
                assert bool(row[x]) and int(row[: x + 1].sum()) >= 1


def _layout_property(seed, n_groups, k, max_len):
    rng = random.Random(seed)
    prompts, comps = random_groups(rng, 5, n_groups, k, max_len)
    if all(not c for c in comps):
        comps[0] = [1]
    check_layout(
        prompts,
        comps,
        row_tokens=rng.choice([None, 12, 40]),
        pair_cost=rng.choice([None, 0.01, 0.1, 1.0]),
        mode=rng.choice(["tree", "prompt_once"]),
    )


if given is not None:
    test_layout_matches_brute_force = settings(max_examples=40, deadline=None)(
        given(
            seed=st.integers(0, 10**6),
            n_groups=st.integers(1, 4),
            k=st.integers(1, 6),
            max_len=st.integers(1, 7),
        )(_layout_property)
    )
else:

    def test_layout_matches_brute_force():
        pytest.skip("hypothesis is not installed")


def test_layout_by_hand():
    # one group; completions 1 2 3 / 1 2 4 / 1 2 / 5: unique nodes in DFS preorder 1,2,3,4,5 after the prompt 9 9
    pid, pm, cid, cm = make_batch([[9, 9]] * 4, [[1, 2, 3], [1, 2, 4], [1, 2], [5]])
    packed = pack_groups(pid, pm, cid, cm)
    assert packed.input_ids.tolist() == [[9, 9, 1, 2, 3, 4, 5]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 4, 2]]
    assert packed.end.tolist() == [[7, 7, 6, 6, 5, 6, 7]]
    assert packed.token_index.tolist() == [[2, 3, 4], [2, 3, 5], [2, 3, 0], [6, 0, 0]]
    assert packed.context_index.tolist() == [[1, 2, 3], [1, 2, 3], [1, 2, 0], [1, 0, 0]]
    assert packed.unique_token_fraction == 7 / (8 + 9)


def test_prompt_once_layout_by_hand():
    # the same group prompt-once: the prompt 9 9 once, then every completion in full, in lexicographic order
    pid, pm, cid, cm = make_batch([[9, 9]] * 4, [[1, 2, 3], [1, 2, 4], [1, 2], [5]])
    packed = pack_groups(pid, pm, cid, cm, mode="prompt_once")
    assert packed.input_ids.tolist() == [[9, 9, 1, 2, 1, 2, 3, 1, 2, 4, 5]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 2, 3, 4, 2, 3, 4, 2]]
    assert packed.end.tolist() == [[11, 11, 4, 4, 7, 7, 7, 10, 10, 10, 11]]
    assert packed.token_index.tolist() == [[4, 5, 6], [7, 8, 9], [2, 3, 0], [10, 0, 0]]
    assert packed.context_index.tolist() == [[1, 4, 5], [1, 7, 8], [1, 2, 0], [1, 0, 0]]
    assert packed.packed_tokens == 2 + 9 and packed.mode == "prompt_once"  # G·(P + R) = 17 → P + G·R = 11
    with pytest.raises(ValueError, match="mode"):
        pack_groups(pid, pm, cid, cm, mode="trie")


def test_row_tokens_is_a_capacity_and_rows_are_as_wide_as_the_fullest():
    # three groups by hand: A = prompt 5 6 + completions 1 2 / 1 3 (5 tokens), C = 8 9 9 + 1 (4), B = 7 + 4 (2)
    pid, pm, cid, cm = make_batch([[5, 6], [5, 6], [7], [8, 9, 9]], [[1, 2], [1, 3], [4], [1]])
    # capacity max(row_tokens, 5); first-fit decreasing puts A, then C, then B where it fits
    for row_tokens, widths in [(100, [11]), (6, [5, 6]), (None, [5, 4, 2]), (3, [5, 4, 2])]:
        packed = pack_groups(pid, pm, cid, cm, row_tokens=row_tokens)
        used = [int(x) for x in (packed.input_ids != 0).sum(1)]  # no token id is 0 here
        assert used == widths, row_tokens
        assert packed.input_ids.shape == (len(widths), max(widths))  # not padded to the capacity


def test_pair_cost_splits_large_groups():
    # 8 completions sharing nothing but the prompt: with costly pairs every completion is its own tree (the padded
    # batch); with free pairs one tree; 8 sharing a long stem stay one tree at a moderate pair cost
    distinct = [[(i * 7 + t) % 60 + 1 for t in range(20)] for i in range(8)]
    pid, pm, cid, cm = make_batch([[5, 6]] * 8, distinct)
    assert pack_groups(pid, pm, cid, cm, pair_cost=1.0).input_ids.shape == (8, 22)
    assert pack_groups(pid, pm, cid, cm, pair_cost=0.0).input_ids.shape == (1, 2 + 160)
    shared = [[1] * 30 + [2 + i] for i in range(8)]
    pid, pm, cid, cm = make_batch([[5, 6]] * 8, shared)
    assert pack_groups(pid, pm, cid, cm, pair_cost=0.001).input_ids.shape == (1, 2 + 30 + 8)
    check_layout([[5, 6]] * 8, distinct, pair_cost=0.02)
    # S = 70: capacities 35 (pairs of completions), then 17.5 is below one prompt + completion (20); the cut at
    # exactly one completion per tree is still tried, and is the cheapest
    distinct = [[(i * 11 + t) % 60 + 1 for t in range(10)] for i in range(6)]
    pid, pm, cid, cm = make_batch([list(range(1, 11))] * 6, distinct)
    assert pack_groups(pid, pm, cid, cm, pair_cost=1.0).input_ids.shape == (6, 20)


def test_pack_groups_rejects_bad_input():
    pid, pm, cid, cm = make_batch([[1, 2], [3]], [[1], [2]])
    pack_groups(pid, torch.tensor([[1, 0], [0, 1]]), cid, cm)  # any contiguous run is a prompt
    with pytest.raises(ValueError, match="empty prompt"):
        pack_groups(pid, torch.zeros_like(pm), cid, cm)
    with pytest.raises(ValueError, match="prompt_mask"):
        pack_groups(torch.zeros(2, 3, dtype=torch.long), torch.tensor([[1, 0, 1], [1, 1, 1]]), cid, cm)
    with pytest.raises(ValueError, match="prompt_ids"):
        pack_groups(pid[:1], pm[:1], cid, cm)
    with pytest.raises(ValueError, match="mask"):
        pack_groups(pid, pm, cid, torch.tensor([[0], [1]])[:, [0, 0]])


# ----------------------------------------------------------------------------------------------------------------
# packed == padded: log-probs, loss, gradients


def assert_close(a, b, what):
    scale = b.abs().max().clamp(min=1e-6)
    err = float(((a - b).abs().max() / scale).detach())
    assert err <= RTOL, f"{what}: relative error {err:.2e} > {RTOL}"


def loss_of(logp, cm, old, adv, ent):
    """The clipped loss plus an entropy bonus (as TRL's ``entropy_coef`` adds), so entropy gradients are compared too."""
    loss = policy_loss(logp, adv, cm, old_logp=old, loss_type="grpo", epsilon_low=0.1, epsilon_high=0.1)
    return loss - 0.1 * (ent * cm).sum() / cm.sum()


def compare(
    model,
    prompts,
    comps,
    temperature=1.0,
    row_tokens=None,
    mask_arg=None,
    reference=None,
    pair_cost=None,
    mode="tree",
):
    device = next(model.parameters()).device
    pid, pm, cid, cm = (x.to(device) for x in make_batch(prompts, comps))
    params = [p for p in model.parameters() if p.requires_grad]
    ref, ref_ent = padded_logps(reference or model, pid, pm, cid, cm, temperature)
    gen = torch.Generator().manual_seed(1)
    old = (ref.detach() + 0.05 * torch.randn(ref.shape, generator=gen).to(device)) * cm
    adv = torch.randn(cid.shape[0], generator=gen).to(device)
    ref_loss = loss_of(ref, cm, old, adv, ref_ent)
    ref_grads = torch.autograd.grad(
        ref_loss, [p for p in (reference or model).parameters() if p.requires_grad]
    )

    packed = pack_groups(pid, pm, cid, cm, row_tokens=row_tokens, pair_cost=pair_cost, mode=mode)
    mask = mask_arg(packed) if mask_arg else None
    logp, ent = packed_logps(model, packed, cid, temperature=temperature, compute_entropy=True, mask_arg=mask)
    loss = loss_of(logp, cm, old, adv, ent)
    grads = torch.autograd.grad(loss, params)
    assert_close(logp, ref, "log-probs")
    assert_close(ent, ref_ent, "entropies")
    assert_close(loss, ref_loss, "loss")
    for (name, _), g, rg in zip(
        [(n, p) for n, p in model.named_parameters() if p.requires_grad], grads, ref_grads
    ):
        assert_close(g, rg, f"grad {name}")
    return packed


@pytest.mark.parametrize("mode", ["tree", "prompt_once"])
@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_equals_padded(arch, attn, device, mode):
    model = tiny(arch, attn).to(device)
    prompts, comps = random_groups(random.Random(3), 64, 3, 5, 12)
    packed = compare(
        model, prompts, comps, temperature=0.7, row_tokens=64 if mode == "tree" else 96, mode=mode
    )
    assert packed.input_ids.shape[0] < 3  # several groups share a packed row
    assert packed.unique_token_fraction < 1
    # prompt-once: each prompt once, every completion token in full
    per_group = {tuple(p): len(p) for p in prompts}
    expected = sum(per_group.values()) + sum(len(c) for c in comps)
    assert (packed.packed_tokens == expected) == (mode == "prompt_once")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="flex attention has no backward on CPU")
def test_flex_block_mask_equals_padded():
    """Packed with flex attention and a BlockMask (never a dense mask) against the padded batch under SDPA."""
    model = tiny("qwen2", "flex_attention").cuda()
    reference = tiny("qwen2", "sdpa").cuda()
    prompts, comps = random_groups(random.Random(11), 64, 3, 6, 40)
    compare(model, prompts, comps, mask_arg=lambda packed: packed.block_mask(), reference=reference)


@pytest.mark.parametrize("mode", ["tree", "prompt_once"])
def test_real_tokenizer_groups(smollm2_tokenizer, mode):
    tok = smollm2_tokenizer
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    q1 = enc(tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], tokenize=False))
    q2 = enc("Compute 17 * 3. Think step by step.")
    eos = tok.eos_token_id
    g1 = [
        "2 + 3 = 5, so the answer is \\boxed{5}.",
        "2 + 3 = 5, so the answer is \\boxed{5}.",  # duplicate
        "2 + 3 = 6, so the answer is \\boxed{6}.",
        "5",  # one token (no EOS appended at odd indices)
        "2 + 3",  # strict prefix
    ]
    g2 = ["17 * 3 = 51.", "17 * 3 = 51. Done", "17 * 3 is 51", "51"]
    comps = [enc(s) + ([eos] if i % 2 == 0 else []) for i, s in enumerate(g1 + g2)]
    assert any(len(c) == 1 for c in comps)
    prompts = [q1] * len(g1) + [q2] * len(g2)
    model = tiny("qwen2", "sdpa", vocab=len(tok))
    packed = compare(model, prompts, comps, mode=mode)
    assert packed.unique_token_fraction < (0.6 if mode == "tree" else 0.75)


@pytest.mark.parametrize("arch", ["qwen2", "mistral"])
def test_sliding_window(arch):
    # qwen2: layer 1 slides (the dict mask); mistral: every layer slides (one windowed mask)
    extra = {"use_sliding_window": True, "max_window_layers": 1} if arch == "qwen2" else {}
    model = tiny(arch, "sdpa", sliding_window=3, **extra)
    if arch == "qwen2":
        assert isinstance(model_attention_mask(model, pack_groups(*make_batch([[1]], [[2]]))), dict)
    prompts, comps = random_groups(random.Random(5), 64, 2, 4, 10)
    compare(model, prompts, comps)
    # the window matters: the same model without it gives other log-probs
    pid, pm, cid, cm = make_batch(prompts, comps)
    packed = pack_groups(pid, pm, cid, cm)
    windowless = packed_logps(model, packed, cid, mask_arg=packed.attention_mask(torch.bool))[0]
    assert float((windowless - padded_logps(model, pid, pm, cid, cm)[0]).abs().max().detach()) > 1e-4


def test_lora():
    peft = pytest.importorskip("peft")
    model = tiny("qwen2", "sdpa")
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for name, p in lora.named_parameters():  # non-zero B so the adapter changes the outputs
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    prompts, comps = random_groups(random.Random(7), 64, 2, 4, 8)
    compare(lora, prompts, comps, pair_cost=0.05)  # groups split into several trees
    compare(lora, prompts, comps, mode="prompt_once")
    with lora.disable_adapter():  # the reference policy
        pid, pm, cid, cm = make_batch(prompts, comps)
        ref = padded_logps(lora, pid, pm, cid, cm)[0]
        for mode in ("tree", "prompt_once"):
            got = packed_logps(lora, pack_groups(pid, pm, cid, cm, mode=mode), cid)[0]
            assert_close(got, ref, f"reference (adapter disabled), {mode}")


def test_through_a_ddp_wrapper(tmp_path):
    """``packed_logps`` given the DistributedDataParallel wrapper (1 process, gloo), as the TRL engine passes it:
    the config is read from the model inside (eager: the float mask in its dtype), the forward goes through the
    wrapper, and log-probs and gradients equal the bare model's padded batch."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from lgrpo.packing import pair_cost

    model = tiny("qwen2", "eager")
    prompts, comps = random_groups(random.Random(13), 64, 2, 4, 8)
    pid, pm, cid, cm = make_batch(prompts, comps)
    ref = padded_logps(model, pid, pm, cid, cm)[0]
    adv = torch.randn(cid.shape[0], generator=torch.Generator().manual_seed(2))[:, None]
    ref_grads = torch.autograd.grad((ref * adv).sum(), list(model.parameters()))
    packed = pack_groups(pid, pm, cid, cm)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model)
        check_packable(ddp)
        assert pair_cost(ddp) == pair_cost(model) > 0
        assert packing_pays(packed, (8, 20), ddp) == packing_pays(packed, (8, 20), model)
        torch.testing.assert_close(model_attention_mask(ddp, packed), packed.attention_mask(torch.float32))
        calls = []
        hook = ddp.register_forward_pre_hook(lambda *_: calls.append(1))
        logp = packed_logps(ddp, packed, cid)[0]
        hook.remove()
        assert calls == [1]  # through the wrapper, which synchronises gradients
        (logp * adv).sum().backward()
    finally:
        dist.destroy_process_group()
    assert_close(logp, ref, "log-probs")
    for (name, p), rg in zip(model.named_parameters(), ref_grads):
        assert_close(p.grad, rg, f"grad {name}")


def test_check_packable():
    check_packable(tiny("qwen2"))
    with pytest.raises(ValueError, match="attn_implementation"):
        m = tiny("llama")
        m.config._attn_implementation = "flash_attention_2"
        check_packable(m)
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(ValueError, match="rotary"):
        check_packable(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16)))
    m = tiny("qwen2")
    m.config.rope_parameters = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 1, 1]}
    with pytest.raises(ValueError, match="3D"):
        check_packable(m)


def test_packing_pays_and_budget():
    model = tiny("qwen2")
    shared = [[1] * 40 + [2 + i] for i in range(8)]
    pid, pm, cid, cm = make_batch([[5, 6]] * 8, shared)
    packed = pack_groups(pid, pm, cid, cm)
    assert packing_pays(packed, (8, 2 + 41), model, min_saving_flops=0)
    assert not packing_pays(packed, (8, 2 + 41), model)  # too small a saving to pay for the layout
    assert not packing_pays(packed, (8, 2 + 41), model, mask_budget_bytes=10, min_saving_flops=0)
    distinct = [[(i * 7 + t) % 60 + 1 for t in range(41)] for i in range(8)]  # nothing shared
    pid, pm, cid, cm = make_batch([[5, 6]] * 8, distinct)
    assert not packing_pays(pack_groups(pid, pm, cid, cm), (8, 2 + 41), model, min_saving_flops=0)


def test_choose_packing():
    """The tree when completions share a long stem, padded when nothing pays; prompt-once when only it fits the
    mask budget; the decision among the layouts follows the FLOP estimates (worked out here by hand)."""
    model = tiny("qwen2")
    d, ff, layers, V = 32, 64, 2, 64
    per_token, per_pair, per_head = layers * (8 * d * d + 6 * d * ff), layers * 4 * d, 2 * d * V
    shared = [[1] * 40 + [2 + i] for i in range(8)]
    pid, pm, cid, cm = make_batch([[5, 6]] * 8, shared)
    layouts = {m: pack_groups(pid, pm, cid, cm, mode=m) for m in ("tree", "prompt_once")}
    tree, once = layouts["tree"], layouts["prompt_once"]
    assert tree.input_ids.shape == (1, 2 + 40 + 8) and once.input_ids.shape == (1, 2 + 8 * 41)
    # by hand: tree 50 tokens, 50² pairs, 41 context rows (prompt end + 40 stem); padded 8 × 43, head 8 × 42
    tree_cost = 50 * per_token + 50 * 50 * per_pair + 41 * per_head
    padded = 8 * 43 * per_token + 8 * 43 * 43 * per_pair + 8 * 42 * per_head
    assert tree_cost < 0.9 * padded
    assert choose_packing(layouts, (8, 43), model, min_saving_flops=0) == "tree"
    assert choose_packing(layouts, (8, 43), model, min_saving_flops=padded - tree_cost + 1) == "padded"
    # a budget the tree's 50² mask fits and prompt-once's 330² does not, and the reverse is never true
    assert choose_packing(layouts, (8, 43), model, min_saving_flops=0, mask_budget_bytes=50 * 50) == "tree"
    assert choose_packing({"prompt_once": once}, (8, 43), model, min_saving_flops=0) == "padded"  # 330² pairs
    # prompt-once wins where only it is given a budget-fitting layout: two groups, nothing shared but the prompt
    long_prompt = list(range(1, 61))
    distinct = [[(i * 7 + t) % 60 + 1 for t in range(4)] for i in range(4)]
    pid, pm, cid, cm = make_batch([long_prompt] * 4, distinct)
    once = pack_groups(pid, pm, cid, cm, mode="prompt_once")
    assert once.input_ids.shape == (1, 60 + 16)
    assert choose_packing({"prompt_once": once}, (4, 64), model, min_saving_flops=0) == "prompt_once"
