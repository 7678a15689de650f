"""One decoding path: `lgrpo train`'s held-out accuracy and `lgrpo eval --model RUN` agree on the same model.

The model is built by hand so that its answers are known without running it: every layer's output projections are
zero (the residual stream carries the token embedding through), embeddings are one-hot and the untied LM head maps
each token to a chosen next token. So greedy decoding is a fixed automaton: after the plain prompt's last character
("\\n") it writes "\\boxed{7}" and EOS; after the chat template's "<|assistant|>" it writes EOS at once. Its accuracy
on held-out sums is therefore the share of sums equal to 7 with the run's plain prompt, and 0 with any other format.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from lgrpo.cli import main
from lgrpo.experiments import train as train_mod
from lgrpo.experiments.config import dump_config, load_config
from lgrpo.tasks import build_task

CFG = [
    "model.hidden_size=128",  # >= the vocabulary, for one-hot embeddings
    "model.num_layers=1",
    "model.num_heads=2",
    "model.intermediate_size=16",
    "data.n_terms=2",
    "data.train_size=20",
    "data.eval_size=40",
    "eval.max_new_tokens=12",
    "eval.batch_size=40",
]


def _automaton(model, tok) -> None:
    vocab, hidden = len(tok), model.config.hidden_size
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("\n", "<|assistant|>", tok.eos_token, tok.pad_token)}
    chain = [ids["\n"], *tok("\\boxed{7}", add_special_tokens=False)["input_ids"], ids[tok.eos_token]]
    nxt = dict(itertools.pairwise(chain))
    nxt[ids["<|assistant|>"]] = ids[tok.eos_token]
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(vocab, hidden))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head = torch.zeros(vocab, hidden)
        for t in range(vocab):
            head[nxt.get(t, ids[tok.pad_token]), t] = 10.0
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(head)


def test_train_and_eval_give_the_same_accuracy(tmp_path):
    cfg = load_config(None, CFG)
    task = build_task(cfg)
    model, tok = train_mod.build_model(cfg, task)
    _automaton(model, tok)
    expected = sum(r["answer"] == "7" for r in task.held_out) / len(task.held_out)
    assert expected > 0  # held-out sums of two digits include some 7s
    assert train_mod.evaluate(model, tok, task, cfg) == pytest.approx(expected)

    run = tmp_path / "run"  # a run folder as `lgrpo train` leaves it: config.yaml and final/
    (run / "final").mkdir(parents=True)
    dump_config(cfg, run / "config.yaml")
    model.save_pretrained(run / "final")
    tok.save_pretrained(run / "final")
    held = tmp_path / "held.jsonl"
    held.write_text(
        "".join(json.dumps({"problem": r["problem"], "answer": r["answer"]}) + "\n" for r in task.held_out)
    )
    common = ["--benchmarks", f"held={held}", "--max-new-tokens", "12", "--batch-size", "40"]
    assert main(["eval", "--model", str(run), *common, "--out", str(tmp_path / "a")]) == 0
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["benchmarks"]["held"]["accuracy"] == pytest.approx(expected)
    assert results["benchmarks"]["held"]["n"] == len(task.held_out)
    preds = [json.loads(x) for x in (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()]
    assert {p["completion"] for p in preds} == {"\\boxed{7}"}

    # the run's own held-out problems by name, scored by the task's own check
    assert (
        main(
            [
                "eval",
                "--model",
                str(run),
                "--benchmarks",
                "held_out",
                *common[2:],
                "--out",
                str(tmp_path / "h"),
            ]
        )
        == 0
    )
    own = json.loads((tmp_path / "h" / "results.json").read_text())["benchmarks"]["held_out"]
    assert own["accuracy"] == pytest.approx(expected) and own["n"] == len(task.held_out)
    with pytest.raises(SystemExit, match="held_out: only for a run folder"):
        main(
            ["eval", "--model", str(run / "final"), "--benchmarks", "held_out", "--out", str(tmp_path / "x")]
        )

    # the same weights outside a run folder get the default format (system prompt through the chat template)
    assert main(["eval", "--model", str(run / "final"), *common, "--out", str(tmp_path / "b")]) == 0
    other = json.loads((tmp_path / "b" / "results.json").read_text())
    assert other["benchmarks"]["held"]["accuracy"] == 0.0 and other["no_answer"] == len(task.held_out)


def test_a_run_folder_without_final_falls_back_to_its_last_checkpoint(tmp_path):
    from lgrpo.evaluation.generate import resolve_run

    cfg = load_config(None, CFG)
    run = tmp_path / "run"
    for step in (2, 10):
        (run / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
        (run / "checkpoints" / f"checkpoint-{step}" / "config.json").write_text("{}")
    (run / "checkpoints" / "checkpoint-12").mkdir()  # incomplete: no model in it
    dump_config(cfg, run / "config.yaml")
    weights, run_cfg = resolve_run(str(run))
    assert weights == str(run / "checkpoints" / "checkpoint-10") and run_cfg == cfg
    assert resolve_run("some/hub-id") == ("some/hub-id", None)
    (run / "checkpoints" / "checkpoint-2" / "config.json").unlink()
    (run / "checkpoints" / "checkpoint-10" / "config.json").unlink()
    with pytest.raises(SystemExit, match="no final/ model and no checkpoint"):
        resolve_run(str(run))
