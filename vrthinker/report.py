"""A self-contained HTML report of stored judgments, to triage with: a summary (pairs, failures by reason,
position consistency, the file's size), a sortable table of pairs, the rankings, then per pair the frames
the judge looked at (a VLM's requested frames, or evenly spaced frames of what a weight-free judge
measured), its labels and final reasoning. Inline CSS and one inline script (allowed by its hash), images
as base64 JPEG data URIs, no URL at all. Written as it is made: memory stays bounded however many pairs."""
from __future__ import annotations

import base64
import hashlib
import html
import io
import os
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from PIL import Image

from vrthinker.media import frame_grid as frames
from vrthinker.media.decode import decode_frames
from vrthinker.batch import JudgedItem, judged_items
from vrthinker.errors import JudgeError
from vrthinker.store import Judgment, RankEntry, Store
from vrthinker.verdict import DIMENSIONS, LABEL_NAMES

NAMES = {"TA": "Text Alignment", "VQ": "Visual Quality", "MQ": "Motion Quality", "OA": "Overall"}
ORDER = {d: k for k, d in enumerate(DIMENSIONS)}  # TA, VQ, MQ, OA: the order of every table

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px}h2{font-size:17px;margin:0 0 6px}h3{font-size:15px;margin:14px 0 4px}
section.item,section.ranking,section.summary{background:#fff;border:1px solid #ddd;border-radius:6px;padding:14px;
margin:0 0 18px}
.prompt{font-style:italic}.muted{color:#777}.bad{color:#a40}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
table.sortable th{cursor:pointer;background:#f0f0f0;user-select:none}
table.sortable th[data-dir=asc]::after{content:" \\25B2"}table.sortable th[data-dir=desc]::after{content:" \\25BC"}
td.l1{background:#e6f0fb}td.l2{background:#fbeee6}td.l0{background:#f2f2f2}td.lm{color:#a40}
.frames{display:flex;flex-wrap:wrap;gap:10px}.frame{border:1px solid #eee;padding:4px;text-align:center}
.frame img{display:inline-block;margin:0 2px;vertical-align:middle}
.reasoning{white-space:pre-wrap;background:#f4f4f4;padding:8px}
.note{color:#a40;font-size:12px}
.probs{font-size:12px;white-space:nowrap}.bar{display:inline-block;width:60px;height:8px;background:#eee;
margin:0 4px 0 2px;vertical-align:middle}.bar span{display:block;height:8px;background:#4a7}
"""

# sorts a table.sortable by the clicked column (numbers by data-v, else text); the page's only script
SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (t) {
  t.querySelectorAll("th").forEach(function (th, i) {
    th.addEventListener("click", function () {
      var asc = th.dataset.dir !== "asc", body = t.tBodies[0], rows = Array.from(body.rows);
      t.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = asc ? "asc" : "desc";
      function key(r) { var c = r.cells[i], v = c.dataset.v; return v !== undefined ? parseFloat(v) : c.textContent; }
      rows.sort(function (a, b) { var x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""
SORT_HASH = base64.b64encode(hashlib.sha256(SORT_JS.encode()).digest()).decode()
SIZE_SLOT = 12  # characters kept for the report's size, filled in once the file is written


@dataclass(frozen=True)
class ReportStats:
    """What went into a report: pairs shown (of `total` stored), bad rows among them, thumbnails, ranking
    tables, and the file's size in bytes."""

    items: int
    bad: int
    images: int
    rankings: int
    total: int = 0
    size: int = 0


@dataclass(frozen=True)
class Summary:
    """What the report's first lines say about every stored pair (not only the ones shown)."""

    pairs: int
    bad: Counter
    incomplete: Counter
    by_design: Counter
    both_orders: int
    consistency: float | None
    disagree: int
    disagree_by_dim: Counter


def summarize(items: Iterable[JudgedItem]) -> Summary:
    """Counts over the stored pairs: bad rows and incomplete verdicts by reason, position consistency."""
    n, both, disagree = 0, 0, 0
    bad, incomplete, by_design, per_dim = Counter(), Counter(), Counter(), Counter()
    total_c = 0.0
    for j in items:
        n += 1
        if j.verdict is None:
            bad[j.item.reason or "unknown"] += 1
            continue
        if j.verdict.reason:
            (by_design if j.verdict.as_designed else incomplete)[j.verdict.reason] += 1
        if j.reverse is not None and j.consistency is not None:
            both += 1
            total_c += float(j.consistency)
            disagree += bool(j.inconsistent)
            per_dim.update(j.inconsistent)
    return Summary(n, bad, incomplete, by_design, both, total_c / both if both else None, disagree, per_dim)


class Thumbs:
    """Thumbnails as data URIs, `side` x `side` or with `aspect` the video's aspect ratio kept (the longer
    side `side`); each video decoded once while its grid stays in a bounded cache, the last thumbnails made
    kept in a bounded one."""

    KEEP = 256  # thumbnails (grid frames) or videos (measured frames) remembered for the next pair

    def __init__(self, side: int, max_mb: float = 256, aspect: bool = False):
        self.side, self.aspect = side, aspect
        self.cache = frames.GridCache(max_mb)
        self.uris: OrderedDict[tuple, tuple[str, int, int]] = OrderedDict()
        self.sets: OrderedDict[tuple, dict[int, tuple[str, int, int]]] = OrderedDict()
        self.errors: dict[str, str] = {}
        self.count = 0

    def _remember(self, cache: OrderedDict, key, value):
        cache[key] = value
        if len(cache) > self.KEEP:
            cache.popitem(last=False)
        return value

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of a thumbnail of a width x height frame: aspect kept (or square), longer side `side`."""
        if not self.aspect:
            return self.side, self.side
        scale = self.side / max(1, width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def grid(self, path: str, grid_size: int):
        if path in self.errors:
            return None
        try:
            # raw_budget_mb=0: frames are shrunk to thumbnails while decoding, so a video costs ~10 MB
            return self.cache.load(path, grid_size=grid_size, side=self.side, min_frames=1, raw_budget_mb=0)
        except JudgeError as e:
            self.errors[path] = str(e)
            return None

    def uri(self, grid, index: int) -> str:
        """The data URI of grid index `index`'s thumbnail."""
        return self.thumb(grid, index)[0]

    def thumb(self, grid, index: int) -> tuple[str, int, int]:
        """(data URI, width, height) of grid index `index`: the grid's square frame back to the video's aspect."""
        key = (grid.path, grid.grid_size, index)
        self.count += 1
        if key in self.uris:
            self.uris.move_to_end(key)
            return self.uris[key]
        w, h = self.size(grid.width, grid.height)
        image = grid.image(index)
        if image.size != (w, h):
            image = image.resize((w, h), Image.BILINEAR)
        return self._remember(self.uris, key, (_jpeg_uri(image), w, h))

    def measured(self, path: str, indices: Sequence[int] | None, n: int) -> dict[int, str]:
        """`measured_thumbs`' data URIs by frame index."""
        return {i: t[0] for i, t in self.measured_thumbs(path, indices, n).items()}

    def measured_thumbs(self, path: str, indices: Sequence[int] | None, n: int) -> dict[int, tuple[str, int, int]]:
        """(data URI, width, height) of real frames of `path` by frame index: `indices` where the verdict
        recorded them, else `n` evenly spaced over the video; {} (and the reason in `errors`) when it cannot
        be decoded."""
        if path in self.errors:
            return {}
        key = (path, tuple(indices or ()), n)
        if key in self.sets:
            self.sets.move_to_end(key)
            self.count += len(self.sets[key])
            return self.sets[key]
        size = self.size

        def pick(total: int) -> list[int]:
            if indices:
                return sorted({int(i) for i in indices if 0 <= int(i) < total})
            return sorted({min(int((k + 0.5) * total / n), total - 1) for k in range(n)})

        def shrink(bgr, _):
            import cv2

            w, h = size(bgr.shape[1], bgr.shape[0])
            return cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)

        try:
            decoded = decode_frames(path, pick, shrink)
        except JudgeError as e:
            self.errors[path] = str(e)
            return {}
        out = {i: (_jpeg_uri(Image.fromarray(rgb)), rgb.shape[1], rgb.shape[0]) for i, rgb in decoded.frames.items()}
        self.count += len(out)
        return self._remember(self.sets, key, out)


def _jpeg_uri(image) -> str:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, w: int, h: int, alt: str) -> str:
    return f"<img class='thumb' src='{uri}' width='{w}' height='{h}' alt='{_e(alt)}'>"


def grid_size(protocol: str) -> int:
    """The grid size of the protocol the judgment was made under (the frames a grid index names)."""
    from vrthinker.protocol import Profile

    try:
        return Profile.load(protocol.split("/")[0]).grid_size
    except (JudgeError, OSError, ValueError, KeyError):  # unknown or weight-free protocol: the card grid
        return frames.GRID_SIZE


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _label(v) -> str:
    return "missing" if v is None else f"{v} ({LABEL_NAMES[v]})"


def _bars(dist) -> str:
    """A small bar per label ("1", "2", "0") as long as its probability, the figure beside it; "-" without."""
    if not dist:
        return "-"
    return "<br>".join(f"{_e(k)}<span class='bar' title='{_e(LABEL_NAMES[int(k)])}'><span style='width:"
                       f"{100 * min(1.0, max(0.0, float(dist[k]))):.1f}%'></span></span>{float(dist[k]):.2f}"
                       for k in ("1", "2", "0"))


def _labels_table(j: JudgedItem) -> str:
    head = "<tr><th>dimension</th><th>label</th>"
    orders = [(n, o) for n, o in (("video1 first", j.forward), ("video2 first", j.reverse)) if o is not None]
    head += "".join(f"<th>{_e(n)} (as answered)</th>" for n, _ in orders)
    probs = j.verdict.probabilities or {}
    head += ("<th>probabilities (both orders averaged)</th>" if len(orders) == 2 else "<th>probabilities</th>"
             ) if probs else ""
    head += "</tr>"
    rows = []
    for d in DIMENSIONS:
        cells = "".join(f"<td>{_e(_label(o.labels.get(d)))}</td>" for _, o in orders)
        if probs:
            cells += f"<td class='probs'>{_bars(probs.get(d))}</td>"
        flag = " <span class='note'>orders disagree</span>" if d in j.inconsistent else ""
        rows.append(f"<tr><td>{d} {_e(NAMES[d])}</td><td class='label' data-dim='{d}'>"
                    f"{_e(_label(j.verdict.labels.get(d)))}{flag}</td>{cells}</tr>")
    return f"<table class='labels'>{head}{''.join(rows)}</table>"


MEASURED_FRAMES = 4  # thumbnails per video for a judgment that recorded no frames of its own


def recorded_indices(verdict: dict, k: int) -> list[int] | None:
    """Real frame indices of video k+1 that a weight-free verdict says it measured, if it says so."""
    extra = verdict.get("extra") or {}
    for found in ((extra.get("frame_indices") or {}).get(f"video{k + 1}"),
                  ((extra.get("scores") or {}).get(f"video{k + 1}") or {}).get("indices")):
        if isinstance(found, list) and found and all(isinstance(i, int) for i in found):
            return found
    return None


def _has_turn_frames(o: Judgment) -> bool:
    return any(t.get("new_images") for t in o.verdict.get("turns") or [])


def frames_seen(o: Judgment) -> frozenset:
    """What one ordered judgment looked at, by video path: (path, real frame) per image of its turns, or
    (path, recorded frames) for a judgment that measured whole videos. Equal for both orders of a
    deterministic judge: then the report shows one set of thumbnails."""
    shown = (o.videoA, o.videoB)
    if _has_turn_frames(o):
        return frozenset((shown[int(r["video"]) - 1], int(r["real_index"]))
                         for t in o.verdict.get("turns") or [] for r in t.get("new_images") or [])
    return frozenset((shown[k], tuple(recorded_indices(o.verdict, k) or ())) for k in range(2))


def _measured(o: Judgment, thumbs: Thumbs) -> Iterator[str]:
    """Frames of what a judgment without turns looked at (a weight-free judge measures whole videos):
    both videos side by side, the recorded frames or evenly spaced ones."""
    shown = (o.videoA, o.videoB)
    per_video = [thumbs.measured_thumbs(p, recorded_indices(o.verdict, k), MEASURED_FRAMES) if p else {}
                 for k, p in enumerate(shown)]
    for k, p in enumerate(shown):
        if not per_video[k]:
            yield (f"<p class='note'>video {k + 1} ({_e(os.path.basename(p))}): no thumbnails: "
                   f"{_e(thumbs.errors.get(p, 'not recorded'))}</p>")
    recorded = any(recorded_indices(o.verdict, k) for k in range(2))
    what = "frames it measured" if recorded else "evenly spaced frames of what it measured"
    yield f"<h3>measured <span class='muted'>({_e(what)})</span></h3>"
    rows = [sorted(v.items()) for v in per_video]
    if not max(map(len, rows)):
        return
    yield "<div class='frames'>"
    for pos in range(max(map(len, rows))):
        imgs, reals = [], []
        for k in range(2):
            if pos >= len(rows[k]):
                reals.append("-")
                continue
            index, (uri, w, h) = rows[k][pos]
            reals.append(str(index))
            imgs.append(_img(uri, w, h, f"video {k + 1} frame {index}"))
        yield (f"<div class='frame'>{''.join(imgs)}<br><span class='muted'>(frames "
               f"{_e(' / '.join(reals))})</span></div>")
    yield "</div>"


def _conversation(o: Judgment, thumbs: Thumbs) -> Iterator[str]:
    """The frames of each turn of one ordered judgment, both videos side by side per grid index."""
    if not _has_turn_frames(o):
        yield from _measured(o, thumbs)
        return
    turns = o.verdict.get("turns") or []
    shown = (o.videoA, o.videoB)
    size = grid_size(o.protocol)
    grids = [thumbs.grid(p, size) if p else None for p in shown]
    for k, video in enumerate(shown):
        if grids[k] is None:
            yield (f"<p class='note'>video {k + 1} ({_e(os.path.basename(video))}): no thumbnails: "
                   f"{_e(thumbs.errors.get(video, 'not recorded'))}</p>")
    for t in turns:
        refs = t.get("new_images") or []
        by_index: dict[int, dict[int, dict]] = defaultdict(dict)
        for r in refs:
            by_index[int(r["grid_index"])][int(r["video"])] = r
        what = "initial frames" if t["index"] == 0 else f"frames from the tool call of turn {t['index']}"
        asked = (f"; then asked for {list(t.get('requested') or [])}" if t.get("action") == "tool_call" else "")
        yield (f"<h3>turn {_e(t['index'] + 1)}: {_e(t.get('action', ''))} "
               f"<span class='muted'>(saw {_e(what)}{_e(asked)})</span></h3>")
        if not by_index:
            yield "<p class='muted'>no new frames this turn</p>"
            continue
        yield "<div class='frames'>"
        for index, per_video in by_index.items():
            imgs, reals = [], []
            for v in (1, 2):
                r = per_video.get(v)
                g = grids[v - 1]
                reals.append("-" if r is None else str(r["real_index"]))
                if r is None or g is None:
                    continue
                note = "" if g.real_index(index) == r["real_index"] else " (file changed since judged)"
                uri, w, h = thumbs.thumb(g, index)
                imgs.append(_img(uri, w, h, f"video {v} grid index {index}{note}"))
            yield (f"<div class='frame'>{''.join(imgs)}<br>index {_e(index)} "
                   f"<span class='muted'>(frames {_e(' / '.join(reals))})</span></div>")
        yield "</div>"


def _pair_name(j: JudgedItem) -> str:
    return f"{os.path.basename(j.item.video1)} vs {os.path.basename(j.item.video2)}"


def _item(k: int, j: JudgedItem, thumbs: Thumbs) -> Iterator[str]:
    """Pair number `k`'s section, piece by piece (its thumbnails as they are made)."""
    it = j.item
    yield (f"<section class='item' id='pair-{k}'><h2>#{k} {_e(it.job)} / {_e(it.item_id)}: "
           f"{_e(os.path.basename(it.video1))} vs {_e(os.path.basename(it.video2))}</h2>"
           f"<p class='prompt'>{_e(it.prompt)}</p>"
           f"<p class='muted'>video1: {_e(it.video1)}<br>video2: {_e(it.video2)}</p>")
    if j.verdict is None:
        yield f"<p class='bad'>bad row: {_e(it.reason)} - {_e(it.detail)}</p></section>"
        return
    f = j.forward
    c = j.consistency
    yield (f"<p class='muted'>model {_e(f.model_id)}{' @ ' + _e(f.revision) if f.revision else ''}, "
           f"protocol {_e(f.protocol)}, backend {_e(f.backend)}, orders {_e(it.orders)}"
           f"{'' if c is None else f', position consistency {c:.0%}'}</p>")
    yield _labels_table(j)
    if j.verdict.reason:
        yield (f"<p class='muted'>by design: {_e(j.verdict.detail)}</p>" if j.verdict.as_designed else
               f"<p class='bad'>incomplete: {_e(j.verdict.reason)} - {_e(j.verdict.detail)}</p>")
    same = j.reverse is not None and frames_seen(j.forward) == frames_seen(j.reverse)
    for n, (name, o) in enumerate((("video1 shown first", j.forward), ("video2 shown first", j.reverse))):
        if o is None:
            continue
        yield (f"<h3>{_e(name)}: Video 1 = {_e(os.path.basename(o.videoA))}, "
               f"Video 2 = {_e(os.path.basename(o.videoB))}</h3>")
        if n == 1 and same:
            yield "<p class='muted same'>saw the same frames as video1 shown first (thumbnails above)</p>"
        else:
            yield from _conversation(o, thumbs)
        yield f"<div class='reasoning'><b>final reasoning:</b> {_e(o.reasoning) or '(none)'}</div>"
    yield "</section>"


def _label_cell(v) -> str:
    text = {None: "-", 0: "tie", 1: "video1", 2: "video2"}[v]
    return f"<td class='l{'m' if v is None else v}' data-v='{-1 if v is None else v}'>{text}</td>"


def _row(k: int, j: JudgedItem) -> str:
    """One line of the table of pairs: labels, consistency, status, a link to the pair's section."""
    it, v = j.item, j.verdict
    labels = "".join(_label_cell(None if v is None else v.labels.get(d)) for d in DIMENSIONS)
    c = j.consistency
    if v is None:
        status = f"bad: {it.reason}"
    elif v.reason and not v.as_designed:
        status = f"incomplete: {v.reason}"
    else:  # complete, or missing only what the judge cannot give (the weight-free judge's TA)
        status = "ok"
    return (f"<tr><td data-v='{k}'>{k}</td><td><a href='#pair-{k}'>{_e(_pair_name(j))}</a></td>"
            f"<td>{_e(it.job)}</td><td class='prompt'>{_e(it.prompt[:80])}</td>{labels}"
            f"<td data-v='{-1 if c is None else c}'>{'-' if c is None else f'{c:.0%}'}</td>"
            f"<td>{_e(status)}</td></tr>")


def _reasons(c: Counter) -> str:
    return ", ".join(f"{_e(r)} {n}" for r, n in c.most_common()) or "none"


def _summary(s: Summary, shown: int, start: int, n_rankings: int) -> str:
    """The summary section; the size slot is filled in once the whole file is written."""
    page = ("" if shown == s.pairs else " (none shown here: see --limit and --offset)" if not shown else
            f" (shown here: {start + 1}&ndash;{start + shown}, see --limit and --offset)")
    lines = [f"<p id='summary-line'><b>{s.pairs} pairs</b>{page}; {sum(s.bad.values())} bad rows, "
             f"{sum(s.incomplete.values())} incomplete; {n_rankings} rankings; "
             f"report size <span id='size'>{' ' * SIZE_SLOT}</span></p>",
             f"<p>failures by reason: bad rows: {_reasons(s.bad)}; incomplete verdicts: {_reasons(s.incomplete)}"
             + (f"; missing by design: {_reasons(s.by_design)}" if s.by_design else "") + "</p>"]
    if s.both_orders:
        per_dim = ", ".join(f"{d} {s.disagree_by_dim.get(d, 0)}" for d in DIMENSIONS)
        lines.append(f"<p>position consistency (pairs judged in both orders: {s.both_orders}): "
                     f"{s.consistency:.0%} of labels agree; orders disagree somewhere in {s.disagree} pairs "
                     f"({per_dim})</p>")
    else:
        lines.append("<p>position consistency: no pair judged in both orders</p>")
    return f"<section class='summary' id='summary'><h2>summary</h2>{''.join(lines)}</section>"


def _rankings(entries: Sequence[RankEntry]) -> list[str]:
    groups: dict[tuple, list[RankEntry]] = defaultdict(list)
    for e in entries:
        groups[(e.job, e.prompt, e.dimension)].append(e)
    first = {}
    for job, prompt, _ in groups:
        first.setdefault((job, prompt), len(first))
    out = []
    for (job, prompt, dim) in sorted(groups, key=lambda g: (first[g[:2]], ORDER.get(g[2], len(ORDER)), g[2])):
        rows = groups[(job, prompt, dim)]
        body = "".join(f"<tr><td>{_e(e.rank)}</td><td>{_e(os.path.basename(e.candidate))}</td>"
                       f"<td>{e.score:.3f}</td><td>{'' if e.uncertainty is None else f'{e.uncertainty:.3f}'}</td>"
                       f"<td>{_e(e.comparisons)}</td></tr>" for e in sorted(rows, key=lambda e: e.rank))
        out.append(f"<section class='ranking'><h2>ranking {_e(job)}: {_e(dim)} {_e(NAMES.get(dim, ''))}</h2>"
                   f"<p class='prompt'>{_e(prompt)}</p><table class='rank'><tr><th>rank</th><th>candidate</th>"
                   f"<th>score</th><th>&plusmn; stderr</th><th>comparisons</th></tr>{body}</table></section>")
    return out


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class _Out:
    """The report file, written piece by piece; knows its size and can fill in one slot written earlier."""

    def __init__(self, f):
        self.f, self.size = f, 0

    def __call__(self, text: str) -> None:
        data = text.encode("utf-8")
        self.f.write(data)
        self.size += len(data)

    def slot(self, text: str, marker: str) -> int:
        """Write `text`, returning the byte offset of `marker` inside it."""
        offset = self.size + text.encode("utf-8").index(marker.encode("utf-8"))
        self(text)
        return offset


def _page(store_items, rankings: Sequence[RankEntry], out: _Out, *, thumb: int, title: str,
          limit: int | None, offset: int) -> tuple[ReportStats, int]:
    """Write the whole page to `out`; `store_items()` iterates the stored pairs again for each part.
    Returns the stats and the byte offset of the size slot."""
    summary = summarize(store_items())

    def page_items() -> Iterator[tuple[int, JudgedItem]]:
        for k, j in enumerate(store_items()):
            if k < offset:
                continue
            if limit is not None and k >= offset + limit:
                return
            yield k + 1, j

    shown = max(0, min(summary.pairs - offset, summary.pairs if limit is None else limit))
    ranks = _rankings(rankings)
    out("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        # forbid every fetch: the page renders from this file alone; its one script is allowed by its hash
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
        f"style-src 'unsafe-inline'; script-src 'sha256-{SORT_HASH}'\">"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><h1>{_e(title)}</h1>")
    size_at = out.slot(_summary(summary, shown, offset, len(ranks)), "<span id='size'>") + len("<span id='size'>")
    head = "".join(f"<th>{h}</th>" for h in ("#", "pair", "job", "prompt", *DIMENSIONS, "consistency", "status"))
    out(f"<section class='summary'><h2>pairs</h2><p class='muted'>click a column to sort; a pair's name leads to "
        f"its frames and reasoning</p><table class='sortable' id='pairs'><thead><tr>{head}</tr></thead><tbody>")
    for k, j in page_items():
        out(_row(k, j))
    out("</tbody></table></section>")
    for r in ranks:
        out(r)
    thumbs = Thumbs(thumb, aspect=True)
    n = bad = 0
    for k, j in page_items():
        n += 1
        bad += j.verdict is None
        for piece in _item(k, j, thumbs):
            out(piece)
    out(f"<script>{SORT_JS}</script></body></html>\n")
    return ReportStats(n, bad, thumbs.count, len(ranks), summary.pairs, out.size), size_at


def write_report(store: Store, out: str, *, job: str | None = None, limit: int | None = None,
                 thumb: int = 160, offset: int = 0, title: str = "vrthinker judgments") -> ReportStats:
    """Write the stored judgments (done and bad rows) and rankings of `store` into `out`, streaming: pairs
    `offset` to `offset + limit` in detail, the summary over all of them."""
    with open(out, "wb") as f:
        stats, size_at = _page(lambda: judged_items(store, job, include_bad=True), store.rankings(job), _Out(f),
                               thumb=thumb, title=title, limit=limit, offset=offset)
        f.seek(size_at)
        f.write(human_size(stats.size).ljust(SIZE_SLOT)[:SIZE_SLOT].encode("ascii"))
    return stats


def render(items: Iterable[JudgedItem], rankings: Sequence[RankEntry] = (), *, thumb: int = 160,
           title: str = "vrthinker judgments") -> tuple[str, ReportStats]:
    """The report of `items` as one HTML string (small reports and tests; `write_report` streams)."""
    items = list(items)
    buf = io.BytesIO()
    stats, size_at = _page(lambda: iter(items), rankings, _Out(buf), thumb=thumb, title=title, limit=None,
                           offset=0)
    data = bytearray(buf.getvalue())
    data[size_at:size_at + SIZE_SLOT] = human_size(stats.size).ljust(SIZE_SLOT)[:SIZE_SLOT].encode("ascii")
    return data.decode("utf-8"), stats
