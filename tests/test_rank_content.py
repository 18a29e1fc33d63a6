"""Rankings and preference pairs by video content: jobs, stored candidates, merging, confidence, budget."""
from __future__ import annotations

import json
import math
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from vrthinker.cli import main
from vrthinker.pairs import build_pairs
from vrthinker.rank import default_budget, fit_bt, rank
from vrthinker.store import Store

DIMS = ("TA", "VQ", "MQ", "OA")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two folders holding g1.mp4 and g2.mp4 of different content, and a third that copies the first."""
    from vrthinker_eval.synth import render_scene, write_video

    root = tmp_path_factory.mktemp("by-content")
    for name, seeds in (("one", (1, 2)), ("two", (3, 4))):
        (root / name).mkdir()
        for k, (kind, seed) in enumerate(zip(("shapes", "pan"), seeds), 1):
            write_video(root / name / f"g{k}.mp4", render_scene(kind, 64, 48, 8, seed=seed), fps=8)
    write_video(root / "one" / "g3.mp4", render_scene("orbit", 64, 48, 8, seed=5), fps=8)
    shutil.copytree(root / "one", root / "copy")
    return root


@pytest.fixture
def first_wins(tmp_path):
    p = tmp_path / "replies.json"
    p.write_text(json.dumps(["<Answer>TA=1, VQ=1, MQ=1, OA=1</Answer>"]))
    return str(p)


def scripted(replies: str) -> list[str]:
    return ["--backend", "scripted", "--model", replies, "--protocol", "card"]


def _rank(db, *args) -> int:
    return main(["rank", "--prompt", "A robot", *args, "--db", str(db), "--json"])


# ----------------------------------------------------------------------------------------------------------
# jobs and stored candidates by content


def test_the_same_names_in_another_folder_are_another_ranking(folders, first_wins, tmp_path, monkeypatch, capsys):
    """Before, the job hashed the prompt and the paths as typed: the second folder's ranking replaced the first."""
    db = tmp_path / "j.sqlite"
    for name in ("one", "two"):
        monkeypatch.chdir(folders / name)
        assert _rank(db, "g1.mp4", "g2.mp4", *scripted(first_wins)) == 0
    capsys.readouterr()
    with Store(db, readonly=True) as store:
        entries = [e for e in store.rankings() if e.dimension == "OA"]
    assert len({e.job for e in entries}) == 2 and len(entries) == 4
    assert {e.candidate for e in entries} == {str(folders / n / f"g{k}.mp4") for n in ("one", "two") for k in (1, 2)}
    assert all(Path(e.candidate).is_absolute() and len(e.sha256 or "") == 64 for e in entries)


def test_the_same_videos_from_a_copy_or_in_another_order_are_the_same_ranking(folders, first_wins, tmp_path,
                                                                              capsys):
    db = tmp_path / "j.sqlite"
    one = [str(folders / "one" / f"g{k}.mp4") for k in (1, 2, 3)]
    copy = [str(folders / "copy" / f"g{k}.mp4") for k in (3, 1, 2)]
    assert _rank(db, *one, *scripted(first_wins)) == 0
    assert _rank(db, *copy, *scripted(first_wins)) == 0
    first, again = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert again["judged"] == 0 and again["reused"] == first["judged"]  # judgments are keyed by content already
    with Store(db, readonly=True) as store:
        entries = [e for e in store.rankings() if e.dimension == "OA"]
    # one job: the copy's ranking replaced the first, under the copy's absolute paths
    assert len({e.job for e in entries}) == 1 and sorted(e.candidate for e in entries) == sorted(copy)


def test_two_names_for_one_video_are_refused(folders, first_wins, tmp_path, capsys):
    db = tmp_path / "j.sqlite"
    code = _rank(db, str(folders / "one" / "g1.mp4"), str(folders / "copy" / "g1.mp4"),
                 *scripted(first_wins))
    err = capsys.readouterr().err
    assert code == 2 and "same video" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_rank_comparisons_export_with_ids_a_person_can_read(folders, first_wins, tmp_path, capsys):
    """Before, a comparison's id was its two absolute paths joined by a tab and its job `rank:<hash>`."""
    db = tmp_path / "j.sqlite"
    cands = [str(folders / "one" / "g1.mp4"), str(folders / "two" / "g1.mp4"), str(folders / "one" / "g2.mp4")]
    assert _rank(db, *cands, *scripted(first_wins), "--schedule", "round_robin") == 0
    first = json.loads(capsys.readouterr().out)
    out = tmp_path / "export.jsonl"
    assert main(["export", "--db", str(db), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and len({r["job"] for r in rows}) == 1
    assert re.fullmatch(r"rank:a-robot-[0-9a-f]{12}", rows[0]["job"])
    names = {"one/g1.mp4": cands[0], "two/g1.mp4": cands[1], "g2.mp4": cands[2]}  # g1.mp4 twice: its folder
    for r in rows:
        assert "\t" not in r["id"] and "/" + str(folders) not in r["id"]
        a, b = r["id"].split(" vs ")
        assert (names[a], names[b]) == (r["video1"], r["video2"])
    pairs = tmp_path / "pairs.jsonl"
    assert main(["pairs", "--db", str(db), "--out", str(pairs), "--no-rankings"]) == 0
    ids = {json.loads(line)["id"] for line in pairs.read_text().splitlines()}
    assert ids and ids <= {r["id"] for r in rows}
    # the stored keys stay what resuming needs: the same command again judges nothing and adds no row
    assert _rank(db, *cands, *scripted(first_wins), "--schedule", "round_robin") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["judged"] == 0 and again["reused"] == first["judged"] == 3
    assert main(["export", "--db", str(db), "--out", str(out)]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


def test_a_prompt_without_words_names_its_job_by_the_hash_alone():
    from vrthinker.tournament import Group, job_name

    assert re.fullmatch(r"rank:[0-9a-f]{12}", job_name(Group("!!! ...", ("a", "b")), ["h1", "h2"]))
    name = job_name(Group("Ein Roboter reitet über_den Mars", ("a",)), ["h"])
    assert name.startswith("rank:ein-roboter-reitet-über-")
    assert job_name(Group("x", ("a",), id="g7"), ["h"]) == "rank:g7"  # a group's own id is kept as given


# ----------------------------------------------------------------------------------------------------------
# pairs merged by content


def test_pairs_from_a_ranking_and_from_judgments_of_copies_merge_by_content(folders, first_wins, tmp_path,
                                                                            monkeypatch, capsys):
    """A ranking by relative paths and a batch over a copy by absolute paths: one pair per pair of videos.
    Before, the ranking's relative paths and the batch's absolute ones never merged: every pair came twice."""
    db = tmp_path / "j.sqlite"
    monkeypatch.chdir(folders / "one")
    assert _rank(db, "g1.mp4", "g2.mp4", "g3.mp4", "--backend", "metrics", "--schedule", "round_robin") == 0
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"id": f"{a}{b}", "video1": str(folders / "copy" / f"g{a}.mp4"),
                                         "video2": str(folders / "copy" / f"g{b}.mp4"), "prompt": "A robot"}) + "\n"
                             for a, b in ((1, 2), (2, 3), (1, 3))))
    assert main(["batch", str(pairs), "--backend", "metrics", "--db", str(db), "--orders", "both"]) == 0
    out = tmp_path / "out.jsonl"
    assert main(["pairs", "--db", str(db), "--out", str(out), "--dimension", "VQ"]) == 0
    capsys.readouterr()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    with Store(db, readonly=True) as store:
        sha = {Path(p).name: store.file_hash(p) for p in (folders / "one").glob("g*.mp4")}
        r = build_pairs(store, "VQ")
    assert rows and all(row["chosen_sha256"] in sha.values() and row["rejected_sha256"] in sha.values()
                        for row in rows)
    by_content = Counter(frozenset((row["chosen_sha256"], row["rejected_sha256"])) for row in rows)
    assert set(by_content.values()) == {1}  # no pair of videos twice, whatever path or source it came by
    assert r.merged + r.contradictions > 0  # the ranking's pairs met the judgments' pairs


def test_contradictions_are_found_by_content_across_paths(tmp_path):
    """A ranking under one path and a judgment under another that prefer opposite videos: both dropped."""
    from vrthinker.store import Item, Judgment

    store = Store(tmp_path / "j.sqlite")
    lab = {"TA": 1, "VQ": 1, "MQ": 1, "OA": 1}
    j = Judgment(key="k", videoA="/x/a.mp4", videoB="/x/b.mp4", hashA="A", hashB="B", prompt="p", model_id="m",
                 revision="", adapter="", protocol="card/1", backend="scripted", labels=lab, reason=None, detail="",
                 reasoning="", verdict={"turns": []}, created=1.0)
    store.record(Item(job="t", item_id="1", position=1, video1="/x/a.mp4", video2="/x/b.mp4", prompt="p",
                      orders="one", status="done", key_forward="k"), [j])
    store.put_ranking("rank:z", "p", "OA", [{"candidate": "/y/b.mp4", "score": 1.0, "uncertainty": 0.1},
                                            {"candidate": "/y/a.mp4", "score": -1.0, "uncertainty": 0.1}],
                      hashes={"/y/a.mp4": "A", "/y/b.mp4": "B"})
    r = build_pairs(store, "OA")
    assert r.pairs == () and r.contradictions == 2
    store.close()


# ----------------------------------------------------------------------------------------------------------
# confidence = P(i beats j) from the fit and its covariance


def _expected(gap: float, var: float) -> float:
    from scipy.integrate import quad

    sd = math.sqrt(var)
    return quad(lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi) / (1 + math.exp(-(gap + sd * z))),
                -12, 12)[0]


@pytest.mark.parametrize("gap,var", [(0.0, 1.0), (1.5, 0.01), (1.5, 4.0), (-2.0, 2.5), (4.0, 0.0)])
def test_p_beats_is_the_win_probability_averaged_over_the_fit(gap, var):
    from vrthinker.rank import p_beats

    assert p_beats(gap, var) == pytest.approx(_expected(gap, var), abs=1e-7)


def test_one_comparison_is_less_sure_than_many_with_the_same_gap():
    from vrthinker.rank import p_beats

    one = fit_bt(2, [(0, 1, 1)])
    many = fit_bt(2, [(0, 1, 1)] * 12 + [(0, 1, 2)] * 3)
    for f in (one, many):
        assert f.scores[0] > f.scores[1]
    p_one = p_beats(one.scores[0] - one.scores[1], one.cov[0, 0] + one.cov[1, 1] - 2 * one.cov[0, 1])
    gap = one.scores[0] - one.scores[1]
    assert 0.5 < p_one < 1 / (1 + math.exp(-gap))  # the uncertainty pulls it towards 0.5
    gap_many = many.scores[0] - many.scores[1]
    p_many = p_beats(gap_many, many.cov[0, 0] + many.cov[1, 1] - 2 * many.cov[0, 1])
    assert p_many > p_one and abs(gap_many - gap) < 0.7  # about the same gap, far more evidence


def test_ranking_pairs_carry_p_beats_with_the_covariance_and_min_confidence_filters(folders, first_wins,
                                                                                   tmp_path, capsys):
    db = tmp_path / "j.sqlite"
    vids = [str(folders / "one" / f"g{k}.mp4") for k in (1, 2, 3)]
    assert _rank(db, *vids, "--backend", "metrics", "--schedule", "round_robin") == 0
    ranking = json.loads(capsys.readouterr().out)
    with Store(db, readonly=True) as store:
        entries = {e.candidate: e for e in store.rankings() if e.dimension == "VQ"}
        r = build_pairs(store, "VQ", rankings=True)
    ranked = [p for p in r.pairs if p.source == "ranking"]
    assert ranked
    for p in ranked:
        w, lo = entries[p.chosen], entries[p.rejected]
        var = w.uncertainty ** 2 + lo.uncertainty ** 2 - 2 * w.covariance[p.rejected]
        assert w.covariance[p.rejected] == pytest.approx(lo.covariance[p.chosen]) and w.covariance[p.rejected] != 0
        assert p.confidence == pytest.approx(_expected(w.score - lo.score, var), abs=1e-6)
        assert p.confidence != pytest.approx(math.tanh((w.score - lo.score) / 2), abs=1e-3)
    assert ranking["standings"]["VQ"]
    cut = max(p.confidence for p in ranked)  # the surest ranking pair passes, the others do not
    out = tmp_path / "out.jsonl"
    assert main(["pairs", "--db", str(db), "--out", str(out), "--dimension", "VQ", "--min-confidence", str(cut)]) == 0
    err = capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(row["confidence"] >= cut for row in rows) and len(rows) < len(r.pairs)
    assert "below margin" in err


# ----------------------------------------------------------------------------------------------------------
# the adaptive schedule's budget, and dimensions the judge cannot label


@pytest.mark.parametrize("n", range(2, 10))
def test_adaptive_never_spends_more_than_round_robin(n):
    names = [f"c{i}" for i in range(n)]

    def judge(a, b):
        return dict.fromkeys(DIMS, 1 if a < b else 2)
    pairs = n * (n - 1) // 2
    assert default_budget(n) <= pairs == default_budget(n, "round_robin")
    for budget in (None, pairs + 5, 1000):
        r = rank(names, judge, budget=budget)
        assert r.comparisons <= pairs
        if r.comparisons == pairs:  # a budget of every pair once judges every pair once
            assert Counter(frozenset((h.a, h.b)) for h in r.history).most_common(1)[0][1] == 1
            assert r.order() == sorted(names)


def test_cli_three_videos_take_three_comparisons_like_round_robin(folders, first_wins, tmp_path, capsys):
    """Before, the adaptive schedule spent ceil(3 log2 3) = 5 comparisons where round robin takes 3."""
    vids = [str(folders / "one" / f"g{k}.mp4") for k in (1, 2, 3)]
    for schedule in ("adaptive", "round_robin"):
        assert _rank(tmp_path / f"{schedule}.sqlite", *vids, *scripted(first_wins),
                     "--schedule", schedule) == 0
    adaptive, robin = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert adaptive["comparisons"] == robin["comparisons"] == 3 and adaptive["judged"] == 3


def test_a_dimension_the_judge_cannot_label_gets_no_table_but_a_reason(folders, tmp_path, capsys):
    """The weight-free judge never labels TA: before, the table ranked every candidate at 0.00 +- 2.00."""
    db = tmp_path / "j.sqlite"
    vids = [str(folders / "one" / f"g{k}.mp4") for k in (1, 2, 3)]
    assert main(["rank", "--prompt", "A robot", *vids, "--backend", "metrics", "--db", str(db)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "TA Text Alignment: no ranking: the judge gave no TA label in any of the 3 comparisons" in out
    assert out.count("Text Alignment") == 1 and "Visual Quality" in out  # no TA table, the others are there
    assert _rank(db, *vids, "--backend", "metrics") == 0
    g = json.loads(capsys.readouterr().out)
    assert set(g["standings"]) == {"VQ", "MQ", "OA"} and "TA" not in g["dimensions"]
    assert g["unranked"] == {"TA": "the judge gave no TA label in any of the 3 comparisons"}
    with Store(db, readonly=True) as store:
        assert {e.dimension for e in store.rankings()} == {"VQ", "MQ", "OA"}
