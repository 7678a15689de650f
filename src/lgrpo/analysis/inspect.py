"""``lgrpo inspect``: draw one group's process tree as a self-contained HTML page.

``lgrpo inspect RUN_DIR --step S --group G`` reads that group from ``RUN_DIR/rollouts.jsonl``; ``lgrpo inspect
--example`` draws METHOD.md §7's example. The page shows every process step of :class:`lgrpo.process.ProcessTree`
as a box (its text, ``|λ|``, step reward ``R``, PRM-aware advantage ``A``, coloured by ``A``) and, below the tree,
each completion as a strip of tokens shaded by its weight under GRPO (1) and λ-GRPO (``1/|λ|``, from
:func:`lgrpo.objectives.lambda_weights`).

Token text. The log holds each completion's ``completion`` text and its ``completion_ids``, not where one token's
text ends. In order of preference:

1. a tokenizer (``--tokenizer PATH``, or one found under ``RUN_DIR``, e.g. a checkpoint) decodes each id;
2. otherwise, if the group's completions split into exactly one character per id, or one whitespace-led word per id
   (a few trailing ids with no text, such as EOS, allowed), and every id maps to the same text everywhere in the
   group, that split is used;
3. otherwise tokens are shown as their ids (``⟨id⟩``) and each completion's full text is kept in its tooltip.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from lgrpo.analysis.html import render_page
from lgrpo.analysis.rollouts import find_rollouts, load_group, to_batch
from lgrpo.objectives import lambda_weights
from lgrpo.process import ProcessTree, process_set_sizes, tree_stats

__all__ = ["add_arguments", "build_page_data", "example_page_data", "find_tokenizer", "run", "token_texts"]

# ids allowed after the text ends (EOS, end-of-turn) when splitting the text without a tokenizer
MAX_TRAILING_SPECIAL = 2


# ----------------------------------------------------------------------------------------------------------------
# token text


def _split_consistent(pieces_per_row: list[list[str]], ids_per_row: list[list[int]], strip: bool) -> bool:
    seen: dict[int, str] = {}
    for pieces, ids in zip(pieces_per_row, ids_per_row):
        for tok, text in zip(ids, pieces):
            key = text.strip() if strip else text  # a word-level vocabulary has no leading spaces
            if seen.setdefault(tok, key) != key:
                return False
    return True


def _split_rows(
    texts: list[str], ids_per_row: list[list[int]], splitter: Callable[[str], list[str]], strip: bool = False
) -> list[list[str]] | None:
    out = []
    for text, ids in zip(texts, ids_per_row):
        pieces = splitter(text)
        extra = len(ids) - len(pieces)
        if not 0 <= extra <= MAX_TRAILING_SPECIAL:
            return None
        out.append(pieces)
    if not _split_consistent(out, ids_per_row, strip):
        return None
    # trailing ids without text (EOS and the like) are shown as ids
    return [p + [f"⟨{t}⟩" for t in ids[len(p) :]] for p, ids in zip(out, ids_per_row)]


def token_texts(
    texts: Sequence[str | None],
    ids_per_row: Sequence[Sequence[int]],
    decode_token: Callable[[int], str] | None = None,
) -> tuple[list[list[str]], str]:
    """Text of every token of every completion, and how it was obtained: ``tokenizer``/``characters``/``words``/``ids``."""
    ids_rows = [list(r) for r in ids_per_row]
    if decode_token is not None:
        cache: dict[int, str] = {}
        for t in {t for r in ids_rows for t in r}:
            cache[t] = decode_token(t)
        return [[cache[t] for t in r] for r in ids_rows], "tokenizer"
    if all(isinstance(t, str) for t in texts):
        rows_text = [str(t) for t in texts]
        chars = _split_rows(rows_text, ids_rows, list)
        if chars is not None:
            return chars, "characters"
        words = _split_rows(rows_text, ids_rows, lambda s: re.findall(r"\s*\S+|\s+$", s), strip=True)
        if words is not None:
            return words, "words"
    return [[f"⟨{t}⟩" for t in r] for r in ids_rows], "ids"


def find_tokenizer(run_dir: Path) -> Path | None:
    """The newest directory under ``run_dir`` (up to 3 levels deep) holding a saved Hugging Face tokenizer."""
    found = [
        p.parent
        for pat in (
            "tokenizer_config.json",
            "*/tokenizer_config.json",
            "*/*/tokenizer_config.json",
            "*/*/*/tokenizer_config.json",
        )
        for p in run_dir.glob(pat)
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _load_tokenizer(path: Path) -> Callable[[int], str]:
    try:
        from lgrpo.models import load_tokenizer

        tok = load_tokenizer(str(path), local_files_only=True)
    except Exception as e:  # any failure to load: the caller falls back to splitting the text
        raise RuntimeError(f"could not load a tokenizer from {path}: {type(e).__name__}: {e}") from None
    return lambda t: tok.decode([t], skip_special_tokens=False, clean_up_tokenization_spaces=False)


# ----------------------------------------------------------------------------------------------------------------
# page data


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 6)


def build_page_data(
    ids: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    tokens: list[list[str]],
    *,
    title: str,
    subtitle: str = "",
    prompt: str | None = None,
    completions_text: Sequence[str | None] | None = None,
    text_mode: str = "",
    lambda_power: float = 1.0,
) -> dict[str, Any]:
    """Everything the page draws, as JSON-able data: the tree's nodes and every completion's token strip.

    ``ids``/``mask`` ``[B, T]`` and ``rewards`` ``[B]`` are one group; ``tokens[i][t]`` is token ``t``'s text.
    """
    B = ids.shape[0]
    group = torch.zeros(B, dtype=torch.long)
    tree = ProcessTree(ids, mask, rewards)
    sizes = process_set_sizes(ids, mask, group)
    w_grpo = lambda_weights(ids, mask, group, power=0.0)
    w_lambda = lambda_weights(ids, mask, group, power=lambda_power)
    stats = tree_stats(ids, mask, group)

    nodes = tree.nodes()
    node_id = {id(n): f"n{k}" for k, n in enumerate(nodes)}
    parent: dict[int, str | None] = {}
    for n in [tree.root, *nodes]:
        for c in n.children:
            parent[id(c)] = node_id.get(id(n))  # None for the root's children
    owner: dict[tuple[int, int], str] = {}  # (row, position) -> node id
    for n in nodes:
        for r in n.members:
            for t in range(n.start, n.end):
                owner[(r, t)] = node_id[id(n)]

    def span_text(n: Any) -> str:
        return "".join(tokens[n.members[0]][n.start : n.end])

    node_data = [
        {
            "id": node_id[id(n)],
            "parent": parent[id(n)],
            "depth": n.depth,
            "start": n.start,
            "end": n.end,
            "size": n.size,
            "R": _num(n.step_reward),
            "A": _num(n.advantage),
            "members": n.members,
            "leaf": n.is_leaf,
            "text": span_text(n),
        }
        for n in nodes
    ]
    r = tree.rewards
    finite = r[~torch.isnan(r)]
    comps = []
    for i in range(B):
        n = tree.lengths[i]
        comps.append(
            {
                "index": i,
                "reward": _num(float(r[i])),
                "advantage": _num(float(tree.advantages[i])),
                "length": n,
                "path_depth": int(stats.path_depth[i]),
                "intermediate_proportion": _num(float(stats.intermediate_proportion[i])),
                "text": completions_text[i] if completions_text is not None else None,
                "tokens": [
                    {
                        "x": tokens[i][t],
                        "id": int(ids[i, t]),
                        "size": int(sizes[i, t]),
                        "w0": _num(float(w_grpo[i, t])),
                        "w1": _num(float(w_lambda[i, t])),
                        "node": owner[(i, t)],
                    }
                    for t in range(n)
                ],
            }
        )
    return {
        "title": title,
        "subtitle": subtitle,
        "prompt": prompt,
        "text_mode": text_mode,
        "lambda_power": lambda_power,
        "k": B,
        "reward_mean": _num(float(finite.mean())) if finite.numel() else None,
        "reward_std": _num(float(finite.std())) if finite.numel() > 1 else None,
        "flat": bool(stats.flat.all()) if B else True,
        "nodes": node_data,
        "completions": comps,
    }


def example_page_data(lambda_power: float = 1.0) -> dict[str, Any]:
    """METHOD.md §7's worked example (the paper's Figure 1), one letter per token."""
    from lgrpo.examples import paper_example

    ex = paper_example()
    rows = [[ex.decode([int(t)]) for t in row[: int(m.sum())]] for row, m in zip(ex.ids, ex.mask)]
    return build_page_data(
        ex.ids,
        ex.mask,
        ex.rewards,
        rows,
        title="Process tree of the paper's worked example",
        subtitle="METHOD.md §7 (Figure 1 of Sullivan & Koller): six completions, one letter per token. "
        "JKL leads to the best completion JKLM yet has A < 0: GRPO pushes it down |λ| = 3 times, λ-GRPO once.",
        completions_text=list(ex.completions),
        text_mode="characters",
        lambda_power=lambda_power,
    )


def _prompt_text(prompt: Any) -> str | None:
    """A logged prompt as text; a conversational prompt (a list of messages) as ``role: content`` lines."""
    if prompt is None or isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(m, dict) and "content" in m for m in prompt):
        return "\n".join(f"{m.get('role', '?')}: {m['content']}" for m in prompt)
    return str(prompt)


def run_page_data(
    run_dir: Path, step: int, group: str, tokenizer: str | None, lambda_power: float
) -> dict[str, Any]:
    log = find_rollouts(run_dir)
    records = load_group(log, step, group)
    batch = to_batch(records)
    decode = None
    tok_path = None
    if tokenizer != "none":
        tok_path = Path(tokenizer) if tokenizer else find_tokenizer(log.parent)
        if tokenizer and not tok_path.exists():
            raise SystemExit(
                f"--tokenizer: {tok_path} does not exist (give a saved tokenizer directory, or `none`)"
            )
        if tok_path is not None:
            try:
                decode = _load_tokenizer(tok_path)
            except RuntimeError as e:
                if tokenizer:
                    raise SystemExit(f"--tokenizer: {e}") from None
                print(f"warning: {e}; splitting the completion text instead", file=sys.stderr)
    texts = [rec.get("completion") if isinstance(rec.get("completion"), str) else None for rec in records]
    tokens, mode = token_texts(texts, [rec["completion_ids"] for rec in records], decode)
    if mode == "tokenizer":
        mode = f"tokenizer ({tok_path})"
    prompt = _prompt_text(records[0].get("prompt"))
    return build_page_data(
        batch.ids,
        batch.mask,
        batch.rewards,
        tokens,
        title=f"Process tree · step {step} · group {group}",
        subtitle=str(log.parent),
        prompt=prompt,
        completions_text=texts,
        text_mode=mode,
        lambda_power=lambda_power,
    )


# ----------------------------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        nargs="?",
        metavar="RUN_DIR",
        help="a run directory with rollouts.jsonl (or the file itself)",
    )
    parser.add_argument("--step", type=int, help="training step of the group")
    parser.add_argument("--group", help="group id within the step (as logged)")
    parser.add_argument(
        "--example", action="store_true", help="draw METHOD.md §7's example instead of a run's group"
    )
    parser.add_argument(
        "--out",
        help="HTML file to write (default: inspect-step<S>-group<G>.html beside rollouts.jsonl, "
        "or process_tree_example.html for --example)",
    )
    parser.add_argument(
        "--tokenizer",
        help="saved tokenizer directory used to show each token's text; `none` to "
        "split the completion text instead (default: a tokenizer found under RUN_DIR, if any)",
    )
    parser.add_argument(
        "--lambda-power",
        type=float,
        default=1.0,
        help="α of the λ-GRPO weights 1/|λ|^α drawn under each completion (default 1)",
    )
    parser.add_argument(
        "--screenshot", metavar="PNG", help="also render the page with headless Chromium to PNG"
    )


def run(args: argparse.Namespace) -> int:
    if not args.lambda_power >= 0:
        raise SystemExit(f"--lambda-power: expected a non-negative number, got {args.lambda_power}")
    if args.example:
        if args.run_dir or args.step is not None or args.group is not None:
            raise SystemExit("--example draws a built-in group: give no RUN_DIR, --step or --group with it")
        data = example_page_data(args.lambda_power)
        out = Path(args.out or "process_tree_example.html")
    else:
        missing = [
            n
            for n, v in (("RUN_DIR", args.run_dir), ("--step", args.step), ("--group", args.group))
            if v is None
        ]
        if missing:
            raise SystemExit(f"inspect: missing {', '.join(missing)} (or use --example)")
        try:
            data = run_page_data(Path(args.run_dir), args.step, args.group, args.tokenizer, args.lambda_power)
        except ValueError as e:
            raise SystemExit(f"inspect: {e}") from None
        run_path = Path(args.run_dir)
        base = run_path.parent if run_path.is_file() else run_path  # RUN_DIR may name the log itself
        out = Path(args.out or base / f"inspect-step{args.step}-group{args.group}.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_page(data), encoding="utf-8")
    print(f"{len(data['nodes'])} process steps, {data['k']} completions → {out}")
    if args.screenshot:
        from lgrpo.analysis.browser import BrowserUnavailable, screenshot

        try:
            # wide enough for the whole tree: about 320 px per level of depth
            depth = max((n["depth"] for n in data["nodes"]), default=1)
            screenshot(out, Path(args.screenshot), width=min(4000, max(1400, 300 + 320 * depth)))
        except BrowserUnavailable as e:
            raise SystemExit(f"--screenshot: {e}") from None
        print(f"screenshot → {args.screenshot}")
    return 0
