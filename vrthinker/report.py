"""A self-contained HTML report of stored judgments: per pair the frames the judge looked at (a VLM's
requested frames, or evenly spaced frames of what a weight-free judge measured), its labels and final
reasoning; per tournament the ranking. Inline CSS, images as base64 JPEG data URIs, no URL at all."""
from __future__ import annotations

import base64
import html
import io
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PIL import Image

from vrthinker.media import frame_grid as frames
from vrthinker.media.decode import decode_frames
from vrthinker.batch import JudgedItem, judged_items
from vrthinker.errors import JudgeError
from vrthinker.store import Judgment, RankEntry, Store
from vrthinker.verdict import DIMENSIONS, LABEL_NAMES

NAMES = {"TA": "Text Alignment", "VQ": "Visual Quality", "MQ": "Motion Quality", "OA": "Overall"}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px}h2{font-size:17px;margin:0 0 6px}h3{font-size:15px;margin:14px 0 4px}
section.item,section.ranking{background:#fff;border:1px solid #ddd;border-radius:6px;padding:14px;margin:0 0 18px}
.prompt{font-style:italic}.muted{color:#777}.bad{color:#a40}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
.frames{display:flex;flex-wrap:wrap;gap:10px}.frame{border:1px solid #eee;padding:4px;text-align:center}
.frame img{display:inline-block;margin:0 2px}.reasoning{white-space:pre-wrap;background:#f4f4f4;padding:8px}
.note{color:#a40;font-size:12px}
.probs{font-size:12px;white-space:nowrap}.bar{display:inline-block;width:60px;height:8px;background:#eee;
margin:0 4px 0 2px;vertical-align:middle}.bar span{display:block;height:8px;background:#4a7}
"""


@dataclass(frozen=True)
class ReportStats:
    """What went into a report."""

    items: int
    bad: int
    images: int
    rankings: int


class Thumbs:
    """Thumbnails of grid frames as data URIs; each video decoded once (within a memory bound)."""

    def __init__(self, side: int, max_mb: float = 256):
        self.side = side
        self.cache = frames.GridCache(max_mb)
        self.uris: dict[tuple, str] = {}
        self.errors: dict[str, str] = {}
        self.count = 0

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
        key = (grid.path, grid.grid_size, index)
        if key not in self.uris:
            self.uris[key] = _jpeg_uri(grid.image(index))
        self.count += 1
        return self.uris[key]

    def measured(self, path: str, indices: Sequence[int] | None, n: int) -> dict[int, str]:
        """Thumbnails of real frames of `path` by frame index: `indices` where the verdict recorded them,
        else `n` evenly spaced over the video; {} (and the reason in `errors`) when it cannot be decoded."""
        if path in self.errors:
            return {}
        side = self.side

        def pick(total: int) -> list[int]:
            if indices:
                return sorted({int(i) for i in indices if 0 <= int(i) < total})
            return sorted({min(int((k + 0.5) * total / n), total - 1) for k in range(n)})

        def shrink(bgr, _):
            import cv2

            return cv2.cvtColor(cv2.resize(bgr, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)

        try:
            decoded = decode_frames(path, pick, shrink)
        except JudgeError as e:
            self.errors[path] = str(e)
            return {}
        out = {}
        for i, rgb in decoded.frames.items():
            out[i] = _jpeg_uri(Image.fromarray(rgb))
            self.count += 1
        return out


def _jpeg_uri(image) -> str:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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


def _measured(o: Judgment, thumbs: Thumbs) -> str:
    """Frames of what a judgment without turns looked at (a weight-free judge measures whole videos):
    both videos side by side, the recorded frames or evenly spaced ones."""
    shown = (o.videoA, o.videoB)
    per_video = [thumbs.measured(p, recorded_indices(o.verdict, k), MEASURED_FRAMES) if p else {}
                 for k, p in enumerate(shown)]
    out = []
    for k, p in enumerate(shown):
        if not per_video[k]:
            out.append(f"<p class='note'>video {k + 1} ({_e(os.path.basename(p))}): no thumbnails: "
                       f"{_e(thumbs.errors.get(p, 'not recorded'))}</p>")
    recorded = any(recorded_indices(o.verdict, k) for k in range(2))
    what = "frames it measured" if recorded else "evenly spaced frames of what it measured"
    out.append(f"<h3>measured <span class='muted'>({_e(what)})</span></h3>")
    rows = [sorted(v.items()) for v in per_video]
    cells = []
    for pos in range(max(map(len, rows))):
        imgs, reals = [], []
        for k in range(2):
            if pos >= len(rows[k]):
                reals.append("-")
                continue
            index, uri = rows[k][pos]
            reals.append(str(index))
            imgs.append(f"<img class='thumb' src='{uri}' width='{thumbs.side}' height='{thumbs.side}' "
                        f"alt='video {k + 1} frame {index}'>")
        cells.append(f"<div class='frame'>{''.join(imgs)}<br><span class='muted'>(frames "
                     f"{_e(' / '.join(reals))})</span></div>")
    if cells:
        out.append(f"<div class='frames'>{''.join(cells)}</div>")
    return "".join(out)


def _conversation(o: Judgment, thumbs: Thumbs) -> str:
    """The frames of each turn of one ordered judgment, both videos side by side per grid index."""
    turns = o.verdict.get("turns") or []
    if not any(t.get("new_images") for t in turns):
        return _measured(o, thumbs)
    shown = (o.videoA, o.videoB)
    size = grid_size(o.protocol)
    grids = [thumbs.grid(p, size) if p else None for p in shown]
    out = []
    for k, video in enumerate(shown):
        if grids[k] is None:
            out.append(f"<p class='note'>video {k + 1} ({_e(os.path.basename(video))}): no thumbnails: "
                       f"{_e(thumbs.errors.get(video, 'not recorded'))}</p>")
    for t in turns:
        refs = t.get("new_images") or []
        by_index: dict[int, dict[int, dict]] = defaultdict(dict)
        for r in refs:
            by_index[int(r["grid_index"])][int(r["video"])] = r
        what = "initial frames" if t["index"] == 0 else f"frames from the tool call of turn {t['index']}"
        asked = (f"; then asked for {list(t.get('requested') or [])}" if t.get("action") == "tool_call" else "")
        out.append(f"<h3>turn {_e(t['index'] + 1)}: {_e(t.get('action', ''))} "
                   f"<span class='muted'>(saw {_e(what)}{_e(asked)})</span></h3>")
        if not by_index:
            out.append("<p class='muted'>no new frames this turn</p>")
            continue
        cells = []
        for index, per_video in by_index.items():
            imgs, reals = [], []
            for v in (1, 2):
                r = per_video.get(v)
                g = grids[v - 1]
                reals.append("-" if r is None else str(r["real_index"]))
                if r is None or g is None:
                    continue
                note = "" if g.real_index(index) == r["real_index"] else " (file changed since judged)"
                imgs.append(f"<img class='thumb' src='{thumbs.uri(g, index)}' width='{thumbs.side}' "
                            f"height='{thumbs.side}' alt='video {v} grid index {index}{_e(note)}'>")
            cells.append(f"<div class='frame'>{''.join(imgs)}<br>index {_e(index)} "
                         f"<span class='muted'>(frames {_e(' / '.join(reals))})</span></div>")
        out.append(f"<div class='frames'>{''.join(cells)}</div>")
    return "".join(out)


def _item(j: JudgedItem, thumbs: Thumbs) -> str:
    it = j.item
    title = f"{_e(it.job)} / {_e(it.item_id)}: {_e(os.path.basename(it.video1))} vs {_e(os.path.basename(it.video2))}"
    parts = [f"<section class='item' id='item-{_e(it.job)}-{_e(it.item_id)}'><h2>{title}</h2>",
             f"<p class='prompt'>{_e(it.prompt)}</p>",
             f"<p class='muted'>video1: {_e(it.video1)}<br>video2: {_e(it.video2)}</p>"]
    if j.verdict is None:
        parts.append(f"<p class='bad'>bad row: {_e(it.reason)} - {_e(it.detail)}</p></section>")
        return "".join(parts)
    f = j.forward
    c = j.consistency
    parts.append(f"<p class='muted'>model {_e(f.model_id)}{' @ ' + _e(f.revision) if f.revision else ''}, "
                 f"protocol {_e(f.protocol)}, backend {_e(f.backend)}, orders {_e(it.orders)}"
                 f"{'' if c is None else f', position consistency {c:.0%}'}</p>")
    parts.append(_labels_table(j))
    if j.verdict.reason:
        parts.append(f"<p class='bad'>incomplete: {_e(j.verdict.reason)} - {_e(j.verdict.detail)}</p>")
    for name, o in (("video1 shown first", j.forward), ("video2 shown first", j.reverse)):
        if o is None:
            continue
        parts.append(f"<h3>{_e(name)}: Video 1 = {_e(os.path.basename(o.videoA))}, "
                     f"Video 2 = {_e(os.path.basename(o.videoB))}</h3>")
        parts.append(_conversation(o, thumbs))
        parts.append(f"<div class='reasoning'><b>final reasoning:</b> {_e(o.reasoning) or '(none)'}</div>")
    parts.append("</section>")
    return "".join(parts)


def _rankings(entries: Sequence[RankEntry]) -> list[str]:
    groups: dict[tuple, list[RankEntry]] = defaultdict(list)
    for e in entries:
        groups[(e.job, e.prompt, e.dimension)].append(e)
    out = []
    for (job, prompt, dim), rows in groups.items():
        body = "".join(f"<tr><td>{_e(e.rank)}</td><td>{_e(os.path.basename(e.candidate))}</td>"
                       f"<td>{e.score:.3f}</td><td>{'' if e.uncertainty is None else f'{e.uncertainty:.3f}'}</td>"
                       f"<td>{_e(e.comparisons)}</td></tr>" for e in sorted(rows, key=lambda e: e.rank))
        out.append(f"<section class='ranking'><h2>ranking {_e(job)}: {_e(dim)} {_e(NAMES.get(dim, ''))}</h2>"
                   f"<p class='prompt'>{_e(prompt)}</p><table class='rank'><tr><th>rank</th><th>candidate</th>"
                   f"<th>score</th><th>&plusmn; stderr</th><th>comparisons</th></tr>{body}</table></section>")
    return out


def render(items: Iterable[JudgedItem], rankings: Sequence[RankEntry] = (), *, thumb: int = 160,
           title: str = "vrthinker judgments") -> tuple[str, ReportStats]:
    """The report as one HTML string, and what it holds."""
    thumbs = Thumbs(thumb)
    body, n, bad = [], 0, 0
    for j in items:
        n += 1
        bad += j.verdict is None
        body.append(_item(j, thumbs))
    ranks = _rankings(rankings)
    summary = f"{n} pairs ({bad} bad), {len(ranks)} rankings"
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            # forbid every fetch: the page must render from this file alone
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1><p class='muted'>{_e(summary)}</p>"
            + "".join(ranks) + "".join(body) + "</body></html>\n")
    return page, ReportStats(n, bad, thumbs.count, len(ranks))


def write_report(store: Store, out: str, *, job: str | None = None, limit: int | None = None,
                 thumb: int = 160) -> ReportStats:
    """Render the stored judgments (done and bad rows) and rankings of `store` into `out`."""
    items = []
    for k, j in enumerate(judged_items(store, job, include_bad=True)):
        if limit is not None and k >= limit:
            break
        items.append(j)
    page, stats = render(items, store.rankings(job), thumb=thumb)
    with open(out, "w", encoding="utf-8") as f:
        f.write(page)
    return stats
