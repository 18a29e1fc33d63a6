"""`judge pairs` (preference pairs for DPO) and `judge report` (one self-contained HTML file)."""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vrthinker.backends.scripted import ScriptedBackend
from vrthinker.batch import read_pairs, run_batch
from vrthinker.cli import main
from vrthinker.judge import Judge
from vrthinker.pairs import build_pairs, write_jsonl
from vrthinker.store import Item, Judgment, Store

TOOL = '<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [100, 20]}}</tool_call>'
ANSWER = "<Think>the first keeps the <cat> & its board in frame</Think><Answer>TA=1, VQ=0, MQ=2, OA=1</Answer>"


def labels(oa, ta=1, vq=0, mq=2):
    return {"TA": ta, "VQ": vq, "MQ": mq, "OA": oa}


def put(store: Store, item_id: str, v1: str, v2: str, forward: dict | None, reverse: dict | None = None,
        prompt: str = "a cat", job: str = "t") -> None:
    """One item with hand-written ordered judgments (labels as the model gave them: 1 = shown first)."""
    js = []
    for tag, (a, b), lab in (("f", (v1, v2), forward), ("r", (v2, v1), reverse)):
        if lab is not None:
            js.append(Judgment(key=f"{item_id}-{tag}", videoA=a, videoB=b, hashA="h" + a, hashB="h" + b,
                               prompt=prompt, model_id="m", revision="", adapter="", protocol="card/1",
                               backend="scripted", labels=lab, reason=None, detail="", reasoning="why",
                               verdict={"turns": []}, created=1.0))
    store.record(Item(job=job, item_id=item_id, position=int(re.sub(r"\D", "", item_id) or 0), video1=v1,
                      video2=v2, prompt=prompt, orders="both" if reverse is not None else "one", status="done",
                      key_forward=f"{item_id}-f", key_reverse=f"{item_id}-r" if reverse is not None else None),
                 js)


@pytest.fixture
def db(tmp_path) -> Store:
    store = Store(tmp_path / "j.sqlite")
    put(store, "1", "a", "b", labels(1), labels(2))  # both orders prefer a
    put(store, "2", "c", "d", labels(2))  # one order: d
    put(store, "3", "e", "f", labels(1), labels(1))  # orders pick opposite winners
    put(store, "4", "g", "h", labels(1), labels(0))  # one order picks g, the other says tie
    put(store, "5", "i", "j", labels(0), labels(0))  # tie
    put(store, "6", "k", "l", labels(1), labels(2))  # k ...
    put(store, "7", "l", "k", labels(1), labels(2))  # ... and l: a contradiction, both dropped
    put(store, "8", "b", "a", labels(2), labels(1))  # a again (same direction as item 1): merged
    put(store, "9", "a", "b", labels(1), labels(2), prompt="another prompt")  # another prompt: its own pair
    yield store
    store.close()


def test_pairs_keep_agreeing_orders_and_drop_ties_and_contradictions(db):
    r = build_pairs(db, "OA")
    got = {(p.chosen, p.rejected, p.prompt): p for p in r.pairs}
    assert set(got) == {("a", "b", "a cat"), ("d", "c", "a cat"), ("a", "b", "another prompt")}
    assert got[("a", "b", "a cat")].confidence == 1.0 and got[("d", "c", "a cat")].confidence == 0.5
    assert r.contradictions == 2 and r.merged == 1
    assert r.skipped == {"inconsistent": 2, "tie": 1}
    a = got[("a", "b", "a cat")]
    assert {j["key"] for j in a.judgments} == {"1-f", "1-r", "8-f", "8-r"}  # merged evidence
    # labels are for (chosen, rejected); item 2 chose video2, so they are swapped
    assert got[("d", "c", "a cat")].labels == {"TA": 2, "VQ": 0, "MQ": 1, "OA": 1}


def test_pairs_consistency_options(db):
    strict = build_pairs(db, "OA", require_consistent=True)
    assert {(p.chosen, p.prompt) for p in strict.pairs} == {("a", "a cat"), ("a", "another prompt")}
    assert strict.skipped["one_order"] == 1
    loose = build_pairs(db, "OA", allow_inconsistent=True)
    half = [p for p in loose.pairs if p.chosen == "g"]
    assert len(half) == 1 and half[0].confidence == 0.25 and half[0].rejected == "h"
    assert {p.chosen for p in build_pairs(db, "OA", min_margin=0.75).pairs} == {"a"}
    # TA: every forward says 1 and every reverse says 1, so only single-order items survive
    assert {p.chosen for p in build_pairs(db, "TA").pairs} == {"c"}


def expected_p(gap: float, var: float) -> float:
    """E[sigmoid(d)] for d ~ Normal(gap, var), by adaptive quadrature (independent of the code's own rule)."""
    from scipy.integrate import quad

    sd = math.sqrt(var)
    f = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi) / (1 + math.exp(-(gap + sd * z)))  # noqa: E731
    return quad(f, -12, 12)[0]


def test_rankings_become_pairs_and_conflicts_drop(db):
    db.put_ranking("tour", "a cat", "OA", [{"candidate": "b", "score": 1.0, "uncertainty": 0.3, "comparisons": 4},
                                           {"candidate": "x", "score": 0.2, "uncertainty": 0.3, "comparisons": 4},
                                           {"candidate": "a", "score": -1.2, "uncertainty": 0.3, "comparisons": 4}])
    r = build_pairs(db, "OA")
    ranked = {(p.chosen, p.rejected): p for p in r.pairs if p.source == "ranking"}
    assert set(ranked) == {("b", "x"), ("x", "a")}  # b over a contradicts the judgments: both sides dropped
    assert ("a", "b", "a cat") not in {(p.chosen, p.rejected, p.prompt) for p in r.pairs}
    p = ranked[("b", "x")]
    # P(b beats x) = E[sigmoid(d)], d ~ N(0.8, 0.3^2 + 0.3^2): stored without a covariance, independent scores
    assert p.score_gap == pytest.approx(0.8) and p.confidence == pytest.approx(expected_p(0.8, 0.18), abs=1e-6)
    assert p.labels["OA"] == 1 and p.labels["TA"] is None  # no TA ranking stored
    assert len(build_pairs(db, "OA", rankings=False).pairs) == 3


def test_pairs_round_trip_through_datasets(db, tmp_path):
    datasets = pytest.importorskip("datasets")
    db.put_ranking("tour", "a cat", "OA", [{"candidate": "y", "score": 0.5}, {"candidate": "z", "score": -0.5}])
    r = build_pairs(db, "OA", allow_inconsistent=True)
    out = tmp_path / "pairs.jsonl"
    assert write_jsonl(r.pairs, str(out)) == len(r.pairs) == 5
    ds = datasets.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 5
    assert {"prompt", "chosen", "rejected", "dimension", "labels", "confidence", "source", "judgments",
            "model_id"} <= set(ds.column_names)
    for row, p in zip(ds, r.pairs):
        d = p.to_dict()
        assert (row["prompt"], row["chosen"], row["rejected"], row["source"]) == \
            (d["prompt"], d["chosen"], d["rejected"], d["source"])
        assert row["labels"] == d["labels"] and row["confidence"] == pytest.approx(d["confidence"])
        assert [j["key"] for j in row["judgments"]] == [j["key"] for j in d["judgments"]]


def test_cli_pairs(db, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    assert main(["pairs", "--db", db.path, "--out", str(out), "--dimension", "OA", "--require-consistent"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2 and all(r["confidence"] == 1.0 and r["dimension"] == "OA" for r in rows)
    assert "contradicting pairs dropped: 2" in capsys.readouterr().err
    assert main(["pairs", "--db", db.path, "--out", str(out), "--min-margin", "2"]) == 2


# ----------------------------------------------------------------------------------------------------------
# the report


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """A real batch: two good pairs (both orders, a tool call each), a bad row, a video deleted afterwards,
    and a stored ranking."""
    from vrthinker_eval.synth import render_scene, write_corrupt, write_video

    d = tmp_path_factory.mktemp("report")
    v = [str(write_video(d / f"v{k}.mp4", render_scene(kind, 64, 48, 10, seed=k), fps=8))
         for k, kind in enumerate(("shapes", "pan", "orbit"))]
    gone = str(write_video(d / "gone.mp4", render_scene("text", 64, 48, 10, seed=9), fps=8))
    bad = str(write_corrupt(d / "bad.mp4"))
    rows = [{"video1": v[0], "video2": v[1], "prompt": "a <cat> & a dog"},
            {"video1": v[1], "video2": v[2], "prompt": "a cat"},
            {"video1": v[0], "video2": bad, "prompt": "a cat"},
            {"video1": v[0], "video2": gone, "prompt": "a cat"}]
    (d / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = Store(d / "j.sqlite")
    judge = Judge(ScriptedBackend([TOOL, ANSWER], model_id="scripted:r"), "card")
    run_batch(judge, read_pairs(d / "b.jsonl"), store, job="b")
    Path(gone).unlink()
    store.put_ranking("tour", "a cat", "OA", [{"candidate": v[2], "score": 0.7, "uncertainty": 0.4},
                                              {"candidate": v[0], "score": -0.7, "uncertainty": 0.4}])
    store.close()
    return d


# per ordered judgment: 4 initial indices + 2 requested, each as two thumbnails side by side
IMAGES_PER_ORDER = (4 + 2) * 2


def test_report_is_self_contained(judged, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", "--db", str(judged / "j.sqlite"), "--out", str(out)]) == 0
    page = out.read_text()
    assert "http://" not in page and "https://" not in page and "src='file:" not in page
    uris = re.findall(r"src='(data:image/jpeg;base64,[A-Za-z0-9+/=]+)'", page)
    # pairs 1 and 2 in both orders, which saw the same frames: one set each; pair 4 likewise, but only its
    # surviving video has thumbnails
    assert len(uris) == len(re.findall(r"<img", page)) == 2 * IMAGES_PER_ORDER + IMAGES_PER_ORDER // 2
    assert "a &lt;cat&gt; &amp; a dog" in page and "<cat>" not in page  # escaped
    assert "bad row: bad_video" in page and "gone.mp4: file not found" in page
    assert "ranking tour: OA" in page and "0.700" in page
    assert "wrote" in capsys.readouterr().err


def test_report_shows_the_frames_the_vlm_asked_for(judged, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", "--db", str(judged / "j.sqlite"), "--out", str(out), "--job", "b", "--limit", "1"]) == 0
    alts = re.findall(r"<img [^>]*alt='([^']*)'", out.read_text())
    for index in (100, 20):  # the tool call's indices, both videos side by side, once for both orders
        assert sorted(a for a in alts if a.endswith(f"grid index {index}")) == [
            f"video 1 grid index {index}", f"video 2 grid index {index}"]


def test_report_of_a_weight_free_batch_has_thumbnails_for_every_pair(tmp_path):
    from vrthinker_eval.synth import render_scene, write_video

    v = [str(write_video(tmp_path / f"m{k}.mp4", render_scene(kind, 64, 48, 10, seed=k), fps=8))
         for k, kind in enumerate(("shapes", "pan", "orbit"))]
    rows = [{"video1": v[0], "video2": v[1], "prompt": "a <b>bold</b> cat"},
            {"video1": v[1], "video2": v[2], "prompt": "a cat"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with Store(tmp_path / "m.sqlite") as store:
        run_batch(Judge.from_pretrained(backend="metrics"), read_pairs(tmp_path / "m.jsonl"), store, job="m")
    out = tmp_path / "report.html"
    assert main(["report", "--db", str(tmp_path / "m.sqlite"), "--out", str(out)]) == 0
    page = out.read_text()
    sections = page.split("<section class='item'")[1:]
    assert len(sections) == 2
    for section in sections:  # both orders stored, the same frames measured: 4 evenly spaced frames of each video
        alts = re.findall(r"<img class='thumb' src='data:image/jpeg;base64,[^']+' [^>]*alt='([^']*)'", section)
        assert len(alts) == len(re.findall(r"<img", section)) == 4 * 2
        assert "saw the same frames as video1 shown first" in section
        assert alts[:2] == ["video 1 frame 1", "video 2 frame 1"]  # 10 frames: 1, 3, 6, 8
        assert sorted({a.split()[-1] for a in alts}, key=int) == ["1", "3", "6", "8"]
    assert "a &lt;b&gt;bold&lt;/b&gt; cat" in page and "<b>bold" not in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_report_renders_in_headless_chromium(judged, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", "--db", str(judged / "j.sqlite"), "--out", str(out), "--job", "b", "--limit", "2"]) == 0
    r = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--no-first-run", "--virtual-time-budget=2000",
                        f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", out.as_uri()],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert len(re.findall(r"<img ", dom)) == 2 * IMAGES_PER_ORDER  # two pairs, both orders seeing the same frames
    assert dom.count("class=\"label\"") == 8 and "0 (tie)" in dom and "orders disagree" in dom
    assert "the first keeps the &lt;cat&gt; &amp; its board in frame" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile2'}",
                    "--window-size=1000,1400", f"--screenshot={shot}", out.as_uri()],
                   capture_output=True, timeout=60)
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    assert img.size == (1000, 1400)
    # the page itself is grey on white: strongly coloured pixels come from the decoded thumbnails
    import numpy as np

    px = np.asarray(img).astype(int)
    colourful = int(((px.max(axis=2) - px.min(axis=2)) > 60).sum())
    assert colourful > 0.05 * 1000 * 1400
