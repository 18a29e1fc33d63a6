"""`judge report` to triage with: summary first, a sortable table of pairs, TA/VQ/MQ/OA order, aspect-kept
thumbnails, one set of thumbnails when both orders saw the same frames, streaming with bounded memory,
--limit/--offset, every text escaped."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import tracemalloc
from html.parser import HTMLParser

import pytest
from PIL import Image

from vrthinker.backends.scripted import ScriptedBackend
from vrthinker.batch import read_pairs, run_batch
from vrthinker.cli import main
from vrthinker.judge import Judge
from vrthinker.report import human_size, write_report
from vrthinker.store import Item, Judgment, Store

TOOL = '<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [100, 20]}}</tool_call>'
ANSWER = "<Think>sharper</Think><Answer>TA=1, VQ=1, MQ=0, OA=1</Answer>"
WIDE = (160, 90)  # a 16:9 clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from vrthinker_eval.synth import render_scene, write_video

    d = tmp_path_factory.mktemp("triage")
    return [str(write_video(d / f"w{k}.mp4", render_scene(kind, *WIDE, 10, seed=k), fps=8))
            for k, kind in enumerate(("shapes", "pan", "orbit"))]


def put(store: Store, k: int, v1: str, v2: str, labels: dict, *, reverse: dict | None = None, job: str = "t",
        prompt: str = "a cat", seen=(None, None), item_id: str | None = None, status: str = "done",
        reason: str | None = None) -> None:
    """One stored item judged without turns (as the weight-free judge does); `seen`: the frames each order
    recorded measuring (None: evenly spaced)."""
    js = []
    orders = [("f", (v1, v2), labels, seen[0])] + ([("r", (v2, v1), reverse, seen[1])] if reverse else [])
    for tag, (a, b), lab, frames in orders:
        extra = {"frame_indices": {"video1": frames, "video2": frames}} if frames else {}
        js.append(Judgment(key=f"{k}-{tag}", videoA=a, videoB=b, hashA="h" + a, hashB="h" + b, prompt=prompt,
                           model_id="m", revision="", adapter="", protocol="metrics/1", backend="metrics",
                           labels=lab, reason=None, detail="", reasoning="why", verdict={"turns": [], "extra": extra},
                           created=1.0))
    item = Item(job=job, item_id=item_id or str(k), position=k, video1=v1, video2=v2, prompt=prompt,
                orders="both" if reverse else "one", status=status, reason=reason,
                key_forward=f"{k}-f" if status == "done" else None,
                key_reverse=f"{k}-r" if reverse and status == "done" else None)
    store.record(item, js if status == "done" else [])


def lab(ta=1, vq=1, mq=2, oa=1) -> dict:
    return {"TA": ta, "VQ": vq, "MQ": mq, "OA": oa}


def flip(labels: dict) -> dict:
    """The same preference as the other order answers it (1 and 2 swap places)."""
    return {d: {1: 2, 2: 1}.get(v, v) for d, v in labels.items()}


def sections(page: str) -> list[str]:
    return page.split("<section class='item'")[1:]


def test_summary_then_table_then_rankings_in_ta_vq_mq_oa_order(clips, tmp_path):
    with Store(tmp_path / "j.sqlite") as store:
        put(store, 1, clips[0], clips[1], lab(), reverse=lab(vq=2, mq=1, oa=2, ta=2))  # consistent
        put(store, 2, clips[1], clips[2], lab(), reverse=lab(ta=2, vq=1, mq=1, oa=2))  # orders disagree on VQ
        put(store, 3, clips[0], clips[2], lab(), status="bad", reason="bad_video")
        put(store, 4, clips[2], clips[0], lab(), status="bad", reason="missing_file")
        put(store, 5, clips[2], clips[1], lab(), status="bad", reason="bad_video")
        for dim in ("OA", "MQ", "VQ", "TA"):  # stored in another order; the store returns them alphabetically
            store.put_ranking("tour", "a cat", dim, [{"candidate": clips[0], "score": 0.5},
                                                     {"candidate": clips[1], "score": -0.5}])
    out = tmp_path / "r.html"
    assert main(["report", "--db", str(tmp_path / "j.sqlite"), "--out", str(out)]) == 0
    page = out.read_text()
    summary, table = page.index("id='summary'"), page.index("id='pairs'")
    first_ranking, first_item = page.index("<section class='ranking'"), page.index("<section class='item'")
    assert summary < table < first_ranking < first_item
    assert "<b>5 pairs</b>" in page and "bad rows: bad_video 2, missing_file 1" in page
    # pair 1 agrees on 4 of 4 labels, pair 2 on 3 of 4: 87.5% over the pairs judged in both orders
    assert "pairs judged in both orders: 2): 88% of labels agree" in page
    assert "orders disagree somewhere in 1 pairs (TA 0, VQ 1, MQ 0, OA 0)" in page
    assert re.findall(r"<h2>ranking tour: (\w\w) ", page) == ["TA", "VQ", "MQ", "OA"]
    head = re.search(r"<thead><tr>(.*?)</tr></thead>", page).group(1)
    assert re.findall(r"<th>(\w\w)</th>", head) == ["TA", "VQ", "MQ", "OA"]
    for s in sections(page)[:2]:
        assert re.findall(r"data-dim='(\w\w)'", s) == ["TA", "VQ", "MQ", "OA"]
    # the size the summary states is the file's
    assert re.search(r"report size <span id='size'>([^<]*)</span>", page).group(1).strip() == \
        human_size(os.path.getsize(out))


def test_pairs_table_has_a_row_per_pair_linking_its_section(clips, tmp_path):
    with Store(tmp_path / "j.sqlite") as store:
        for k in range(1, 4):
            put(store, k, clips[k % 3], clips[(k + 1) % 3], lab(oa=k % 3), reverse=flip(lab(oa=k % 3)))
    out = tmp_path / "r.html"
    assert main(["report", "--db", str(tmp_path / "j.sqlite"), "--out", str(out)]) == 0
    page = out.read_text()
    rows = re.search(r"<tbody>(.*?)</tbody>", page).group(1).split("<tr>")[1:]
    assert len(rows) == 3
    for k, row in enumerate(rows, 1):
        link = re.search(r"<a href='#(pair-\d+)'>([^<]*)</a>", row)
        assert link.group(1) == f"pair-{k}" and f"<section class='item' id='{link.group(1)}'>" in page
        assert link.group(2) == f"{os.path.basename(clips[k % 3])} vs {os.path.basename(clips[(k + 1) % 3])}"
        assert "data-v='1.0'" in row  # consistency, sortable by number


@pytest.mark.parametrize("judged_by", ["metrics", "scripted"])
def test_thumbnails_keep_a_16_9_clips_aspect_ratio(clips, tmp_path, judged_by):
    (tmp_path / "p.jsonl").write_text(json.dumps({"video1": clips[0], "video2": clips[1], "prompt": "a cat"}) + "\n")
    judge = (Judge.from_pretrained(backend="metrics") if judged_by == "metrics" else
             Judge(ScriptedBackend([TOOL, ANSWER], model_id="scripted:r"), "card"))
    with Store(tmp_path / "j.sqlite") as store:
        run_batch(judge, read_pairs(tmp_path / "p.jsonl"), store, job="b")
    out = tmp_path / "r.html"
    assert main(["report", "--db", str(tmp_path / "j.sqlite"), "--out", str(out), "--thumb", "160"]) == 0
    imgs = re.findall(r"<img class='thumb' src='data:image/jpeg;base64,([^']+)' width='(\d+)' height='(\d+)'",
                      out.read_text())
    assert imgs and len(imgs) == out.read_text().count("<img")
    for b64, w, h in imgs:
        assert (int(w), int(h)) == WIDE  # the longer side 160, the other 90: not a 160 x 160 square
        assert Image.open(io.BytesIO(base64.b64decode(b64))).size == WIDE


def test_one_set_of_thumbnails_when_both_orders_saw_the_same_frames(clips, tmp_path):
    with Store(tmp_path / "j.sqlite") as store:
        put(store, 1, clips[0], clips[1], lab(), reverse=lab(), seen=([1, 5], [1, 5]))  # the same frames
        put(store, 2, clips[0], clips[1], lab(), reverse=lab(), seen=([1, 5], [2, 8]))  # other frames
        put(store, 3, clips[0], clips[1], lab(), reverse=lab())  # both evenly spaced
    out = tmp_path / "r.html"
    assert main(["report", "--db", str(tmp_path / "j.sqlite"), "--out", str(out)]) == 0
    same, other, even = sections(out.read_text())
    assert same.count("<img") == 2 * 2 and "saw the same frames as video1 shown first" in same
    assert other.count("<img") == 2 * 2 * 2 and "saw the same frames" not in other
    assert even.count("<img") == 4 * 2 and "saw the same frames" in even
    for s in (same, other, even):  # each order's reasoning is still there
        assert s.count("final reasoning") == 2


def test_limit_and_offset_page_through_a_large_batch(clips, tmp_path, capsys):
    with Store(tmp_path / "j.sqlite") as store:
        for k in range(1, 11):
            put(store, k, clips[0], clips[1], lab())
    out = tmp_path / "r.html"
    db = str(tmp_path / "j.sqlite")
    assert main(["report", "--db", db, "--out", str(out), "--limit", "3", "--offset", "4"]) == 0
    page = out.read_text()
    assert "<b>10 pairs</b> (shown here: 5&ndash;7" in page  # the summary counts them all
    assert re.findall(r"<section class='item' id='pair-(\d+)'>", page) == ["5", "6", "7"]
    assert re.findall(r"<a href='#pair-(\d+)'>", page) == ["5", "6", "7"]
    err = " ".join(capsys.readouterr().err.split())
    assert "kB): 3 of 10 pairs (0 bad)" in err
    assert main(["report", "--db", db, "--out", str(out), "--offset", "12"]) == 0
    page = out.read_text()
    assert "<b>10 pairs</b> (none shown here" in page and "<section class='item'" not in page
    assert main(["report", "--db", db, "--out", str(out), "--offset", "-1"]) == 2


def test_writing_2000_pairs_stays_in_bounded_memory(clips, tmp_path):
    """Before, the page was one string (and every thumbnail kept): memory grew with the report's size."""
    with Store(tmp_path / "j.sqlite") as store:
        for k in range(2000):
            put(store, k, clips[k % 3], clips[(k + 1) % 3], lab(), reverse=lab(vq=2, mq=1, oa=2, ta=2))
    out = tmp_path / "r.html"
    with Store(tmp_path / "j.sqlite", readonly=True) as store:
        tracemalloc.start()
        try:
            stats = write_report(store, str(out), thumb=64)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    size = os.path.getsize(out)
    assert stats.items == 2000 and stats.images == 2000 * 4 * 2 and stats.size == size
    assert size > 20e6 and peak < size / 5, (peak, size)  # the whole string would take at least `size`


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs = set(), set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs.update(name for name, _ in attrs)


def test_every_text_is_escaped(tmp_path):
    from vrthinker_eval.synth import render_scene, write_video

    evil = "<img src=x onerror=alert(1)>'\"&"
    d = tmp_path / "a'<b>"
    d.mkdir()
    v1 = str(write_video(d / "x<i>'y\".mp4", render_scene("shapes", 64, 36, 8, seed=1), fps=8))
    v2 = str(write_video(d / "z&w.mp4", render_scene("pan", 64, 36, 8, seed=2), fps=8))
    with Store(tmp_path / "j.sqlite") as store:
        put(store, 1, v1, v2, lab(), reverse=lab(), job=f"job{evil}", prompt=f"prompt{evil}", item_id=f"id{evil}")
        put(store, 2, v1, v2, lab(), job=f"job{evil}", prompt=evil, status="bad", reason=f"why{evil}")
        store.put_ranking(f"rank{evil}", f"p{evil}", "OA", [{"candidate": v1, "score": 1.0},
                                                          {"candidate": v2, "score": -1.0}])
    out = tmp_path / "r.html"
    assert main(["report", "--db", str(tmp_path / "j.sqlite"), "--out", str(out)]) == 0
    page = out.read_text()
    p = Tags()
    p.feed(page)
    assert not {a for a in p.attrs if a.startswith("on")} and "i" not in p.tags
    assert page.count("<script") == 1 and not re.search(r"<[^>]*onerror", page)
    assert "prompt&lt;img src=x onerror=alert(1)&gt;&#x27;&quot;&amp;" in page
    assert "x&lt;i&gt;&#x27;y&quot;.mp4" in page and "z&amp;w.mp4" in page


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM) or shutil.which("chromium") is None, reason="no Debian chromium")
def test_the_table_sorts_in_headless_chromium(clips, tmp_path):
    """The page's one script runs under its own Content-Security-Policy (allowed by hash) and sorts."""
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    with Store(tmp_path / "j.sqlite") as store:
        for k, oa in enumerate((1, 0, 2, None, 1), 1):
            put(store, k, clips[0], clips[1], lab(oa=oa), reverse=flip(lab(oa=oa)))
    out = tmp_path / "r.html"
    assert main(["report", "--db", str(tmp_path / "j.sqlite"), "--out", str(out)]) == 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(out.as_uri())
            first_col = ("() => Array.from(document.querySelectorAll('#pairs tbody tr'))"
                         ".map(r => r.cells[0].textContent)")
            assert page.evaluate(first_col) == ["1", "2", "3", "4", "5"]
            page.click("#pairs th:has-text('OA')")  # ascending by the OA label: missing, tie, video1, video2
            assert page.evaluate(first_col) == ["4", "2", "1", "5", "3"]
            page.click("#pairs th:has-text('OA')")  # again: descending
            assert page.evaluate(first_col) == ["3", "1", "5", "2", "4"]
            page.click("#pairs th:has-text('#')")
            assert page.evaluate(first_col) == ["1", "2", "3", "4", "5"]
            page.click("#pairs a[href='#pair-3']")
            assert page.evaluate("() => location.hash") == "#pair-3"
            # its images were all decoded: the page needs nothing beyond the file
            assert page.evaluate("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            assert not errors, errors
        finally:
            browser.close()
