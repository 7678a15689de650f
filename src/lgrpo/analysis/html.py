"""The process-tree page: one self-contained HTML file (inline CSS and JS, no network assets).

:func:`render_page` embeds the data of :func:`lgrpo.analysis.inspect.build_page_data` as JSON; the inline script lays
the tree out left to right (leaves on their own rows, each parent centred on its children, so boxes never overlap)
and draws it as HTML boxes over SVG edges. Every process-step box carries ``data-node-id``; once drawn, ``<body>``
carries ``data-rendered-nodes`` with the number of boxes, which the browser test reads.
"""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["render_page"]

_CSS = r"""
:root { --fg:#1d232b; --muted:#5b6673; --line:#d5dbe2; --pos:#2166ac; --neg:#b2182b; --w0:#3a4350; --w1:#e08214;
        --track:#e3e7ec; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: #f6f7f9; }
header { padding: 18px 28px 10px; background: #fff; border-bottom: 1px solid var(--line); }
h1 { font-size: 21px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 0 0 8px; }
.sub { color: var(--muted); font-size: 13px; }
.facts { margin-top: 8px; display: flex; flex-wrap: wrap; gap: 6px 16px; font-size: 13px; }
.facts b { font-variant-numeric: tabular-nums; }
section { margin: 16px 28px; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
.legend { display: grid; grid-template-columns: minmax(320px, 1fr) 300px; gap: 8px 28px; font-size: 13px; }
.legend dl { margin: 0; display: grid; grid-template-columns: auto 1fr; gap: 3px 10px; }
.legend dt { font-weight: 700; white-space: nowrap; }
.legend dd { margin: 0; color: #333; }
.scale { height: 14px; border-radius: 3px; border: 1px solid var(--line);
         background: linear-gradient(to right, #e9a3a9, #fff 50%, #9ab9dc); }
.scale-labels { display: flex; justify-content: space-between; font-size: 12px; color: var(--muted);
                font-variant-numeric: tabular-nums; }
.wkey { display: flex; align-items: center; gap: 8px; margin-top: 6px; font-size: 12px; color: var(--muted); }
.wkey .b { display: inline-block; flex: none; width: 26px; height: 7px; border-radius: 2px; }
.prompt { white-space: pre-wrap; font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; color: #333;
          max-height: 7.2em; overflow: auto; background: #f3f5f7; padding: 6px 8px; border-radius: 4px; }
#tree-wrap { overflow: auto; }
#tree { position: relative; }
#tree svg { position: absolute; left: 0; top: 0; }
.node, .root { position: absolute; border: 1px solid #8d99a6; border-radius: 7px; padding: 5px 8px;
               overflow: hidden; cursor: pointer; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.root { background: #eceff3; border-style: dashed; cursor: default; }
.node:hover, .node.hl { outline: 2.5px solid #111; outline-offset: 1px; }
.node.sel { outline: 3px solid #f1a340; outline-offset: 1px; }
.meta { display: flex; gap: 9px; font-size: 12px; font-variant-numeric: tabular-nums; white-space: nowrap; }
.meta .lam { font-weight: 700; }
.txt { margin-top: 3px; font: 12.5px/1.35 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; white-space: pre-wrap;
       overflow-wrap: anywhere; display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 3;
       overflow: hidden; }
.foot { position: absolute; bottom: 4px; left: 8px; right: 8px; font-size: 11px; color: #39424d;
        white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#detail { font-size: 13px; min-height: 2.6em; }
#detail pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f3f5f7; padding: 6px 8px; border-radius: 4px;
              max-height: 16em; overflow: auto; margin: 6px 0 0; }
.comp { display: grid; grid-template-columns: 250px 1fr; gap: 14px; padding: 8px 0; border-top: 1px solid #eef0f3; }
.comp:first-of-type { border-top: none; }
.comp.hl { background: #fff8e6; }
.clabel { font-size: 12.5px; font-variant-numeric: tabular-nums; }
.clabel b { font-size: 14px; }
.clabel small { color: var(--muted); display: block; }
.toks { display: flex; flex-wrap: wrap; gap: 2px 1px; align-items: flex-start; }
.tok { display: inline-flex; flex-direction: column; min-width: 16px; cursor: default; }
.tok.first { margin-left: 6px; }
.tok.first:first-child { margin-left: 0; }
.tok .tx { font: 14px/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; padding: 0 2px; text-align: center;
           white-space: pre; border-radius: 2px; }
.tok .tx.ws { color: #a0a8b2; }
.tok .b { height: 7px; margin-top: 1px; background: var(--track); }
.tok.hl .tx { outline: 2px solid #111; }
.sums { font-size: 11.5px; color: var(--muted); margin-top: 3px; }
.note { color: var(--muted); font-size: 12.5px; margin: 2px 0 8px; }
"""

_JS = r"""
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const $ = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
                                  if (text !== undefined) e.textContent = text; return e; };
  const fmt = (x, d) => x === null || x === undefined ? "–" : (x < 0 ? "−" : "") + Math.abs(x).toFixed(d === undefined ? 3 : d);
  const sgn = (x, d) => x === null ? "–" : (x > 0 ? "+" : "") + fmt(x, d);
  const show = (s) => s.replace(/\n/g, "↵").replace(/\t/g, "→");

  // header facts
  const facts = document.getElementById("facts");
  const add = (k, v) => { const s = $("span"); s.append(k + " "); s.append($("b", "", v)); facts.append(s); };
  add("completions k =", String(D.k));
  add("mean r =", fmt(D.reward_mean));
  add("std r =", fmt(D.reward_std));
  add("process steps:", String(D.nodes.length));
  add("tree:", D.flat ? "flat (outcome reward only)" : "not flat");
  add("token text:", D.text_mode || "–");

  // diverging colour scale for A
  const amax = Math.max(1e-9, ...D.nodes.map(n => Math.abs(n.A || 0)));
  if (amax > 1e-6) {
    document.getElementById("amin").textContent = "A = " + fmt(-amax, 2);
    document.getElementById("amax").textContent = "A = +" + fmt(amax, 2);
  } else {
    document.getElementById("azero").textContent = "every A = 0 (equal rewards: no learning signal)";
  }
  const mix = (c, t) => "rgb(" + c.map(v => Math.round(255 + (v - 255) * t)).join(",") + ")";
  const colour = (a) => a === null ? "#e4e7eb" : mix(a >= 0 ? [33, 102, 172] : [178, 24, 43], 0.6 * Math.min(1, Math.abs(a) / amax));

  // layout: leaves on consecutive rows (depth-first order), a parent centred on its first and last child
  // box height: room for up to three lines of text (about 32 monospace characters a line)
  const lines = Math.min(3, Math.max(1, ...D.nodes.map(n => Math.ceil(show(n.text).length / 32))));
  const deep = Math.max(1, ...D.nodes.map(n => n.depth)) > 5;  // narrower columns for deep trees
  const BW = deep ? 220 : 260, BH = 46 + 17 * lines, RW = 150, GX = deep ? 44 : 60, GY = 14;
  const byId = {}, kids = {}, roots = [];
  D.nodes.forEach(n => { byId[n.id] = n; kids[n.id] = []; });
  D.nodes.forEach(n => (n.parent === null ? roots : kids[n.parent]).push(n));
  let slot = 0;
  const place = (n) => {
    const ch = kids[n.id];
    n.y = ch.length ? (ch.map(place), (ch[0].y + ch[ch.length - 1].y) / 2) : (slot++) * (BH + GY);
    n.x = RW + GX + (n.depth - 1) * (BW + GX);
    return n;
  };
  roots.forEach(place);
  const maxDepth = Math.max(1, ...D.nodes.map(n => n.depth));
  const W = RW + GX + maxDepth * (BW + GX), H = Math.max(1, slot) * (BH + GY) - GY;
  const tree = document.getElementById("tree");
  tree.style.width = W + "px"; tree.style.height = H + "px";
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  tree.append(svg);
  const rootY = roots.length ? (roots[0].y + roots[roots.length - 1].y) / 2 : 0;
  const edge = (x1, y1, x2, y2, size) => {
    const p = document.createElementNS(NS, "path"), mx = (x1 + x2) / 2;
    p.setAttribute("d", `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`);
    p.setAttribute("fill", "none"); p.setAttribute("stroke", "#8d99a6");
    p.setAttribute("stroke-width", String(1 + 1.6 * Math.sqrt(size)));
    svg.append(p);
  };
  D.nodes.forEach(n => {
    const p = n.parent === null ? null : byId[n.parent];
    edge(p ? p.x + BW : RW, (p ? p.y : rootY) + BH / 2, n.x, n.y + BH / 2, n.size);
  });

  const root = $("div", "root");
  root.style.cssText = `left:0;top:${rootY}px;width:${RW}px;height:${BH}px`;
  root.append($("div", "meta", "root · |λ| = " + D.k));
  root.append($("div", "txt", D.prompt ? show(D.prompt) : "(prompt)"));
  root.title = D.prompt || "";
  tree.append(root);

  const yname = (i) => "y" + (i + 1);
  D.nodes.forEach(n => {
    const e = $("div", "node");
    e.dataset.nodeId = n.id;
    e.style.cssText = `left:${n.x}px;top:${n.y}px;width:${BW}px;height:${BH}px;background:${colour(n.A)}`;
    const m = $("div", "meta");
    m.append($("span", "lam", "|λ| = " + n.size), $("span", "", "R = " + fmt(n.R)), $("span", "", "A = " + sgn(n.A)));
    e.append(m, $("div", "txt", show(n.text)));
    const who = n.members.map(yname).join(" ");
    const span = `tokens ${n.start}–${n.end - 1}`;
    e.append($("div", "foot", n.leaf ? `leaf · ${who} · r = ${fmt(D.completions[n.members[0]].reward, 2)} · ${span}`
                                     : `${who} · ${span}`));
    e.title = `${n.text}\n\n|λ| = ${n.size}  R = ${fmt(n.R)}  A = ${sgn(n.A)}\nmembers: ${who}\n${span}`;
    tree.append(e);
  });

  // token strips: one chip per token, and under it a bar per weight (GRPO, λ-GRPO) filled in proportion to it
  // over a grey track (weight 1), so a small weight is a short fill rather than a faint one
  const bar = (w, colour) => { const b = $("span", "b"), p = 100 * Math.min(1, Math.max(0, w || 0));
    b.style.background = `linear-gradient(to right, ${colour} ${p}%, var(--track) ${p}%)`; return b; };
  const strips = document.getElementById("strips");
  D.completions.forEach(c => {
    const row = $("div", "comp"); row.dataset.comp = c.index;
    const lab = $("div", "clabel");
    lab.append($("b", "", yname(c.index)), " r = " + fmt(c.reward, 2) + " · a = " + sgn(c.advantage, 3));
    lab.append($("small", "", `${c.length} tokens · path depth ${c.path_depth} · shared ${Math.round(100 * (c.intermediate_proportion || 0))}%`));
    const s0 = c.tokens.reduce((s, t) => s + (t.w0 || 0), 0), s1 = c.tokens.reduce((s, t) => s + (t.w1 || 0), 0);
    lab.append($("div", "sums", `Σ weight: GRPO ${s0.toFixed(2)} · λ-GRPO ${s1.toFixed(2)}`));
    if (c.text) lab.title = c.text;
    const toks = $("div", "toks");
    let prev = null;
    c.tokens.forEach((t, k) => {
      const e = $("span", "tok" + (t.node !== prev ? " first" : "")); prev = t.node;
      e.dataset.node = t.node;
      const ws = /^\s+$/.test(t.x);
      const tx = $("span", "tx" + (ws ? " ws" : ""), ws ? t.x.replace(/ /g, "·").replace(/\n/g, "↵").replace(/\t/g, "→") : show(t.x));
      tx.style.background = colour(byId[t.node].A);
      e.append(tx, bar(t.w0, "var(--w0)"), bar(t.w1, "var(--w1)"));
      e.title = `${JSON.stringify(t.x)} (id ${t.id}) · position ${k}\n|λ| = ${t.size} · step ${t.node}\n` +
                `weight: GRPO ${fmt(t.w0, 3)} · λ-GRPO ${fmt(t.w1, 3)}`;
      toks.append(e);
    });
    row.append(lab, toks);
    strips.append(row);
  });

  // interaction: hover a step to light up its tokens and completions; click to pin its full text below the tree
  const light = (id, on) => {
    document.querySelectorAll(`.tok[data-node="${id}"]`).forEach(e => e.classList.toggle("hl", on));
    const n = byId[id]; if (!n) return;
    n.members.forEach(i => document.querySelector(`.comp[data-comp="${i}"]`).classList.toggle("hl", on));
    const box = document.querySelector(`.node[data-node-id="${id}"]`); if (box) box.classList.toggle("hl", on);
  };
  document.querySelectorAll(".node").forEach(e => {
    e.addEventListener("mouseenter", () => light(e.dataset.nodeId, true));
    e.addEventListener("mouseleave", () => light(e.dataset.nodeId, false));
    e.addEventListener("click", () => {
      document.querySelectorAll(".node.sel").forEach(x => x.classList.remove("sel"));
      e.classList.add("sel");
      const n = byId[e.dataset.nodeId], d = document.getElementById("detail");
      d.textContent = `step ${n.id}: tokens ${n.start}–${n.end - 1} of ${n.members.map(yname).join(", ")} · ` +
                      `|λ| = ${n.size} · R = ${fmt(n.R)} · A = ${sgn(n.A)}`;
      d.append($("pre", "", n.text));
    });
  });
  document.querySelectorAll(".tok").forEach(e => {
    e.addEventListener("mouseenter", () => light(e.dataset.node, true));
    e.addEventListener("mouseleave", () => light(e.dataset.node, false));
  });
  document.body.dataset.renderedNodes = String(document.querySelectorAll("[data-node-id]").length);
})();
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>
  <h1>{title}</h1>
  <div class="sub">{subtitle}</div>
  <div class="facts" id="facts"></div>
</header>
<section class="legend">
  <dl>
    <dt>box</dt><dd>a process step: a maximal run of tokens shared by exactly the same completions
      (read left to right from the prompt; a leaf is one completion, or identical duplicates)</dd>
    <dt>|λ|</dt><dd>process-set size: how many completions share the step. GRPO trains the step |λ| times,
      λ-GRPO once (each token weighted 1/|λ|<sup>α</sup>, α = {alpha})</dd>
    <dt>R</dt><dd>step reward, the implicit PRM: mean outcome reward r of those completions</dd>
    <dt>A</dt><dd>PRM-aware advantage: (R − mean r) / (std r + 10<sup>−4</sup>), the mean GRPO advantage of those
      completions; the box colour</dd>
  </dl>
  <div>
    <div class="scale"></div>
    <div class="scale-labels"><span id="amin"></span><span id="azero">0</span><span id="amax"></span></div>
    <div class="wkey"><span class="b" style="background:var(--w0)"></span><span>GRPO weight (1 per token)</span></div>
    <div class="wkey"><span class="b" style="background:linear-gradient(to right, var(--w1) 33%, var(--track) 33%)">
      </span><span>λ-GRPO weight 1/|λ|<sup>α</sup>: the filled share of the bar (here 1/3; grey: the rest up
      to 1)</span></div>
  </div>
</section>
{prompt_section}
<section>
  <h2>Process tree</h2>
  <div class="note">Hover a step to light up its tokens below; click it to show its full text. Edge width grows with |λ|.</div>
  <div id="tree-wrap"><div id="tree"></div></div>
  <div id="detail" class="note"></div>
</section>
<section>
  <h2>Completions: token weights</h2>
  <div class="note">Each token: its text, then a bar for its GRPO weight and a bar for its λ-GRPO weight
    (filled in proportion to the weight, over a grey track that stands for weight 1); the text is shaded by the PRM-aware advantage A of its step, as in the tree. A gap marks
    the start of a new process step.</div>
  <div id="strips"></div>
</section>
<script type="application/json" id="data">{data}</script>
<script>{js}</script>
</body>
</html>
"""


def render_page(data: dict[str, Any]) -> str:
    """The HTML page for ``data`` (see :func:`lgrpo.analysis.inspect.build_page_data`)."""
    # "<" only occurs inside JSON strings, where \\u003c is the same character: no "</script>" can end the block
    payload = json.dumps(data, ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")
    prompt = data.get("prompt")
    prompt_section = (
        f'<section><h2>Prompt</h2><div class="prompt">{html.escape(prompt)}</div></section>' if prompt else ""
    )
    alpha = data.get("lambda_power", 1.0)
    return _TEMPLATE.format(
        title=html.escape(data.get("title", "Process tree")),
        subtitle=html.escape(data.get("subtitle", "")),
        alpha=html.escape(f"{alpha:g}"),
        prompt_section=prompt_section,
        css=_CSS,
        data=payload,
        js=_JS,
    )
