"""Time `lgrpo.process.process_set_sizes` against a plain per-group trie, and check they agree exactly.

The trie is the reference code's algorithm: for each group, descend position by position, splitting the rows by
their next token (merging identical prefixes); every row in a split at position t has |λ(i,t)| = split size.

    python benchmarks/process_sets.py [--device cuda] [--repeats 5]

Prints one line per setting: ms for the trie, ms for lgrpo (median of repeats), and the speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lgrpo.process import process_set_sizes


def trie_sizes(ids: torch.Tensor, mask: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Reference: recursive descent over each group (iterative, to survive 4k-token depths)."""
    seqs = [row[:n] for row, n in zip(ids.tolist(), mask.sum(1).tolist())]
    B, T = ids.shape
    out = [[0] * T for _ in range(B)]
    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(group.tolist()):
        by_group.setdefault(g, []).append(i)
    for rows in by_group.values():
        stack = [(rows, 0)]
        while stack:
            members, pos = stack.pop()
            split: dict[int, list[int]] = {}
            for r in members:
                if len(seqs[r]) > pos:
                    split.setdefault(seqs[r][pos], []).append(r)
            for sub in split.values():
                n = len(sub)
                for r in sub:
                    out[r][pos] = n
                stack.append((sub, pos + 1))
    return torch.tensor(out, dtype=torch.long)


def make_batch(groups: int, k: int, T: int, sharing: str, seed: int = 0, vocab: int = 32000):
    """Right-padded completions. 'little': random tokens; 'much': each completion copies a random earlier one of
    its group up to a random branch point, so groups form deep trees (as in RL late in training)."""
    g = torch.Generator().manual_seed(seed)
    B = groups * k
    ids = torch.randint(0, vocab, (B, T), generator=g)
    if sharing == "much":
        ids = ids.view(groups, k, T)
        for j in range(1, k):
            parent = torch.randint(0, j, (groups,), generator=g)
            branch = torch.randint(T // 4, T, (groups,), generator=g)
            copy = torch.arange(T)[None] < branch[:, None]
            ids[:, j] = torch.where(copy, ids[torch.arange(groups), parent], ids[:, j])
        ids = ids.reshape(B, T)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None] < lengths[:, None]
    group = torch.arange(groups).repeat_interleave(k)
    perm = torch.randperm(B, generator=g)  # rows of a group need not be adjacent
    return ids[perm], mask[perm], group[perm]


def timed(fn, repeats: int, sync) -> float:
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trie-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the trie uses one core)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()}")
    settings = [
        (32, 16, 4096, "little"),
        (32, 16, 4096, "much"),
        (32, 64, 2048, "little"),
        (32, 64, 2048, "much"),
    ]
    for groups, k, T, sharing in settings:
        ids, mask, group = make_batch(groups, k, T, sharing)
        ref = trie_sizes(ids, mask, group)
        t_trie = timed(
            lambda ids=ids, mask=mask, group=group: trie_sizes(ids, mask, group), args.trie_repeats, sync
        )
        d_ids, d_mask, d_group = ids.to(device), mask.to(device), group.to(device)
        ours = process_set_sizes(d_ids, d_mask, d_group)  # warm-up (and CUDA kernels' first launch)
        exact = torch.equal(ours.cpu(), ref)
        t_ours = timed(lambda a=d_ids, b=d_mask, c=d_group: process_set_sizes(a, b, c), args.repeats, sync)
        mean_size = ref[mask].float().mean().item()
        ns_per_token = t_ours * 1e6 / int(mask.sum())
        print(
            f"{groups:>3} groups x {k:>2} x {T:>4} tokens, {sharing:<6} sharing (mean |λ| {mean_size:5.2f}): "
            f"trie {t_trie:8.1f} ms | lgrpo {t_ours:7.1f} ms ({ns_per_token:5.1f} ns/token) | "
            f"speed-up {t_trie / t_ours:5.1f}x | exact {exact}"
        )
        if not exact:
            raise SystemExit("MISMATCH between lgrpo and the reference trie")


if __name__ == "__main__":
    main()
