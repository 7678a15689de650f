import pytest
import torch

from lgrpo import models


def test_char_tokenizer_round_trips_and_has_fixed_ids():
    tok = models.char_tokenizer()
    text = "12+34=?\n12+34=46\n\\boxed{46}"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    assert tok.decode(ids) == text
    assert ids == models.char_tokenizer()(text, add_special_tokens=False)["input_ids"]
    assert tok.eos_token_id == 2 and tok.pad_token_id == 0
    with_eos = tok("1<eos>", add_special_tokens=False)["input_ids"]
    assert with_eos[-1] == tok.eos_token_id and len(with_eos) == 2


def test_chat_template():
    tok = models.char_tokenizer()
    text = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "1+1"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "<|system|>S\n<|user|>1+1\n<|assistant|>"
    assert len(tok(text, add_special_tokens=False)["input_ids"]) == 9  # 3 role tokens + 6 chars


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_tiny_model_forward_and_seed(arch):
    tok = models.char_tokenizer()
    m1 = models.tiny_causal_lm(
        tok, arch, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, seed=3
    )
    m2 = models.tiny_causal_lm(
        tok, arch, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, seed=3
    )
    ids = tok(["1+2=?\n"], return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = m1(input_ids=ids).logits
    assert out.shape == (1, ids.shape[1], len(tok))
    assert torch.equal(out, m2(input_ids=ids).logits)
    assert m1.config.model_type == arch


def test_tiny_model_rejects_bad_shape():
    with pytest.raises(ValueError, match="num_heads"):
        models.tiny_causal_lm(models.char_tokenizer(), hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="arch"):
        models.tiny_causal_lm(models.char_tokenizer(), arch="gpt2")


def test_load_pretrained_offline_names_the_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=r"some-org/not-here.*model\.name_or_path=/path"):
        models.load_pretrained("some-org/not-here")


def test_saved_char_tokenizer_loads_back_with_the_same_ids(tmp_path):
    """A saved tiny model's tokenizer must re-tokenize exactly as in training (AutoTokenizer alone does not)."""
    tok = models.char_tokenizer()
    model = models.tiny_causal_lm(tok, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert models.is_char_tokenizer(tmp_path)
    text = "9 + 4\n=13 \\boxed{13}"
    loaded = models.load_tokenizer(str(tmp_path), local_files_only=True)
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded.decode(tok(text)["input_ids"]) == text
    assert not models.is_char_tokenizer(tmp_path / "missing")


def test_char_tokenizer_over_a_task_text_reloads_with_the_same_ids(tmp_path):
    from lgrpo.models import char_tokenizer, is_char_tokenizer, load_tokenizer

    base = char_tokenizer()
    tok = char_tokenizer("Höhe × 3 − 2 = ?")  # the non-ASCII characters get ids after the ASCII ones
    assert len(tok) == len(base) + 3
    assert tok("3×4")["input_ids"][0] == base("3")["input_ids"][0]  # ASCII ids unchanged
    ids = tok("ö×−")["input_ids"]
    assert sorted(ids) == list(range(len(base), len(base) + 3)) and tok.unk_token_id not in ids
    assert base("ö")["input_ids"] == [base.unk_token_id]
    tok.save_pretrained(tmp_path)
    assert is_char_tokenizer(tmp_path)
    again = load_tokenizer(str(tmp_path))
    assert (
        again.get_vocab() == tok.get_vocab()
        and again("Höhe × 3")["input_ids"] == tok("Höhe × 3")["input_ids"]
    )


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    plain = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
    assert not models.native_bf16(plain)
    assert models.native_bf16(plain.replace("avx512bw", "avx512bw avx512_bf16"))
    assert models.native_bf16("flags\t: sse2 amx_bf16 amx_tile\n")
    assert not models.native_bf16("model name\t: avx512_bf16 in a name, not a flag\n")


@pytest.mark.parametrize("native", [True, False])
def test_resolve_dtype_auto_follows_the_hardware(monkeypatch, native):
    monkeypatch.setattr(models, "native_bf16", lambda cpuinfo=None: native)
    assert models.resolve_dtype("auto") == ("bfloat16" if native else "float32")
    for given in ("float32", "bfloat16", "float16"):
        assert models.resolve_dtype(given) == given
    with pytest.raises(ValueError, match="dtype"):
        models.resolve_dtype("fp8")
