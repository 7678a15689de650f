"""The run folder: one place that reads and writes what ``lgrpo train`` (each run of ``lgrpo compare``) leaves on disk.

Layout (docs/training.md)::

    config.yaml       the resolved config (a resumed run continues with it)
    metrics.jsonl     one line per logged step; `eval/accuracy` where held-out accuracy was measured (step 0 = before RL)
    rollouts.jsonl    one line per completion (rl.rollout_log; docs/rollout_log.md)
    summary.json      written last: the run is finished
    trainer_config.json   in a ``LambdaGRPOTrainer`` ``output_dir``: its arguments (``lgrpo report`` reads the arm)
    sft/              the warm start; sft/sft_done.json is written last
    init/             the initial policy, when TRL needs a path to load the β > 0 reference model from
    final/            the trained model (LoRA adapter or full model) and tokenizer; final/merged/ with model.save_merged
    checkpoints/checkpoint-<step>/   transformers checkpoints; complete once trainer_state.json is in

Writes go through :class:`RunFolder`, whose writers act on the main process only (``main=False`` on the other ranks
of a multi-process run, which wait at a barrier instead). JSON files are replaced atomically; logs are appended line by
line, and read up to their last complete line (:mod:`lgrpo.jsonl`), so a killed or live run can be read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from lgrpo.jsonl import iter_jsonl, read_jsonl

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
ROLLOUTS = "rollouts.jsonl"
SFT_DIR = "sft"
SFT_DONE = "sft_done.json"  # written last: marks `sft/` complete
CKPT_DIR = "checkpoints"
INIT_DIR = "init"
FINAL_DIR = "final"  # the trained model: LoRA adapter or full model, plus tokenizer
MERGED_DIR = "merged"  # inside FINAL_DIR: the LoRA adapter merged into its base (model.save_merged)
TRAINER_CONFIG = "trainer_config.json"  # LambdaGRPOTrainer writes it into output_dir beside metrics.jsonl
TRAINER_STATE = "trainer_state.json"  # transformers writes it last into a checkpoint: marks it complete
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")

__all__ = [
    "CKPT_DIR",
    "CONFIG",
    "FINAL_DIR",
    "INIT_DIR",
    "MERGED_DIR",
    "METRICS",
    "ROLLOUTS",
    "SFT_DIR",
    "SFT_DONE",
    "SUMMARY",
    "TRAINER_CONFIG",
    "RunFolder",
    "checkpoint_step",
    "config_diff",
    "is_main_process",
    "read_metrics",
    "write_json",
]


# ----------------------------------------------------------------------------------------------------------------
# files


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a temporary file, then ``os.replace``): never half-written."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The lines of a ``metrics.jsonl`` (``[]`` when it does not exist); a cut last line is dropped with a warning,
    any other bad line is a ``ValueError`` naming ``file:line``."""
    return read_jsonl(path, ("step",)) if Path(path).exists() else []


def _write_lines(path: Path, lines: list[dict[str, Any]]) -> None:
    path = path.resolve()  # through a symlink (the engine's view of the run folder's logs): keep the link
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    os.replace(tmp, path)


def config_diff(saved: dict[str, Any], given: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (saved value, given value)}`` where two (nested) config dicts differ, by key; ``{}`` if none."""
    a, b = _flat(saved), _flat(given)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def is_main_process() -> bool:
    """Whether this is the main process (global rank 0) of a ``torchrun`` / ``accelerate launch`` run, from the
    ``RANK`` they set; True in a single process. (Inside ``lgrpo train``, accelerate's state decides.)"""
    return os.environ.get("RANK", "0") == "0"


# ----------------------------------------------------------------------------------------------------------------
# checkpoints


def checkpoint_step(path: str | os.PathLike[str]) -> int:
    """The optimizer step of a ``checkpoint-<step>`` directory; ``ValueError`` for another name."""
    m = _CKPT_RE.match(Path(path).name)
    if m is None:
        raise ValueError(f"{path}: not a checkpoint directory (expected a name like checkpoint-50)")
    return int(m[1])


def is_complete_checkpoint(path: str | os.PathLike[str]) -> bool:
    return _CKPT_RE.match(Path(path).name) is not None and (Path(path) / TRAINER_STATE).is_file()


# ----------------------------------------------------------------------------------------------------------------
# the folder


class RunFolder:
    """The run folder at ``path``. Writers do nothing unless ``main`` (the main process of a multi-process run)."""

    def __init__(self, path: str | os.PathLike[str], main: bool = True) -> None:
        self.path = Path(path)
        self.main = main

    # paths
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def rollouts(self) -> Path:
        return self.path / ROLLOUTS

    @property
    def checkpoints(self) -> Path:
        return self.path / CKPT_DIR

    @property
    def sft(self) -> Path:
        return self.path / SFT_DIR

    @property
    def final(self) -> Path:
        return self.path / FINAL_DIR

    @property
    def init(self) -> Path:
        return self.path / INIT_DIR

    def holds_a_run(self) -> bool:
        """Whether a run finished or saved a checkpoint here (starting over would mix two runs)."""
        return self.summary.exists() or self.checkpoints.exists()

    # config
    def saved_config(self) -> dict[str, Any] | None:
        """The saved config as a dict; None when there is none or it no longer loads."""
        from lgrpo.experiments.config import load_config, to_dict

        if not self.config.exists():
            return None
        try:
            return to_dict(load_config(self.config))
        except ValueError:
            return None

    def write_config(self, cfg: Any) -> None:
        from lgrpo.experiments.config import dump_config

        if self.main:
            self.path.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, self.config)

    # metrics and summary
    def read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.metrics)

    def append_metrics(self, line: dict[str, Any]) -> None:
        """Append one line to ``metrics.jsonl`` (one ``write`` of the whole line, so a kill cuts at most this one)."""
        if self.main:
            with self.metrics.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")

    def write_metrics(self, lines: list[dict[str, Any]]) -> None:
        if self.main:
            _write_lines(self.metrics, lines)

    def read_summary(self) -> dict[str, Any] | None:
        return json.loads(self.summary.read_text()) if self.summary.exists() else None

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.main:
            write_json(self.summary, summary)

    # checkpoints and resume
    def complete_checkpoints(self) -> list[Path]:
        """``checkpoints/checkpoint-<step>`` directories holding ``trainer_state.json``, by step."""
        found = [p for p in self.checkpoints.glob("checkpoint-*") if is_complete_checkpoint(p)]
        return sorted(found, key=checkpoint_step)

    def last_checkpoint(self) -> Path | None:
        ckpts = self.complete_checkpoints()
        return ckpts[-1] if ckpts else None

    def resume_point(self, resume: bool, resume_from: str | os.PathLike[str] | None = None) -> Path | None:
        """The checkpoint a run continues from: ``resume_from`` (checked), else with ``resume`` the last complete one.

        ``resume`` on a non-empty folder with no complete checkpoint says so on stderr and returns None (the run starts fresh).
        ``ValueError`` naming ``--resume-from`` when that path is not a complete checkpoint.
        """
        if resume_from is not None:
            path = Path(resume_from)
            if not path.is_dir():
                raise ValueError(f"--resume-from: {path} is not a directory")
            try:
                checkpoint_step(path)
            except ValueError as e:
                raise ValueError(f"--resume-from: {e}") from None
            if not is_complete_checkpoint(path):
                raise ValueError(
                    f"--resume-from: {path} is not a complete checkpoint (no {TRAINER_STATE}: it was cut short)"
                )
            return path
        if not resume:
            return None
        last = self.last_checkpoint()
        if (
            last is None and self.main and self.path.is_dir() and any(self.path.iterdir())
        ):  # a new folder: no news
            print(
                f"--resume: {self.checkpoints} holds no complete checkpoint; starting fresh",
                file=sys.stderr,
            )
        return last

    def trim_to(self, step: int, rollout_log: bool) -> None:
        """Make the folder what it was at optimizer step ``step``: drop metrics and rollout lines past it (what a
        killed run logged after its checkpoint, or a later future that ``--resume-from`` abandons) and checkpoints
        past it (the resumed run would overwrite them with other weights)."""
        if not self.main:
            return
        self.write_metrics([line for line in self.read_metrics() if line["step"] <= step])
        if rollout_log and self.rollouts.exists():
            kept = (obj for _, obj in iter_jsonl(self.rollouts, ("step",)))
            _write_lines(self.rollouts, [obj for obj in kept if obj["step"] <= step])
        later = [p for p in self.complete_checkpoints() if checkpoint_step(p) > step]
        later += [p for p in self.checkpoints.glob("checkpoint-*") if not is_complete_checkpoint(p)]
        for p in later:
            print(f"removing {p}: past the resumed step {step}", file=sys.stderr)
            shutil.rmtree(p)

    def link_engine_logs(self, rollout_log: bool) -> None:
        """The engine appends to ``<output_dir>/metrics.jsonl`` and (``rollout_log``) ``<output_dir>/rollouts.jsonl``
        (``output_dir`` = ``checkpoints/``); the run folder keeps the files at its top, and the engine writes
        through symlinks."""
        if not self.main:
            return
        for name, wanted in ((METRICS, True), (ROLLOUTS, rollout_log)):
            if not wanted:
                continue
            link = self.checkpoints / name
            link.parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).touch()
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(Path("..") / name)
