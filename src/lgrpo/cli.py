"""The ``lgrpo`` command line: one subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` (or ``make_parser(**kwargs)``, when its
flags are derived from a config dataclass) and ``run(args) -> int``; modules are imported only when their command
runs, so ``lgrpo --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from lgrpo import __version__

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "toy": ("lgrpo.experiments.toy", "reproduce the paper's toy tree experiment (Table 1) on the CPU"),
    "train": (
        "lgrpo.experiments.train",
        "train a model with λ-GRPO or GRPO (TRL engine); embedded CPU default",
    ),
    "compare": ("lgrpo.experiments.compare", "run GRPO and λ-GRPO on the same seeds and compare them"),
    "eval": ("lgrpo.evaluation.cli", "evaluate a model (or scored predictions) on math benchmarks"),
    "analyze": ("lgrpo.analysis.analyze", "per-step implicit-PRM statistics of a run's rollout log"),
    "inspect": ("lgrpo.analysis.inspect", "draw one group's process tree as a self-contained HTML page"),
    "report": ("lgrpo.analysis.report", "overlay runs: reward, held-out accuracy and prm/* curves"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="lgrpo",
        description="λ-GRPO and GRPO's implicit process reward model.",
        epilog=f"commands:\n{lines}\n\nRun `lgrpo COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lgrpo {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="the job to run")
    return parser


def build_parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of one subcommand."""
    module_name, help_ = COMMANDS[command]
    module = importlib.import_module(module_name)
    if hasattr(module, "make_parser"):
        parser = module.make_parser(prog=f"lgrpo {command}", description=help_)
    else:
        parser = argparse.ArgumentParser(prog=f"lgrpo {command}", description=help_)
        module.add_arguments(parser)
    parser.set_defaults(_run=module.run)
    return parser


def passive_openmp_wait() -> None:
    """Let OpenMP's idle threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a policy.

    libgomp's default spins a waiting thread for 300,000 rounds before it sleeps; beside another busy process on the
    same cores the spinning threads take turns from the threads doing work, and an ``lgrpo train`` step ran 5-10×
    slower than alone (docs/training.md, "Determinism and threads"; ``benchmarks/threads.py``). OpenMP reads the
    variable once, when torch loads it, so this runs before any subcommand imports torch; a user's own
    ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is left as it is.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passive_openmp_wait()  # before torch is imported
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv or ["--help"])
        return 2
    parser = build_parser(argv[0])
    # intermixed: `key=value` overrides may come after options (`lgrpo train --out D rl.beta=0.04`)
    args = parser.parse_intermixed_args(argv[1:])
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; finished work is kept in the output directory", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
