"""The A/B page (two synchronised videos, a choice per dimension, the verdict after the answer) and the
login page. Every text is HTML-escaped here; the script writes text with textContent only, and images
only from the server's data:image/jpeg URIs."""
from __future__ import annotations

import json
from html import escape
from urllib.parse import quote

from vrthinker.cliutil import NAMES

from dqa.serve.questions import Question

STYLE = """
body{font:15px system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em;color:#222}
h1{font-size:1.2em} .prompt{font-size:1.1em;background:#f4f4f4;padding:.6em;border-radius:6px;white-space:pre-wrap}
.pair{display:flex;gap:1em} .pair figure{flex:1;margin:0} video{width:100%;background:#000}
figcaption{text-align:center;font-weight:bold} .controls{margin:.6em 0;display:flex;gap:.6em;align-items:center}
#seek{flex:1} table{border-collapse:collapse} td,th{padding:.3em .7em;text-align:center}
tr.current{outline:2px solid #36c} kbd{border:1px solid #999;border-radius:3px;padding:0 .3em;font-size:.9em}
#verdict{margin-top:1em;padding:.6em;border:1px solid #ccc;border-radius:6px} .hidden{display:none}
.thumbs{display:flex;flex-wrap:wrap;gap:.5em} .thumbs figure{margin:0;border:1px solid #ddd;padding:3px}
.thumbs img{margin:0 1px} .thumbs figcaption{font-weight:normal;font-size:.85em} .note{color:#a40}
.reasoning{white-space:pre-wrap;font-size:.9em;max-height:15em;overflow:auto;background:#fafafa}
"""

SCRIPT = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const va = document.getElementById('va'), vb = document.getElementById('vb');
const other = v => v === va ? vb : va;
for (const v of [va, vb]) {
  v.addEventListener('play', () => { const o = other(v); if (o.paused) o.play().catch(() => {}); });
  v.addEventListener('pause', () => { const o = other(v); if (!o.paused) o.pause(); });
  v.addEventListener('seeked', () => {
    const o = other(v); if (Math.abs(o.currentTime - v.currentTime) > 0.05) o.currentTime = v.currentTime; });
}
setInterval(() => {  // looping clips drift apart: pull b back to a
  if (!va.paused && !vb.paused && Math.abs(va.currentTime - vb.currentTime) > 0.25) vb.currentTime = va.currentTime;
}, 500);
const seek = document.getElementById('seek'), toggle = document.getElementById('toggle');
va.addEventListener('timeupdate', () => { if (va.duration) seek.value = 1000 * va.currentTime / va.duration; });
seek.addEventListener('input', () => { if (va.duration) va.currentTime = seek.value / 1000 * va.duration; });
const playPause = () => { if (va.paused) { va.play().catch(() => {}); } else { va.pause(); } };
toggle.addEventListener('click', playPause);
const step = s => { va.currentTime = Math.max(0, Math.min((va.duration || 0), va.currentTime + s)); };

const dims = D.dimensions, choice = {};
let current = 0, done = D.answered;
const rows = dims.map(d => document.getElementById('row-' + d));
function show() { rows.forEach((r, i) => r.classList.toggle('current', i === current && !done)); }
function pick(d, c) {
  choice[d] = c;
  document.getElementById(`c-${d}-${c}`).checked = true;
  current = Math.min(dims.indexOf(d) + 1, dims.length - 1); show();
}
for (const d of dims) for (const c of ['a', 'tie', 'b'])
  document.getElementById(`c-${d}-${c}`).addEventListener('change', () => pick(d, c));
const status = document.getElementById('status');
async function submit() {
  if (done) return;
  const missing = dims.filter(d => !choice[d]);
  if (missing.length) { status.textContent = 'Choose for ' + missing.join(', ') + ' first.'; return; }
  const r = await fetch(D.answer_url, {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': D.csrf},
    body: JSON.stringify({answers: choice, user: (document.getElementById('user') || {}).value})});
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { status.textContent = (body.error && body.error.message) || ('error ' + r.status); return; }
  done = true; show();
  document.querySelectorAll('input[type=radio]').forEach(e => { e.disabled = true; });
  status.textContent = 'Answer saved (' + body.answers.map(a => a.dimension + ': ' + a.status).join(', ') + ').';
  showVerdict(body);
}
document.getElementById('submit').addEventListener('click', submit);
const LABEL = {1: 'left better', 2: 'right better', 0: 'tie'};
function add(parent, tag, text) {
  const e = document.createElement(tag); e.textContent = text; parent.appendChild(e); return e;
}
async function showVerdict(body) {
  const box = document.getElementById('verdict');
  box.classList.remove('hidden');
  while (!body.verdict && body.state !== 'failed') {
    box.textContent = 'The judge is still working on this pair (' + (body.state || 'queued') + ')...';
    await new Promise(res => setTimeout(res, 1000));
    const r = await fetch(D.verdict_url, {credentials: 'same-origin'});
    body = await r.json();
  }
  box.textContent = '';
  if (!body.verdict) { add(box, 'p', 'The judge could not compare this pair: ' + (body.error || '')); return; }
  const v = body.verdict;
  add(box, 'h2', "The judge's verdict");
  const t = add(box, 'table', ''); t.id = 'verdict-labels';
  for (const d of ['TA', 'VQ', 'MQ', 'OA']) {
    const tr = add(t, 'tr', ''); add(tr, 'th', d);
    const lab = v.labels[d]; add(tr, 'td', lab === null || lab === undefined ? 'missing' : LABEL[lab]);
  }
  add(box, 'p', 'model: ' + v.model_id + ', backend: ' + v.backend +
                (v.reason ? ', ' + v.reason + ': ' + v.detail : ''));
  const f = add(box, 'div', ''); f.id = 'verdict-frames';
  add(f, 'h3', 'Frames the judge looked at');
  const frames = (v.extra && v.extra.frames) || [];
  const scores = (v.extra && v.extra.scores) || {};
  const sides = ['left', 'right'];
  frames.forEach((g, i) => add(f, 'p', sides[i] + ': ' + g.total_frames + ' frames at ' + g.fps + ' fps'));
  ['video1', 'video2'].forEach((k, i) => { if (scores[k]) add(f, 'p', sides[i] + ': ' + scores[k].frames +
                                           ' frames sampled evenly for the measures'); });
  const asked = v.frames_requested || [];
  add(f, 'p', asked.length ? 'frames requested: ' + asked.map(x => '[' + x.join(', ') + ']').join('; ')
                           : 'frames requested: none (judged on the initial frames)');
  showFrames(f, body.frames);
  if (v.reasoning) add(box, 'pre', v.reasoning).className = 'reasoning';
}
function showFrames(f, fr) {  // thumbnails: data URIs from the server, left video then right per cell
  if (!fr) return;
  for (const n of fr.notes || []) add(f, 'p', n).className = 'note';
  for (const g of fr.groups || []) {
    add(f, 'h4', g.title);
    const row = add(f, 'div', ''); row.className = 'thumbs';
    for (const c of g.cells || []) {
      const cell = add(row, 'figure', '');
      for (const im of c.images || []) {
        if (typeof im.src !== 'string' || !im.src.startsWith('data:image/jpeg;base64,')) continue;
        const i = document.createElement('img');
        i.src = im.src; i.width = fr.side; i.height = fr.side; i.alt = im.side + ' video, frame ' + im.frame;
        cell.appendChild(i);
      }
      add(cell, 'figcaption', c.caption);
    }
  }
}
document.addEventListener('keydown', e => {
  if (e.target.tagName === 'INPUT' && e.target.type === 'text') return;
  const keys = {'1': 'a', '2': 'tie', '3': 'b'};
  if (e.key === ' ') { e.preventDefault(); playPause(); }
  else if (e.key === 'ArrowLeft') { e.preventDefault(); step(-1); }
  else if (e.key === 'ArrowRight') { e.preventDefault(); step(1); }
  else if (e.key === 'ArrowUp') { e.preventDefault(); current = Math.max(0, current - 1); show(); }
  else if (e.key === 'ArrowDown') { e.preventDefault(); current = Math.min(dims.length - 1, current + 1); show(); }
  else if (keys[e.key] && !done) { e.preventDefault(); pick(dims[current], keys[e.key]); }
  else if (e.key === 'Enter') { e.preventDefault(); submit(); }
  else if (e.key === 'n' && D.next_url) { window.location = D.next_url; }
});
show();
if (D.answered) { document.querySelectorAll('input[type=radio]').forEach(e => { e.disabled = true; });
  fetch(D.verdict_url, {credentials: 'same-origin'}).then(r => r.json()).then(showVerdict); }
"""


def _json_for_script(data: dict) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' can end the element or start markup."""
    return (json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def media_url(path: str) -> str:
    return "/media?path=" + quote(path, safe="")


def _doc(title: str, body: str, nonce: str, script: str = "") -> str:
    js = f'<script nonce="{escape(nonce)}">{script}</script>' if script else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            '<link rel="icon" href="/favicon.ico" type="image/svg+xml">'
            f'<style nonce="{escape(nonce)}">{STYLE}</style></head><body>{body}{js}</body></html>')


def ab_page(q: Question, csrf: str, nonce: str, next_url: str | None, signed_in: str | None = None) -> str:
    """`signed_in`: the user the session says (answers are recorded as them, no name box); None: a free name."""
    given = {x.dimension: x.chosen for x in q.answers}
    rows = []
    for d in q.dimensions:
        cells = "".join(
            f'<td><input type="radio" name="{d}" id="c-{d}-{c}" value="{c}"'
            f'{" checked" if given.get(d) == c else ""} aria-label="{escape(f"{d}: {label}")}"></td>'
            for c, label in (("a", "left"), ("tie", "tie"), ("b", "right")))
        rows.append(f'<tr id="row-{d}"><th>{escape(d)} <small>{escape(NAMES[d])}</small></th>{cells}</tr>')
    data = {"question": q.id, "dimensions": list(q.dimensions), "csrf": csrf, "answered": q.answered,
            "answer_url": f"/ab/{q.id}/answer", "verdict_url": f"/ab/{q.id}/verdict", "next_url": next_url}
    nxt = f'<a id="next" href="{escape(next_url)}">next question</a> (<kbd>n</kbd>)' if next_url else \
        "no other open question"
    who = (f'signed in as <strong id="signed-in">{escape(signed_in)}</strong>' if signed_in is not None else
           '<label>your name (optional) <input id="user" type="text" maxlength="200"></label>')
    body = f"""<h1>A/B question #{q.id}</h1>
<div class="prompt" id="prompt">{escape(q.prompt)}</div>
<div class="pair">
 <figure><video id="va" src="{escape(media_url(q.a))}" autoplay muted loop playsinline preload="auto"></video>
  <figcaption>left</figcaption></figure>
 <figure><video id="vb" src="{escape(media_url(q.b))}" autoplay muted loop playsinline preload="auto"></video>
  <figcaption>right</figcaption></figure>
</div>
<div class="controls"><button id="toggle" type="button">play / pause</button>
 <input id="seek" type="range" min="0" max="1000" value="0" aria-label="seek both videos"></div>
<table id="choices"><tr><th></th><th>left</th><th>tie</th><th>right</th></tr>{''.join(rows)}</table>
<p>{who}
 <button id="submit" type="button">save answer</button> <span id="status" role="status"></span></p>
<p id="keys">Keys: <kbd>1</kbd> left, <kbd>2</kbd> tie, <kbd>3</kbd> right (for the highlighted row, then the next),
 <kbd>&uarr;</kbd>/<kbd>&darr;</kbd> change row, <kbd>Enter</kbd> save, <kbd>Space</kbd> play/pause,
 <kbd>&larr;</kbd>/<kbd>&rarr;</kbd> seek 1 s, <kbd>n</kbd> next question.</p>
<p>{nxt}</p>
<div id="verdict" class="hidden" aria-live="polite"></div>
<script type="application/json" id="data">{_json_for_script(data)}</script>"""
    return _doc(f"A/B question #{q.id}", body, nonce, SCRIPT)


def empty_page(nonce: str) -> str:
    return _doc("A/B questions", "<h1>No open A/B question</h1><p>Post one to <code>/v1/ab</code>.</p>", nonce)


def login_page(nonce: str, next_url: str, failed: bool) -> str:
    note = '<p role="alert">That token is not right.</p>' if failed else ""
    body = f"""<h1>dqa serve: log in</h1>{note}
<form method="post" action="/login"><input type="hidden" name="next" value="{escape(next_url)}">
<label>token <input type="password" name="token" autofocus></label> <button type="submit">log in</button></form>"""
    return _doc("log in", body, nonce)


# the tab icon: two frames side by side with a tick, as a tiny SVG (served at /favicon.ico, no file to ship)
FAVICON_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
               '<rect width="32" height="32" rx="6" fill="#1f5fa8"/>'
               '<rect x="5" y="9" width="10" height="14" rx="2" fill="#fff"/>'
               '<rect x="17" y="9" width="10" height="14" rx="2" fill="#fff" opacity=".55"/>'
               '<path d="M7 16l2.5 3L14 12" stroke="#1f5fa8" stroke-width="2.2" fill="none"/></svg>')

def api_docs_page(spec: dict, nonce: str) -> str:
    """GET /docs: the API as plain HTML, read from the app's own OpenAPI document (what /openapi.json serves).
    FastAPI's Swagger UI and ReDoc load their scripts from a CDN (blank offline, and remote code in a page that
    holds a session); this page loads nothing."""
    info = spec.get("info") or {}
    parts = [f"<h1>{escape(str(info.get('title', 'API')))} {escape(str(info.get('version', '')))}</h1>",
             f"<p>{escape(str(info.get('description', '')))}</p>",
             '<p>The same as JSON: <a href="/openapi.json">/openapi.json</a>. Calls under <code>/v1</code> take '
             "<code>Authorization: Bearer TOKEN</code> when the server has a token.</p>"]
    for path, ops in (spec.get("paths") or {}).items():
        for method, op in ops.items():
            if not isinstance(op, dict):
                continue
            params = ", ".join(f"{p.get('name')} ({p.get('in')}{', required' if p.get('required') else ''})"
                               for p in op.get("parameters") or [])
            schema = ((op.get("requestBody") or {}).get("content") or {}).get("application/json", {}).get("schema")
            ref = str((schema or {}).get("$ref", "")).rsplit("/", 1)[-1]
            rows = [f"<h2><code>{escape(method.upper())} {escape(path)}</code></h2>",
                    f"<p>{escape(str(op.get('summary') or ''))}</p>"]
            if op.get("description"):
                rows.append(f"<p>{escape(str(op['description']))}</p>")
            if params:
                rows.append(f"<p>parameters: {escape(params)}</p>")
            if ref:
                rows.append(f"<p>JSON body: <code>{escape(ref)}</code> (its fields: /openapi.json, "
                            "components.schemas)</p>")
            parts.append("".join(rows))
    return _doc(f"{info.get('title', 'API')}: API", "".join(parts), nonce)


LINKS = (("/ab", "A/B page", "answer which of two videos is better"),
         ("/docs", "API docs", "the JSON endpoints under /v1 (OpenAPI)"),
         ("/health", "health", "the worker's state and the queue's depth (JSON)"))


def landing_page(nonce: str) -> str:
    """GET /: where to go from here. Only fixed text: nothing a token protects (no store, no question)."""
    items = "".join(f'<li><a href="{escape(href)}">{escape(name)}</a>: {escape(what)}</li>'
                    for href, name, what in LINKS)
    return _doc("dqa serve", f"<h1>dqa serve</h1><p>Judgments, scores and A/B questions over HTTP.</p>"
                             f'<ul id="links">{items}</ul>', nonce)
