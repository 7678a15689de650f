"""``lgrpo eval``: accuracy of a model (or of saved generations) on the paper's math benchmarks or any file.

    lgrpo eval --model PATH_OR_ID --benchmarks aime24,math500,amc23,minerva,olympiadbench --data-dir data/ --out DIR
    lgrpo eval --model RUN_DIR --benchmarks gsm8k=test.jsonl --problem-field question --answer-format gsm8k
    lgrpo eval --predictions generations.jsonl --out DIR

A run folder of ``lgrpo train`` (it holds ``config.yaml``) is evaluated with the run's own prompt format and answer
check, on its ``final/`` model (or its last checkpoint when there is none).

Writes ``DIR/predictions.jsonl`` as items are scored, then ``DIR/results.json`` and ``DIR/results.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tqdm import tqdm

from lgrpo.evaluation.registry import BENCHMARKS, load_benchmark, resolve
from lgrpo.evaluation.scoring import Scorer, read_predictions, results_markdown

HELD_OUT = "held_out"  # --benchmarks name of a run folder's own held-out problems


DEFAULT_MAX_NEW_TOKENS = 1200


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--model",
        help="local model directory, Hugging Face id, or an `lgrpo train` run folder (its final model, prompt format "
        "and answer check) to generate with",
    )
    src.add_argument(
        "--predictions",
        metavar="FILE",
        help="score existing generations instead (JSONL: id, answer, completion, optional benchmark); no model",
    )
    parser.add_argument(
        "--benchmarks",
        default=",".join(BENCHMARKS),
        help=f"comma-separated, from: {', '.join(BENCHMARKS)} (default: all), NAME=path/to/file.jsonl for any "
        f"file (.jsonl, .json, .parquet or a datasets folder), or {HELD_OUT} for a run folder's own held-out problems "
        "(scored by its task's check, as in training)",
    )
    parser.add_argument(
        "--problem-field", default="problem", help="NAME=FILE benchmarks: the problem field (problem)"
    )
    parser.add_argument(
        "--answer-field", default="answer", help="NAME=FILE benchmarks: the answer field (answer)"
    )
    parser.add_argument(
        "--answer-format",
        choices=("plain", "gsm8k"),
        default="plain",
        help="NAME=FILE benchmarks: the answer field as it is (plain) or GSM8K's '... #### 42' (gsm8k)",
    )
    parser.add_argument(
        "--data-dir",
        help="folder of local <name>.jsonl files (problem, answer) used before the Hugging Face Hub",
    )
    parser.add_argument("--limit", type=int, help="only the first N problems of each benchmark")
    parser.add_argument(
        "--backend", choices=("hf", "vllm"), default="hf", help="generation backend (default hf)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        help="generation budget per problem (default: a run folder's eval.max_new_tokens, else 1200)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per generate call, hf backend (8)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds allowed to verify one answer (5)")
    parser.add_argument("--out", default="eval-results", help="output folder (default eval-results)")


ERROR = "lgrpo eval: error: "  # argparse's form: every error of the command reads the same


def _check(args: argparse.Namespace) -> None:
    for name in ("limit", "max_new_tokens", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.timeout <= 0:
        raise SystemExit(f"--timeout must be positive, got {args.timeout}")
    if args.model is not None:  # a missing local path fails here, before any data or model is loaded
        from lgrpo.models import LoadError, check_model_source

        try:
            check_model_source(args.model, "--model")
        except LoadError as exc:
            raise SystemExit(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """``lgrpo eval``; every error (bad input, missing data or model) is a ``SystemExit`` reading
    ``lgrpo eval: error: ...``, as argparse's own errors do."""
    try:
        return _run(args)
    except SystemExit as exc:
        if isinstance(exc.code, str) and not exc.code.startswith(ERROR):
            raise SystemExit(ERROR + exc.code) from None
        raise


def _run(args: argparse.Namespace) -> int:
    _check(args)
    start = time.time()
    if args.predictions:
        try:
            items = read_predictions(args.predictions)
        except (OSError, ValueError) as exc:
            raise SystemExit(str(exc)) from None
        if args.limit:  # the first N items of each benchmark, as with --model
            seen: dict[str, int] = {}
            kept = []
            for item in items:
                if seen.get(item["benchmark"], 0) < args.limit:
                    seen[item["benchmark"]] = seen.get(item["benchmark"], 0) + 1
                    kept.append(item)
            items = kept
        scorer = Scorer(args.out, timeout=args.timeout)
        for item in tqdm(items, desc="scoring", unit="item"):
            scorer.add(item["id"], item["benchmark"], item["answer"], item["completion"])
        model = None
    else:
        from lgrpo.evaluation.generate import make_generator, resolve_run

        weights, run_cfg = resolve_run(args.model)
        names = [n.strip() for n in args.benchmarks.split(",") if n.strip()]
        held_out = HELD_OUT in names
        if held_out and run_cfg is None:
            raise SystemExit(
                f"--benchmarks {HELD_OUT}: only for a run folder (--model RUN_DIR with config.yaml)"
            )
        task = None
        try:
            others = [n for n in names if n != HELD_OUT]
            fields = (args.problem_field, args.answer_field, args.answer_format)
            benches = resolve(others, *fields) if others or not held_out else []
            # every benchmark is loaded before the model, so a missing file fails in seconds, not after hours
            data = {b.name: load_benchmark(b, args.data_dir, args.limit) for b in benches}
            if held_out:  # the run's own held-out problems, scored by its task's own check
                from lgrpo.tasks import build_task

                task = build_task(run_cfg)
                rows = task.held_out[: args.limit]
                data[HELD_OUT] = [{**r, "id": f"{HELD_OUT}/{i}", "row": r} for i, r in enumerate(rows)]
        except (OSError, ValueError) as exc:  # the data: before any model is loaded
            raise SystemExit(str(exc)) from None
        prompt_format, check = None, None
        if run_cfg is not None:  # the run's own prompt format and answer check (its held-out evaluation's)
            from lgrpo.tasks.task import PromptFormat, answer_check

            run_cfg.rl.verify_timeout = args.timeout
            prompt_format, check = PromptFormat.from_config(run_cfg), answer_check(run_cfg)
            if args.max_new_tokens is None:
                args.max_new_tokens = run_cfg.eval.max_new_tokens
            print(
                f"evaluating {weights} with the run's prompt format, answer check and generation budget "
                f"({args.max_new_tokens} new tokens)",
                file=sys.stderr,
            )
        if args.max_new_tokens is None:
            args.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
        generator = make_generator(args.backend, weights, args.max_new_tokens, args.batch_size, prompt_format)
        scorer = Scorer(args.out, timeout=args.timeout, check=check)
        total = sum(len(rows) for rows in data.values())
        with tqdm(total=total, desc="evaluating", unit="problem") as bar:
            for name, rows in data.items():
                done = 0
                for completions in generator.generate([r["problem"] for r in rows]):
                    for row, completion in zip(rows[done : done + len(completions)], completions):
                        verdict = task.check(completion, row["row"]) if task and name == HELD_OUT else None
                        scorer.add(row["id"], name, row["answer"], completion, verdict)
                    done += len(completions)
                    bar.update(len(completions))
                scorer.write_results(args.model)  # partial results survive an interruption
        model = args.model
    scorer.close()
    results = scorer.write_results(model)
    print(results_markdown(results))
    print(
        f"wrote {os.path.join(args.out, 'results.json')}, results.md and predictions.jsonl "
        f"in {time.time() - start:.1f}s"
    )
    return 0
