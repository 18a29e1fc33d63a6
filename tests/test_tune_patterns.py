"""Failure patterns: a planted flicker in every rejected video is found; random choices over the same videos
report nothing; too few selections say so."""
import json
import random

import numpy as np
import pytest

from dqa.cli import main
from dqa.tune import patterns as pt
from dqa.tune.selections import Selection, add, all_selections, normalize, open_store

PAIRS = 12


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """PAIRS scenes, each as a clean clip and the same clip with brightness flicker (+-12 grey levels)."""
    from vrthinker_eval.synth import render_scene, write_video

    d = tmp_path_factory.mktemp("flicker")
    out = []
    for k in range(PAIRS):
        frames = render_scene(("shapes", "pan", "orbit")[k % 3], 128, 80, 24, seed=10 + k)
        flicker = frames.astype(np.int16)
        flicker[::2] += 12
        flicker[1::2] -= 12
        clean = write_video(d / f"clean{k}.mp4", frames, fps=12)
        bad = write_video(d / f"flicker{k}.mp4", np.clip(flicker, 0, 255).astype(np.uint8), fps=12)
        out.append((str(clean), str(bad)))
    return out


@pytest.fixture(scope="module")
def db(tmp_path_factory, pairs):
    """Every rejected video is the flickering one (shown first or second, alternately)."""
    path = str(tmp_path_factory.mktemp("db") / "db.sqlite")
    with open_store(path) as store:
        recs = []
        for k, (clean, bad) in enumerate(pairs):
            a, b, chosen = (clean, bad, "a") if k % 2 else (bad, clean, "b")
            recs.append(normalize(f"scene {k}", a, b, chosen, "VQ"))
        add(store, recs)
    return path


def test_planted_flicker_is_found(db, capsys):
    with open_store(db) as store:
        report = pt.find(store, all_selections(store))
    assert report.selections == PAIRS and not report.note and report.tests > 0
    flicker = [p for p in report.patterns if p.measure == "flicker"]
    assert {p.dimension for p in flicker} == {"all", "VQ"}
    for p in flicker:
        assert p.direction == "higher" and p.support == PAIRS and p.n == PAIRS and p.ratio > 10
        assert p.p_value * report.tests < pt.ALPHA
    assert "rejected videos: flicker higher" in flicker[0].describe() and f"{PAIRS} of {PAIRS}" in flicker[0].describe()
    # the measures were kept by content: a second look measures nothing again
    with open_store(db) as store:
        n = store.db.execute("SELECT count(*) FROM video_measures").fetchone()[0]
        assert n == 2 * PAIRS
        assert pt.find(store, all_selections(store), measure=_refuse).patterns == report.patterns
    assert main(["patterns", "--db", db]) == 0
    out = capsys.readouterr().out
    assert f"{PAIRS} selection(s) measured" in out and "rejected videos: flicker higher" in out
    assert main(["patterns", "--db", db, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any(p["measure"] == "flicker" and p["support"] == PAIRS for p in doc["patterns"])


def _refuse(path):
    raise AssertionError(f"measured again: {path}")


def test_random_choices_over_the_same_videos_give_nothing(db):
    """The same pairs, the chosen side drawn at random: no measure separates rejected from chosen."""
    with open_store(db) as store:
        planted = all_selections(store)
        for seed in range(3):
            rng = random.Random(seed)
            shuffled = [Selection(s.id, s.prompt, s.video_a, s.video_b, s.hash_a, s.hash_b, rng.choice("ab"),
                                  s.dimension) for s in planted]
            report = pt.find(store, shuffled, measure=_refuse)
            assert report.patterns == () and report.tests > 0 and not report.note


def test_too_thin_says_so(db):
    with open_store(db) as store:
        report = pt.find(store, all_selections(store)[:pt.MIN_SUPPORT - 1], measure=_refuse)
    assert report.patterns == () and report.tests == 0 and report.note.startswith("too thin:")


def test_sign_test_and_new_patterns():
    assert pt.sign_test(12, 12) == pytest.approx(2 / 4096)
    assert pt.sign_test(6, 12) == 1.0 and pt.sign_test(0, 0) == 1.0
    a = pt.Pattern("all", "all", "flicker", "higher", 3.0, 12, 12, 0.001, 1.0)
    b = pt.Pattern("VQ", "all", "noise_sigma", "higher", 2.0, 10, 12, 0.01, 1.0)
    assert pt.new_patterns([a, b], [a.to_dict()]) == [b]


def test_since_a_run_looks_at_later_selections_only(db, capsys):
    import time

    with open_store(db) as store:
        with store.transaction():
            run = store.db.execute("INSERT INTO tune_runs (base_model, adapter, status, first_id, last_id, started) "
                                   "VALUES ('m', 'out', 'done', 1, 6, ?)", (time.time(),)).lastrowid
    assert main(["patterns", "--db", db, "--since", str(run), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["selections"] == PAIRS - 6 and doc["patterns"] == [] and doc["note"].startswith("too thin")


def test_model_confidence_is_agreement_on_the_latest_validation_selections(clips):
    """The judge's final label against the person's on each validation selection; confidence keeps the latest
    ones (by selection id); a verdict without label probabilities leaves the mean probability unknown."""
    from dqa.tune.train import agreement_details, confidence
    from vrthinker.backends.scripted import ScriptedBackend
    from vrthinker.judge import Judge

    judge = Judge(ScriptedBackend(["<Answer>TA=1, VQ=1, MQ=2, OA=1</Answer>"]), "card")
    sels = [Selection(i, "p", str(clips["a"]), str(clips["b"]), "ha", "hb", chosen, dim)
            for i, (chosen, dim) in enumerate([("a", "OA"), ("b", "OA"), ("b", "MQ"), ("a", "VQ")], start=1)]
    outcomes = agreement_details(judge, sels, judge.profile)
    assert [o["agreed"] for o in outcomes] == [True, False, True, True]
    assert all(o["probability"] is None for o in outcomes)
    assert confidence(outcomes) == {"agreement": 0.75, "n": 4, "mean_probability": None, "with_probability": 0}
    assert confidence(outcomes, window=3)["agreement"] == 2 / 3  # ids 2, 3, 4
    with_p = [dict(o, probability=p) for o, p in zip(outcomes, (0.9, 0.2, 0.6, None))]
    assert confidence(with_p)["mean_probability"] == pytest.approx((0.9 + 0.2 + 0.6) / 3)
    assert confidence([]) is None
