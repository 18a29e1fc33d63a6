"""`judge eval` and eval/: benchmark loaders on tiny fixtures in each format, hand-computed metrics, end to end."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from vrthinker_eval.benchmarks import BENCHMARKS, load
from vrthinker_eval.metrics import (accuracy_with_ties, accuracy_without_ties, confusion, evaluate, labels_from_scores,
                          position_consistency, tie_sweep)
from vrthinker.cli import main
from vrthinker.errors import UsageError

ALWAYS_1 = "<Think>the first one</Think><Answer>TA=1, VQ=1, MQ=1, OA=1</Answer>"
ALWAYS_2 = "<Answer>TA=2, VQ=2, MQ=2, OA=2</Answer>"

# ----------------------------------------------------------------------------------------------------------
# fixtures: three generated clip pairs, and each benchmark's file format around them


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """A data dir with videos/m1/{0,1,2}.mp4 and videos/m2/{0,1,2}.mp4 (64x48, 8 frames, 8 fps)."""
    from vrthinker_eval.synth import render_scene, write_video

    root = tmp_path_factory.mktemp("bench")
    for i in range(3):
        write_video(root / "videos" / "m1" / f"{i}.mp4", render_scene("shapes", 64, 48, 8, seed=i), fps=8)
        write_video(root / "videos" / "m2" / f"{i}.mp4", render_scene("pan", 64, 48, 8, seed=i), fps=8)
    return root


VG_COLUMNS = ["path_A", "path_B", "A_model", "B_model", "prompt", "fps_A", "fps_B", "num_frames_A", "num_frames_B",
              "VQ", "MQ", "TA"]
# VQ, MQ, TA, Overall per row; the last row's video 9 does not exist
VG_ROWS = [("0", "a cat", "A", "B", "same", "A"), ("1", "a dog", "B", "B", "A", "B"),
           ("2", "a fox", "same", "A", "A", "same"), ("9", "gone", "A", "A", "A", "A")]


def write_videogen(root: Path, overall: str = "Overall") -> Path:
    path = root / "videogen-rewardbench.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(VG_COLUMNS + [overall])
        for i, prompt, vq, mq, ta, oa in VG_ROWS:
            w.writerow([f"videos/m1/{i}.mp4", f"videos/m2/{min(int(i), 2)}.mp4", "m1", "m2", prompt, 8, 8, 8, 8,
                        vq, mq, ta, oa])
    return path


def write_genai(root: Path) -> Path:
    """GenAI-Bench rows as a .jsonl export; videos referenced by URL, kept locally under videos/<name>."""
    votes = ["leftvote", "rightvote", "tievote", "bothbad_vote"]
    for i in range(3):  # the local copy: videos/<file name of the URL>
        for m in ("m1", "m2"):
            target = root / "videos" / f"{m}_{i}.mp4"
            if not target.exists():
                target.write_bytes((root / "videos" / m / f"{i}.mp4").read_bytes())
    path = root / "video_generation.jsonl"
    with open(path, "w") as f:
        for k, vote in enumerate(votes):
            i = min(k, 2)
            right = f"https://example.org/v/m2_{i}.mp4" if k < 3 else "https://example.org/v/nope.mp4"
            f.write(json.dumps({"prompt": f"prompt {k}", "left_video": f"https://example.org/v/m1_{i}.mp4",
                                "right_video": right, "vote_type": vote, "left_model": "m1",
                                "right_model": "m2"}) + "\n")
    return path


def write_mjbench(root: Path) -> Path:
    prefs = [("Video 1 better", "Video 1 better", "Same", "Video 2 better"),
             ("Video 2 better", "Same", "Video 2 better", "Video 2 better"),
             ("Hard to judge", "Same", "Same", "Video 1 better")]
    items = []
    for i, (overall, align, fine, coherence) in enumerate(prefs):
        items.append({"caption": f"caption {i}", "video_0_path": f"m1/{i}.mp4", "video_1_path": f"m2/{i}.mp4",
                      "video_0_label": {}, "video_1_label": {}, "video_0_overall_score": {},
                      "video_1_overall_score": {}, "overall_preference": overall,
                      "category_preference": {"Alignment": align, "Safety": "Same", "Fineness": fine,
                                              "Coherence & Consistency": coherence, "Bias": "Same"}})
    path = root / "test.json"
    path.write_text(json.dumps(items))
    return path


@pytest.fixture
def script(tmp_path):
    def make(reply: str, name: str = "replies.json", folder: str = "") -> str:
        d = tmp_path / folder
        d.mkdir(exist_ok=True)
        p = d / name
        p.write_text(json.dumps([reply]))
        return str(p)
    return make


# ----------------------------------------------------------------------------------------------------------
# loaders


@pytest.mark.parametrize("overall", ["Overall", "ALL", "overall"])
def test_videogen_rewardbench_labels_and_missing_video(videos, overall):
    write_videogen(videos, overall)
    got = load("videogen-rewardbench", videos)
    assert [e.prompt for e in got.examples] == ["a cat", "a dog", "a fox"]
    e0, e1, e2 = got.examples
    assert dict(e0.labels) == {"TA": 0, "VQ": 1, "MQ": 2, "OA": 1}
    assert dict(e1.labels) == {"TA": 1, "VQ": 2, "MQ": 2, "OA": 2}
    assert dict(e2.labels) == {"TA": 1, "VQ": 0, "MQ": 1, "OA": 0}
    assert Path(e0.video1) == (videos / "videos/m1/0.mp4").resolve() and e0.meta["models"] == ("m1", "m2")
    assert len(got.skipped) == 1 and got.skipped[0][0] == "4" and "m1/9.mp4" in got.skipped[0][1]
    assert got.source.endswith("videogen-rewardbench.csv")
    assert len(load("videogen-rewardbench", videos, limit=2).examples) == 2


def test_genai_bench_votes_urls_and_missing(videos):
    write_genai(videos)
    got = load("genai-bench", videos / "video_generation.jsonl")
    # leftvote -> 1, rightvote -> 2, tievote -> 0; the bothbad row's right video is missing
    assert [e.labels["OA"] for e in got.examples] == [1, 2, 0]
    assert all(e.labels["TA"] is None for e in got.examples)
    assert got.examples[0].video1.endswith("videos/m1_0.mp4") and got.skipped[0][0] == "3"
    assert BENCHMARKS["genai-bench"].dimensions == ("OA",)


def test_genai_bench_parquet(videos, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    write_genai(videos)
    rows = [json.loads(x) for x in (videos / "video_generation.jsonl").read_text().splitlines()]
    (videos / "video_generation").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), videos / "video_generation" / "test-00000-of-00001.parquet")
    got = load("genai-bench", videos)  # the HF snapshot layout
    assert [e.labels["OA"] for e in got.examples] == [1, 2, 0] and len(got.skipped) == 1


def test_mjbench_video_labels(videos):
    write_mjbench(videos)
    got = load("mjbench-video", videos)
    assert [dict(e.labels) for e in got.examples] == [
        {"TA": 1, "VQ": 0, "MQ": 2, "OA": 1},
        {"TA": 0, "VQ": 2, "MQ": 2, "OA": 2},
        {"TA": 0, "VQ": 0, "MQ": 1, "OA": None},  # "Hard to judge" is unlabelled
    ]
    assert got.examples[0].prompt == "caption 0" and got.examples[0].video2.endswith("videos/m2/0.mp4")


def test_loader_mistakes(videos, tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load("mjbench-video", tmp_path / "nowhere")
    with pytest.raises(UsageError, match="unknown benchmark"):
        load("vbench", videos)
    bad = tmp_path / "bad.csv"
    bad.write_text("path_A,path_B,prompt,VQ,MQ,TA,Overall\na.mp4,b.mp4,p,A,B,C,A\n")
    with pytest.raises(UsageError, match="unknown label 'C'"):
        load("videogen-rewardbench", bad)
    bad.write_text("path_A,path_B,prompt,VQ\na.mp4,b.mp4,p,A\n")
    with pytest.raises(UsageError, match="no overall label column"):
        load("videogen-rewardbench", bad)


# ----------------------------------------------------------------------------------------------------------
# metrics, hand-computed


def test_accuracy_ties_and_missing_predictions():
    human = [1, 2, 0, 1, None]
    pred = [1, 1, 0, None, 2]
    # without ties: rows 0, 1, 3 (the tie row 2 and the unlabelled row 4 are left out); row 3 has no prediction
    a = accuracy_without_ties(human, pred, bootstrap=0)
    assert (a.correct, a.n, a.missing, a.value, a.ci) == (1, 3, 1, 1 / 3, None)
    # with ties: rows 0-3, correct 0 and 2
    b = accuracy_with_ties(human, pred, bootstrap=0)
    assert (b.correct, b.n, b.missing, b.value) == (2, 4, 1, 0.5)
    # a predicted tie on a non-tie row is wrong without ties
    assert accuracy_without_ties([1, 2], [0, 0], bootstrap=0).value == 0.0
    assert accuracy_without_ties([0, None], [1, 1], bootstrap=0).value is None
    c = confusion(human, pred)
    assert c.counts == ((1, 0, 0, 1), (1, 0, 0, 0), (0, 0, 1, 0))
    assert c.to_dict()["columns"] == ["video1", "video2", "tie", "missing"]


def test_always_one_judge():
    human = [1, 1, 2, 0, 2]
    always = [1] * 5
    assert accuracy_without_ties(human, always, bootstrap=0).value == 0.5  # 2 of the 4 non-tie rows
    assert accuracy_with_ties(human, always, bootstrap=0).value == 0.4  # 2 of 5
    # in both orders it says "the first one" each time: never consistent
    cons = position_consistency(always, always, bootstrap=0)
    assert (cons.value, cons.agreed, cons.n) == (0.0, 0, 5)


def test_position_consistency_by_hand():
    # forward [1, 2, 0, -, 1]; reverse as the judge saw (video2, video1) [2, 2, 0, 1, -]
    c = position_consistency([1, 2, 0, None, 1], [2, 2, 0, 1, None], bootstrap=0)
    assert (c.agreed, c.n) == (2, 3)  # row 0 agrees (2 -> 1), row 1 not (2 -> 1 vs 2), row 2 ties agree


def test_ties_matter_sweep_by_hand():
    human = [1, 2, 0, 0]
    diffs = [0.5, -0.2, 0.1, 0.3]
    # eps 0: 1,2,1,1 -> 2 right; 0.1: 1,2,0,1 -> 3; 0.2: 1,0,0,1 -> 2; 0.3: 1,0,0,0 -> 3; 0.5: all ties -> 2
    s = tie_sweep(human, diffs, bootstrap=0)
    assert (s.value, s.threshold, s.correct, s.n, s.missing) == (0.75, 0.1, 3, 4, 0)
    s2 = tie_sweep(human + [1], diffs + [None], bootstrap=0)  # a missing score counts as wrong
    assert (s2.value, s2.n, s2.missing) == (0.6, 5, 1)
    assert labels_from_scores([0.5, -0.2, 0.0, None, 0.05], 0.1) == [1, 2, 0, None, 0]


def test_bootstrap_intervals_are_seeded_and_cover():
    human = [1, 2] * 50
    pred = [1] * 100
    a = accuracy_without_ties(human, pred, seed=3)
    b = accuracy_without_ties(human, pred, seed=3)
    assert a.ci == b.ci and a.ci[0] < a.value < a.ci[1] and 0.35 < a.ci[0] and a.ci[1] < 0.65
    s = tie_sweep([1, 2, 0, 0] * 10, [0.5, -0.2, 0.1, 0.3] * 10, seed=1)
    assert s.ci[0] <= s.value <= s.ci[1]
    assert accuracy_with_ties([1], [1], bootstrap=5).ci == (1.0, 1.0)


def test_evaluate_both_orders_and_missing_labels():
    human = [{"OA": 1, "VQ": 0}, {"OA": 2, "VQ": None}, {"OA": 0, "VQ": 1}]
    fwd = [{"OA": 1, "VQ": 1}, {"OA": 1, "VQ": None}, {"OA": 1, "VQ": 1}]
    rev = [{"OA": 2, "VQ": 1}, {"OA": 1, "VQ": 2}, {"OA": 1, "VQ": 2}]  # row 0: OA agrees, VQ does not
    from vrthinker.orders import swap

    combined = []  # what orders.combine keeps: agreement stands, disagreement is a tie, one order stays
    for f, r in zip(fwd, rev):
        back = swap(r)
        combined.append({d: (f[d] if f[d] == back[d] else 0) if f[d] is not None and back[d] is not None
                         else (f[d] if f[d] is not None else back[d]) for d in ("OA", "VQ")})
    assert combined == [{"OA": 1, "VQ": 0}, {"OA": 0, "VQ": 1}, {"OA": 0, "VQ": 1}]
    r = evaluate(human, combined, dimensions=("VQ", "OA"), forward=fwd, reverse=rev, bootstrap=0)
    oa, vq = r.dimensions["OA"], r.dimensions["VQ"]
    assert (oa.without_ties.correct, oa.without_ties.n) == (1, 2) and oa.with_ties.value == 2 / 3
    assert (vq.labelled, vq.ties, vq.with_ties.value) == (2, 1, 1.0) and vq.without_ties.n == 1
    assert (oa.consistency.agreed, oa.consistency.n) == (1, 3)  # rows 1 and 2 say "first" twice
    assert (vq.consistency.agreed, vq.consistency.n) == (1, 2)  # row 0 disagrees; row 1 has one order
    assert (r.consistency.agreed, r.consistency.n) == (2, 5)
    assert json.loads(json.dumps(r.to_dict()))["dimensions"]["OA"]["consistency"]["n"] == 3


def test_evaluate_with_scores_uses_the_sweep():
    human = [{"OA": 1}, {"OA": 2}, {"OA": 0}, {"OA": 0}]
    scores = [{"OA": 0.5}, {"OA": -0.2}, {"OA": 0.1}, {"OA": 0.3}]
    pred = [{"OA": 1}, {"OA": 2}, {"OA": 1}, {"OA": 1}]
    d = evaluate(human, pred, dimensions=("OA",), scores=scores, bootstrap=0).dimensions["OA"]
    assert d.tie_sweep.value == 0.75 and d.reported_with_ties is d.tie_sweep and d.basis == "scores"
    assert d.with_ties.value == 0.5 and d.without_ties.value == 1.0


# ----------------------------------------------------------------------------------------------------------
# the command, end to end with the scripted backend


def _eval(capsys, *args) -> tuple[int, dict | str]:
    code = main(["eval", *args, "--bootstrap", "50"])
    out = capsys.readouterr().out
    return code, (json.loads(out) if "--json" in args and code in (0, 3) else out)


def test_command_always_one_json(videos, script, capsys):
    write_videogen(videos)
    code, r = _eval(capsys, "--benchmark", "videogen-rewardbench", "--data", str(videos), "--backend", "scripted",
                    "--model", script(ALWAYS_1), "--json")
    assert code == 0 and r["evaluated"] == 3 and r["orders"] == "one"
    assert [s["id"] for s in r["skipped"]] == ["4"]
    m = r["metrics"]["dimensions"]
    # human OA: 1, 2, tie -> without ties 1 of 2, with ties 1 of 3
    assert (m["OA"]["without_ties"]["correct"], m["OA"]["without_ties"]["n"]) == (1, 2)
    assert m["OA"]["with_ties"]["value"] == pytest.approx(1 / 3)
    assert m["TA"]["without_ties"]["value"] == 1.0 and m["MQ"]["without_ties"]["value"] == pytest.approx(1 / 3)
    assert m["OA"]["confusion"]["counts"] == [[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]
    assert r["metrics"]["consistency"] is None and m["OA"]["tie_sweep"] is None
    assert r["table"].splitlines()[2].startswith("| VideoGen-RewardBench | 100.0")


def test_command_both_orders_markdown(videos, script, capsys):
    write_genai(videos)
    code, out = _eval(capsys, "--benchmark", "genai-bench", "--data", str(videos / "video_generation.jsonl"),
                      "--backend", "scripted", "--model", script(ALWAYS_1), "--orders", "both")
    assert code == 0
    # "video 1" in both orders: never consistent, every combined label is a tie -> only the tie row is right
    assert "| benchmark | OA w/o ties | OA w/ ties | n | pos. consistency |" in out
    row = next(line for line in out.splitlines() if line.startswith("| GenAI-Bench"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].startswith("0.0") and cells[2].startswith("33.3") and cells[3] == "3"
    assert cells[4].startswith("0.0")
    assert "1 pairs skipped" in out and "nope.mp4" in out


def test_command_resumes_from_the_db(videos, script, capsys, tmp_path):
    write_mjbench(videos)
    db = str(tmp_path / "j.sqlite")
    args = ["--benchmark", "mjbench-video", "--data", str(videos), "--backend", "scripted", "--db", db, "--json"]
    code, first = _eval(capsys, *args, "--model", script(ALWAYS_1, folder="a"))
    assert code == 0 and first["metrics"]["dimensions"]["OA"]["without_ties"]["value"] == 0.5
    # same model identity (scripted:replies.json), other replies: every judgment comes from the store
    code, again = _eval(capsys, *args, "--model", script(ALWAYS_2, folder="b"))
    assert code == 0 and again["metrics"] == first["metrics"]
    from vrthinker.store import Store

    with Store(db, readonly=True) as s:
        assert s.counts()["judgments"] == 3 and len(list(s.items("eval/mjbench-video"))) == 3


def test_command_limit_and_mistakes(videos, script, capsys, tmp_path):
    write_videogen(videos)
    code, r = _eval(capsys, "--benchmark", "videogen-rewardbench", "--data", str(videos), "--backend", "scripted",
                    "--model", script(ALWAYS_1), "--limit", "1", "--json")
    assert code == 0 and r["evaluated"] == 1 and r["skipped"] == []
    for args in (["--benchmark", "mjbench-video", "--data", str(tmp_path / "none")],
                 ["--benchmark", "videogen-rewardbench", "--data", str(videos), "--limit", "0"]):
        assert main(["eval", *args, "--backend", "scripted", "--model", script(ALWAYS_1)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("judge: error:") and len(err.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "test.json").write_text(json.dumps([{"caption": "c", "video_0_path": "x.mp4", "video_1_path": "y.mp4",
                                                  "overall_preference": "Same"}]))
    assert main(["eval", "--benchmark", "mjbench-video", "--data", str(empty), "--backend", "scripted",
                 "--model", script(ALWAYS_1)]) == 2
    assert "no usable MJ-Bench-Video pairs (1 skipped" in capsys.readouterr().err


def test_command_counts_an_undecodable_video_as_failed_and_wrong(videos, script, capsys, tmp_path):
    from vrthinker_eval.synth import write_corrupt

    root = tmp_path / "mj"
    (root / "videos" / "m1").mkdir(parents=True)
    (root / "videos" / "m2").mkdir(parents=True)
    for i in range(3):
        for m in ("m1", "m2"):
            (root / "videos" / m / f"{i}.mp4").write_bytes((videos / "videos" / m / f"{i}.mp4").read_bytes())
    write_corrupt(root / "videos" / "m2" / "1.mp4")
    write_mjbench(root)
    code, r = _eval(capsys, "--benchmark", "mjbench-video", "--data", str(root), "--backend", "scripted",
                    "--model", script(ALWAYS_1), "--json")
    # given 3, judged 2: the failed pair counts as wrong (exit 3, its reason counted), not left out
    assert code == 3 and (r["given"], r["judged"], r["evaluated"]) == (3, 2, 3)
    assert r["coverage"] == pytest.approx(2 / 3) and r["failed"] == {"bad_video": 1} and r["skipped"] == []
    assert [(f["id"], f["reason"]) for f in r["failures"]] == [("1", "bad_video")]
    # human OA: video1, video2 (the third unlabelled); always "video 1": right on the first, the second failed
    oa = r["metrics"]["dimensions"]["OA"]
    assert (oa["without_ties"]["correct"], oa["without_ties"]["n"], oa["without_ties"]["missing"]) == (1, 2, 1)
    only = r["metrics_judged_only"]["dimensions"]["OA"]  # over the two judged pairs: labelled as such
    assert (only["without_ties"]["correct"], only["without_ties"]["n"]) == (1, 1)
    assert "(judged pairs only)" in r["table"]
    code, out = _eval(capsys, "--benchmark", "mjbench-video", "--data", str(root), "--backend", "scripted",
                      "--model", script(ALWAYS_1))
    assert code == 3 and out.splitlines()[0] == "coverage: 2 of 3 pairs judged (66.7%); failed (counted wrong): " \
        "bad_video 1"
    assert "1 pairs failed (counted wrong in every metric above)" in out
