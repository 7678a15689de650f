"""`lgrpo inspect`: the page's data and structure, token text, and the page in a real (headless) browser."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lgrpo.analysis.browser import dump_dom, find_chromium, screenshot
from lgrpo.analysis.html import render_page
from lgrpo.analysis.inspect import example_page_data, token_texts
from lgrpo.cli import main
from lgrpo.examples import paper_example
from lgrpo.process import ProcessTree

EOS = 0


def page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert m, "page embeds no data block"
    return json.loads(m.group(1))


def assert_self_contained(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I), (
        "page loads a network asset"
    )
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html, re.I)
    assert "<link" not in html.lower() and "@import" not in html


TEXTS = ["12+3=15", "12+3=15", "12+3=16", "12*3=36", "1+2=3", "99", "12+3=1", "2<3 </script>"]


def write_run(tmp_path: Path) -> Path:
    """A run whose step 3 has group 5: eight char-level completions (EOS-terminated) with shared prefixes."""
    run = tmp_path / "run"
    run.mkdir()
    texts = TEXTS
    rewards = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, None, 0.0]
    lines = [
        {
            "step": 2,
            "group": 5,
            "prompt": "p",
            "completion": "x",
            "completion_ids": [120, EOS],
            "reward": 1.0,
            "advantage": 0.0,
        }
    ]
    for t, r in zip(texts, rewards):
        lines.append(
            {
                "step": 3,
                "group": 5,
                "prompt": "What is 12+3?",
                "completion": t,
                "completion_ids": [ord(c) for c in t] + [EOS],
                "reward": r,
                "advantage": 0.0,
            }
        )
    lines.append(
        {
            "step": 3,
            "group": 6,
            "prompt": "q",
            "completion": "a",
            "completion_ids": [97],
            "reward": 0.0,
            "advantage": 0.0,
        }
    )
    (run / "rollouts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


def group_tree(run: Path) -> ProcessTree:
    rows = [json.loads(x) for x in (run / "rollouts.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] == 3 and r["group"] == 5]
    T = max(len(r["completion_ids"]) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r["completion_ids"])] = torch.tensor(r["completion_ids"])
        mask[i, : len(r["completion_ids"])] = True
    return ProcessTree(ids, mask)


def test_example_page_structure(tmp_path):
    out = tmp_path / "ex.html"
    assert main(["inspect", "--example", "--out", str(out)]) == 0
    html = out.read_text()
    assert_self_contained(html)
    data = page_data(html)
    ex = paper_example()
    tree = ProcessTree(ex.ids, ex.mask, ex.rewards, decode=ex.decode)
    assert len(data["nodes"]) == len(tree.nodes()) == 9
    assert len({n["id"] for n in data["nodes"]}) == 9
    # METHOD.md §7: the steps, their |λ| and PRM-aware advantages
    got = {n["text"]: (n["size"], n["A"]) for n in data["nodes"]}
    want = {
        "AB": (2, 0.2213),
        "CD": (1, 0.2213),
        "EFHI": (1, 0.2213),
        "JKL": (3, -0.2213),
        "M": (1, 1.5494),
        "NQ": (2, -1.1067),
        "ST": (1, -1.1067),
        "U": (1, -1.1067),
        "VWYZ": (1, 0.2213),
    }
    assert set(got) == set(want)
    for text, (size, adv) in want.items():
        assert got[text][0] == size and got[text][1] == pytest.approx(adv, abs=1e-3), text
    # strips: JKLNQST has |λ| 3 3 3 2 2 1 1, so λ-GRPO weights 1/3 1/3 1/3 1/2 1/2 1 1 and GRPO weights all 1
    comp = data["completions"][3]
    assert "".join(t["x"] for t in comp["tokens"]) == "JKLNQST"
    assert [t["w1"] for t in comp["tokens"]] == pytest.approx([1 / 3] * 3 + [1 / 2] * 2 + [1, 1], abs=1e-5)
    assert [t["w0"] for t in comp["tokens"]] == [1.0] * 7
    assert comp["path_depth"] == 3


def test_run_page_and_errors(tmp_path):
    run = write_run(tmp_path)
    out = tmp_path / "g.html"
    assert main(["inspect", str(run), "--step", "3", "--group", "5", "--out", str(out)]) == 0
    html = out.read_text()
    assert_self_contained(html)
    data = page_data(html)
    assert data["completions"][7]["text"] == "2<3 </script>"
    # the data block's and the code's closing tags only: the completion's "</script>" cannot end a block
    assert html.count("</script>") == 2
    assert len(data["nodes"]) == len(group_tree(run).nodes())
    assert data["text_mode"] == "characters"
    assert [t["x"] for t in data["completions"][0]["tokens"]] == [*"12+3=15", f"⟨{EOS}⟩"]
    assert data["completions"][6]["reward"] is None
    with pytest.raises(SystemExit, match=r"step 3 has no group '9'; its groups are: 5, 6"):
        main(["inspect", str(run), "--step", "3", "--group", "9", "--out", str(out)])
    with pytest.raises(SystemExit, match=r"has no step 4; steps logged: 2..3"):
        main(["inspect", str(run), "--step", "4", "--group", "5", "--out", str(out)])
    with pytest.raises(SystemExit, match="missing --step"):
        main(["inspect", str(run), "--group", "5"])


def test_run_given_as_the_log_file_writes_beside_it(tmp_path):
    run = write_run(tmp_path)
    assert main(["inspect", str(run / "rollouts.jsonl"), "--step", "3", "--group", "5"]) == 0
    assert (run / "inspect-step3-group5.html").is_file()


def test_token_text_modes():
    ids = [[5, 6, 7], [5, 6, 8, 1]]
    assert token_texts(["abc", "abd"], ids) == ([["a", "b", "c"], ["a", "b", "d", "⟨1⟩"]], "characters")
    assert token_texts(["x y z", "x y w"], ids) == ([["x", " y", " z"], ["x", " y", " w", "⟨1⟩"]], "words")
    # "ab" for ids [5, 6] but "ba" for [5, 6]: no consistent character split, and no word split either
    assert token_texts(["abc", "bad"], ids)[1] == "ids"
    assert token_texts([None, None], ids) == ([["⟨5⟩", "⟨6⟩", "⟨7⟩"], ["⟨5⟩", "⟨6⟩", "⟨8⟩", "⟨1⟩"]], "ids")
    assert token_texts(["", ""], ids, decode_token=lambda t: chr(96 + t))[0][1] == ["e", "f", "h", "a"]


def png_pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture
def chromium() -> str:
    """The headless Chromium binary. Missing, the test is skipped, except in CI (``CI=true``, set by CI services and
    by ``.ci/run``, which installs Chromium), where it fails: the browser test must run there."""
    exe = find_chromium()
    if exe is None:
        why = "headless Chromium not installed (Debian: apt-get install chromium; or set $CHROMIUM)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {why}")
        pytest.skip(why)
    return exe


@pytest.mark.browser
@pytest.mark.parametrize("which", ["example", "run"])
def test_every_node_drawn_in_browser(tmp_path, which, chromium):
    if which == "example":
        html = tmp_path / "page.html"
        html.write_text(render_page(example_page_data()))
        ex = paper_example()
        expected = len(ProcessTree(ex.ids, ex.mask, ex.rewards).nodes())
    else:
        run = write_run(tmp_path)
        html = tmp_path / "page.html"
        assert main(["inspect", str(run), "--step", "3", "--group", "5", "--out", str(html)]) == 0
        expected = len(group_tree(run).nodes())

    dom = dump_dom(html)
    tags = re.findall(r'<div class="node"[^>]*>', dom)
    boxes = [(re.search(r'data-node-id="(n\d+)"', t)[1], re.search(r'style="([^"]*)"', t)[1]) for t in tags]
    assert len(boxes) == expected, f"{len(boxes)} node boxes drawn, the tree has {expected}"
    assert sorted(b[0] for b in boxes) == sorted(f"n{k}" for k in range(expected))
    assert f'data-rendered-nodes="{expected}"' in dom
    # every box has a size and no two boxes overlap
    rects = []
    for _, style in boxes:
        px = {k: float(v) for k, v in re.findall(r"(left|top|width|height):\s*([-\d.]+)px", style)}
        assert px["width"] > 0 and px["height"] > 0
        rects.append((px["left"], px["top"], px["left"] + px["width"], px["top"] + px["height"]))
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], f"boxes overlap: {a} {b}"
    # every token of every completion has its chip
    n_tokens = len(re.findall(r'<span class="tok[ "]', dom))
    assert n_tokens == sum(c["length"] for c in page_data(html.read_text())["completions"])

    png = screenshot(html, tmp_path / "page.png", width=1200, height=900)
    px = png_pixels(png)
    assert px.shape[:2] == (900, 1200)
    assert px.std() > 10, "screenshot is blank"
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 100, "screenshot has almost no distinct colours"


def test_tokenizer_found_under_run_dir(tmp_path):
    """A tokenizer saved in a checkpoint of the run decodes each token; `--tokenizer none` falls back to the text."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0, **{c: i + 1 for i, c in enumerate("abc xyz")}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<eos>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    run = tmp_path / "run"
    PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>").save_pretrained(
        run / "checkpoints" / "checkpoint-4"
    )
    texts = ["ab c", "ab x", "zz"]
    lines = [
        {"step": 1, "group": 0, "prompt": [{"role": "user", "content": "hi"}], "completion": t,
         "completion_ids": [vocab[c] for c in t] + [0], "reward": float(i == 0), "advantage": 0.0}
        for i, t in enumerate(texts)
    ]  # fmt: skip
    (run / "rollouts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))

    out = tmp_path / "p.html"
    assert main(["inspect", str(run), "--step", "1", "--group", "0", "--out", str(out)]) == 0
    data = page_data(out.read_text())
    assert data["text_mode"].startswith("tokenizer") and "checkpoint-4" in data["text_mode"]
    assert [t["x"] for t in data["completions"][0]["tokens"]] == ["a", "b", " ", "c", "<eos>"]
    assert data["prompt"] == "user: hi"
    assert {n["text"] for n in data["nodes"]} == {"ab ", "c<eos>", "x<eos>", "zz<eos>"}

    assert (
        main(["inspect", str(run), "--step", "1", "--group", "0", "--out", str(out), "--tokenizer", "none"])
        == 0
    )
    data = page_data(out.read_text())
    assert data["text_mode"] == "characters"
    assert [t["x"] for t in data["completions"][0]["tokens"]] == ["a", "b", " ", "c", "⟨0⟩"]
    with pytest.raises(SystemExit, match=r"--tokenizer: .*missing does not exist"):
        main(["inspect", str(run), "--step", "1", "--group", "0", "--tokenizer", str(tmp_path / "missing")])


def test_repeated_step_draws_last_block(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()

    def rec(step, text):
        return {
            "step": step,
            "group": 0,
            "completion": text,
            "completion_ids": [ord(c) for c in text],
            "reward": 0.0,
        }

    lines = [rec(1, "ab"), rec(1, "ac"), rec(2, "zz"), rec(1, "xy"), rec(1, "xy"), rec(1, "q")]
    (run / "rollouts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "p.html"
    assert main(["inspect", str(run), "--step", "1", "--group", "0", "--out", str(out)]) == 0
    data = page_data(out.read_text())
    assert [c["text"] for c in data["completions"]] == ["xy", "xy", "q"]
    assert "appears in 2 separate blocks" in capsys.readouterr().err


@pytest.mark.browser
def test_screenshot_holds_the_whole_page_and_weight_bars_are_filled_by_weight(tmp_path, chromium):
    """`inspect --screenshot` of a group of eight completions: the picture is taller than the old fixed 1100 px cut
    and ends in the page's bottom margin (the last strip, y8, is in it); each token's λ-GRPO bar is filled over
    100/|λ| % of its width (|λ| counted here from the completions), at full colour rather than faded."""
    run = write_run(tmp_path)
    html, png = tmp_path / "page.html", tmp_path / "page.png"
    assert (
        main(
            ["inspect", str(run), "--step", "3", "--group", "5", "--out", str(html), "--screenshot", str(png)]
        )
        == 0
    )
    px = png_pixels(png)
    assert px.shape[0] > 1100
    background = np.array([0xF6, 0xF7, 0xF9])
    assert (px[-8:] == background).all(), "the picture ends inside the page, not in its bottom margin"
    assert not (px[-40:-8] == background).all(), "no content just above the bottom margin"

    dom = dump_dom(html)
    strips = dom[dom.index('id="strips"') :]  # the token bars, not the legend's sample bar
    fills = [float(x) for x in re.findall(r"var\(--w1\) ([\d.]+)%", strips)]
    ids = [[ord(c) for c in t] + [EOS] for t in TEXTS]
    want = []
    for row in ids:  # |λ(i,t)|: completions sharing the prefix row[: t + 1]
        want += [100 / sum(len(o) > t and o[: t + 1] == row[: t + 1] for o in ids) for t in range(len(row))]
    assert fills == pytest.approx(want, rel=1e-3)
    assert min(fills) < 20  # shared by 8: 12.5 % of the bar, filled at full colour
    assert "opacity" not in " ".join(re.findall(r'<span class="b"[^>]*>', strips))
