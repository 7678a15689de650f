"""Tiny causal language models and a character-level tokenizer, built locally from a config (nothing from the Hub).

The embedded ``lgrpo train`` default uses these: a few-layer Qwen2- or Llama-architecture model over printable ASCII,
small enough to be warm-started and trained with GRPO on a laptop CPU in minutes.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers is imported where it is used, so importing this module stays cheap
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
# Role markers of the chat template: single special tokens so a tiny model sees them as one symbol each.
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

# A minimal chat template: one role marker per message, the content, a newline; `add_generation_prompt` opens the
# assistant turn. Lets conversational prompts (e.g. with the math system prompt) work with the char tokenizer.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

ARCHITECTURES = ("qwen2", "llama")


class LoadError(RuntimeError):
    """A model or dataset could not be loaded; the message says what was tried and how to give a local copy."""


def _char_vocab(extra_chars: str = "") -> dict[str, int]:
    specials = [PAD, BOS, EOS, UNK, *ROLE_TOKENS]
    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]
    extra = sorted(set(extra_chars) - set(chars) - {"\r", "\x0b", "\x0c"})
    return {tok: i for i, tok in enumerate(specials + chars + extra)}


def _saved_char_extras(path: str | os.PathLike) -> str | None:
    """The extra characters of a :func:`char_tokenizer` saved in ``path`` ("" for none), or None when ``path``
    holds no lgrpo char tokenizer (its vocabulary must be ours, with any extra characters after it in order)."""
    file = Path(path) / "tokenizer.json"
    if not file.is_file():
        return None
    try:
        model = json.loads(file.read_text(encoding="utf-8")).get("model", {})
    except (OSError, ValueError):
        return None
    vocab = model.get("vocab")
    if model.get("type") != "WordLevel" or not isinstance(vocab, dict):
        return None
    base = _char_vocab()
    extra = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])[len(base) :]]
    if any(len(t) != 1 for t in extra) or vocab != _char_vocab("".join(extra)):
        return None
    return "".join(extra)


def is_char_tokenizer(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a saved :func:`char_tokenizer` (its ``tokenizer.json`` has exactly our vocabulary,
    with or without extra characters)."""
    return _saved_char_extras(path) is not None


def load_tokenizer(name_or_path: str, local_files_only: bool = False) -> PreTrainedTokenizerFast:
    """A tokenizer from a directory or Hub id; lgrpo's char tokenizer is rebuilt rather than auto-loaded.

    Why: ``AutoTokenizer`` picks the tokenizer class from the model's ``config.json``, so a saved tiny Qwen2 model
    would get a ``Qwen2Tokenizer`` that splits text differently from the ids the model was trained on. A char
    tokenizer built over a task's text is rebuilt with the same extra characters, so the ids stay the same.
    """
    extras = _saved_char_extras(name_or_path) if os.path.isdir(name_or_path) else None
    if extras is not None:
        return char_tokenizer(extras)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_files_only)


def char_tokenizer(extra_chars: str = "") -> PreTrainedTokenizerFast:
    """A character-level tokenizer over printable ASCII (plus newline and tab), with pad/bos/eos/unk and role tokens.

    Ids are fixed by construction (specials first, then characters in ``string.printable`` order, then the
    characters of ``extra_chars`` that are not among them, sorted), so a model saved with one build of this
    tokenizer reads the same ids with any other build from the same ``extra_chars``. Pass a task's text as
    ``extra_chars`` to cover its non-ASCII characters (other characters become ``<unk>``).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=_char_vocab(extra_chars), unk_token=UNK))
    # One pre-token per character; the class matches newlines too.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=list(ROLE_TOKENS),
        padding_side="left",  # generation pads on the left; SFT builds its own batches
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_causal_lm(
    tokenizer: PreTrainedTokenizerFast,
    arch: str = "qwen2",
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int = 512,
    max_position_embeddings: int = 256,
    seed: int = 0,
) -> PreTrainedModel:
    """A randomly initialised Qwen2 or Llama causal LM sized for ``tokenizer``; deterministic in ``seed``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"model.arch must be one of {ARCHITECTURES}, got {arch!r}")
    if hidden_size % num_heads:
        raise ValueError(
            f"model.hidden_size ({hidden_size}) must be divisible by model.num_heads ({num_heads})"
        )
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "qwen2":
            model = Qwen2ForCausalLM(Qwen2Config(**common))
        else:
            model = LlamaForCausalLM(LlamaConfig(**common))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


# ----------------------------------------------------------------------------------------------------------------
# pretrained models (the paper configs): local first, the Hub only when it can be reached


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connect within ``timeout`` seconds (False when offline mode is on).

    Probing first turns a machine without network into an immediate, clear error instead of minutes of retries.
    """
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` has the form of a Hugging Face Hub repo id (``name`` or ``namespace/name``, as
    ``huggingface_hub.utils.validate_repo_id`` checks it) rather than only of a local path (absolute, ``./``, ``~``,
    several ``/``, a ``.gguf`` file)."""
    if name.lower().endswith(".gguf"):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def check_model_source(name_or_path: str, what: str = "model.name_or_path") -> None:
    """``LoadError`` when ``name_or_path`` does not exist as a local path and cannot be a Hub id: a missing path is
    reported as such (no Hub hint). Cheap: call it before any long work."""
    if not os.path.exists(os.path.expanduser(name_or_path)) and not looks_like_hub_id(name_or_path):
        if name_or_path.endswith(".gguf"):
            raise LoadError(_no_gguf(name_or_path, what))
        raise LoadError(f"{what}={name_or_path!r}: no such file or directory")


def _no_gguf(path: str, what: str) -> str:
    return (
        f"{what}={path!r}: no such .gguf file. Give the path of a local GGUF file; "
        "SmolLM2-135M-Instruct is fetched by `make smollm2` (python -m lgrpo.assets), which prints its path."
    )


_DTYPES = ("float32", "bfloat16", "float16", "auto")


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this machine computes bfloat16 natively: a CUDA GPU that supports it, else a CPU whose flags
    (``/proc/cpuinfo``, or the text ``cpuinfo``) include ``avx512_bf16`` or ``amx_bf16``.

    Without those instructions PyTorch emulates bfloat16 on a CPU and it is slower than float32; where there is no
    ``/proc/cpuinfo`` (macOS, Windows) the answer is False.
    """
    import torch

    if cpuinfo is None:
        if torch.cuda.is_available():
            return bool(torch.cuda.is_bf16_supported())
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {
        f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.split(":", 1)[-1].split()
    }
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_dtype(dtype: str) -> str:
    """The dtype ``lgrpo train`` loads a pretrained model in: ``auto`` becomes ``bfloat16`` where the hardware
    computes it natively (:func:`native_bf16`), else ``float32``; any other value is returned as given.

    Raises ValueError for a value that is not one of float32, bfloat16, float16, auto.
    """
    _torch_dtype(dtype)
    if dtype != "auto":
        return dtype
    return "bfloat16" if native_bf16() else "float32"


def _torch_dtype(dtype: str):
    import torch

    if dtype not in _DTYPES:
        raise ValueError(f"dtype: expected one of {_DTYPES}, got {dtype!r}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def load_pretrained(
    name_or_path: str, dtype: str = "auto", what: str = "model.name_or_path"
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A causal LM and its tokenizer from a local directory, the local HF cache, or (when reachable) the Hub.

    ``what`` names the argument in error messages (``model.name_or_path``, ``--model``). Raises :class:`LoadError`
    naming what it tried to load and how to give a local copy when nothing works.
    """
    from transformers import AutoModelForCausalLM

    torch_dtype = _torch_dtype(dtype)
    how = (
        f"{what}={name_or_path!r} is neither a local directory nor in the local Hugging Face cache, "
        "and the Hub cannot be reached. Download it where you have network (e.g. `hf download "
        f"{name_or_path} --local-dir /path/to/model`) and pass {what}=/path/to/model (a folder or a .gguf file)."
    )

    def _load(local_only: bool):
        tok = load_tokenizer(name_or_path, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=torch_dtype, local_files_only=local_only
        )
        return model, tok

    if os.path.isdir(name_or_path):
        try:
            return _load(True)
        except (OSError, ValueError) as e:
            raise LoadError(f"could not load {what}={name_or_path!r} (a local directory): {e}") from e
    if os.path.exists(name_or_path):
        raise LoadError(
            f"{what}={name_or_path!r} is a file but not a .gguf file; give a model folder, a .gguf file or a Hub id"
        )
    try:
        return _load(True)
    except (OSError, ValueError):
        pass
    if not hub_reachable():
        raise LoadError(how)
    try:
        return _load(False)
    except (OSError, ValueError) as e:
        raise LoadError(f"{how} ({type(e).__name__}: {e})") from e


# ----------------------------------------------------------------------------------------------------------------
# GGUF files: dequantised once into a plain model folder


DEQUANTISED_DONE = "lgrpo_dequantised.json"  # written last: marks a dequantised folder complete


def dequantised_dir(gguf: str | os.PathLike, dtype: str = "float32") -> Path:
    """Where :func:`dequantise_gguf` keeps the plain copy of ``gguf``: ``<cache>/dequantised/<stem>-<dtype>-<key>``.

    ``key`` hashes the file's absolute path, size and modification time, so a changed file gets a fresh copy.
    """
    import hashlib

    from lgrpo.assets import cache_dir

    path = Path(gguf).expanduser().resolve()
    st = path.stat()
    key = hashlib.sha1(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:10]
    return cache_dir() / "dequantised" / f"{path.stem}-{dtype}-{key}"


def dequantise_gguf(
    gguf: str | os.PathLike, dtype: str = "float32", what: str = "model.name_or_path"
) -> Path:
    """A plain transformers model folder (safetensors in ``dtype`` + tokenizer) holding the weights of ``gguf``.

    transformers dequantises a GGUF file on every load (about 30 s for a 135M model) and keeps a GGUF
    ``quantization_config`` on the model, which makes ``Trainer`` refuse to train it and loses the file name
    (``config._name_or_path`` is its folder), so TRL could not rebuild the β > 0 reference model and PEFT could not
    name the base model of an adapter. Writing the dequantised weights once to a folder (:func:`dequantised_dir`,
    atomically) fixes all three: the model loads from there as an ordinary, trainable checkpoint.

    Raises:
        LoadError: the file does not exist, is not a GGUF file transformers can read, or ``gguf`` is not installed.
    """
    path = Path(gguf).expanduser()
    if not path.is_file():
        raise LoadError(_no_gguf(str(gguf), what))
    target = dequantised_dir(path, dtype)
    if (target / DEQUANTISED_DONE).is_file():
        return target
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise LoadError(
            f"{what}={str(gguf)!r}: loading a .gguf file needs the gguf package (pip install gguf)"
        )
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=_torch_dtype(dtype)
        )
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise LoadError(
            f"could not read {what}={str(gguf)!r} as a GGUF model: {type(e).__name__}: {e}"
        ) from e
    # the weights are plain tensors now: drop the quantisation marks so the model saves and trains as any other
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer, model.is_quantized, model.quantization_method = None, False, None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / DEQUANTISED_DONE).write_text(json.dumps({"gguf": str(path.resolve()), "dtype": dtype}) + "\n")
        shutil.rmtree(target, ignore_errors=True)  # an unfinished copy of a killed process
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same copy first
            if not (target / DEQUANTISED_DONE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_model(
    name_or_path: str, dtype: str = "float32", what: str = "model.name_or_path"
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Any checkpoint as a trainable ``(model, tokenizer)``: a ``.gguf`` file, a model folder, or a Hub id.

    A ``.gguf`` file is dequantised to ``dtype`` once (:func:`dequantise_gguf`) and loaded from that plain copy,
    so ``model.config._name_or_path`` is a folder that TRL (β > 0 reference model), PEFT and vLLM can load again.
    A PEFT adapter folder (``adapter_config.json``) is loaded on its base model and merged. The tokenizer pads on
    the left (generation appends on the right) and falls back to EOS as pad token.

    Raises:
        LoadError: naming ``what`` and what was tried, and how to point at a local copy.
    """
    _torch_dtype(dtype)  # a bad dtype fails before any loading
    check_model_source(str(name_or_path), what)
    source = os.path.expanduser(str(name_or_path))
    if source.endswith(".gguf"):  # "auto": GGUF weights have no one float type; dequantise to float32
        source = str(dequantise_gguf(source, "float32" if dtype == "auto" else dtype, what))
    adapter = Path(source) / "adapter_config.json"
    if adapter.is_file():
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base:
            raise LoadError(f"{what}={name_or_path!r}: {adapter} names no base_model_name_or_path")
        model, tok = load_model(base, dtype, f"the base model of {what}={name_or_path!r}")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, source).merge_and_unload()
        if (Path(source) / "tokenizer_config.json").is_file():
            tok = load_tokenizer(source, local_files_only=True)
    else:
        model, tok = load_pretrained(source, dtype, what)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model, tok
