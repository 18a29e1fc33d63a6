"""Label probabilities downstream of the model: both orders combined, stored and exported (no model needed)."""
from __future__ import annotations

import json

import pytest

from vrthinker.backends.scripted import ScriptedBackend
from vrthinker.batch import PairRow, identify, judged_items, run_batch
from vrthinker.judge import Judge
from vrthinker.orders import combine
from vrthinker.store import Store
from vrthinker.testing import GivenProbabilities
from vrthinker.verdict import Verdict

ANSWER = "<Think>steady</Think><Answer>TA=1, VQ=0, MQ=2, OA=1</Answer>"
P = {"TA": {"1": 0.9, "2": 0.05, "0": 0.05}, "VQ": {"1": 0.3, "2": 0.3, "0": 0.4},
     "MQ": {"1": 0.2, "2": 0.7, "0": 0.1}, "OA": {"1": 0.55, "2": 0.4, "0": 0.05}}
# the reverse order (v2, v1): TA agrees strongly, OA flips to "the first shown" (v2) being better
R = {"TA": {"1": 0.1, "2": 0.85, "0": 0.05}, "VQ": {"1": 0.3, "2": 0.3, "0": 0.4},
     "MQ": {"1": 0.6, "2": 0.3, "0": 0.1}, "OA": {"1": 0.9, "2": 0.05, "0": 0.05}}
R_ANSWER = "<Answer>TA=2, VQ=0, MQ=1, OA=1</Answer>"


def verdict(labels, probs):
    return Verdict(labels=labels, reason=None, probabilities=probs, mass={d: 0.9 for d in probs})


def test_combine_averages_the_orders_mapped_back_and_measures_their_distance():
    f = verdict({"TA": 1, "VQ": 0, "MQ": 2, "OA": 1}, P)
    r = verdict({"TA": 2, "VQ": 0, "MQ": 1, "OA": 1}, R)
    v = combine(f, r)
    assert v.probabilities["TA"] == pytest.approx({"1": 0.875, "2": 0.075, "0": 0.05})
    assert v.probabilities["OA"] == pytest.approx({"1": 0.3, "2": 0.65, "0": 0.05})
    # the default rule is unchanged: OA disagrees between the orders, so it is a tie
    assert dict(v.labels) == {"TA": 1, "VQ": 0, "MQ": 2, "OA": 0}
    tv = [0.05, 0.0, 0.1, 0.5]  # TA, VQ, MQ, OA: half the L1 distance, reverse mapped back
    assert v.extra["tv_distance"] == pytest.approx(sum(tv) / 4)
    assert v.extra["consistency"] == 0.75
    soft = combine(f, r, rule="probabilities")
    assert dict(soft.labels) == {"TA": 1, "VQ": 0, "MQ": 2, "OA": 2}  # OA: the averaged argmax
    assert soft.extra["combine"] == "probabilities"


def test_combine_without_probabilities_is_as_before():
    f = Verdict(labels={"TA": 1, "VQ": 1, "MQ": 1, "OA": 1}, reason=None)
    v = combine(f, f)
    assert v.probabilities is None and "tv_distance" not in v.extra and v.to_dict()["probabilities"] is None


def test_a_judge_records_probabilities_and_the_store_keeps_them(tmp_path, clips):
    backend = GivenProbabilities(ScriptedBackend([ANSWER]), [[P]])
    judge = Judge(backend, "card")
    v = judge.compare(clips["a"], clips["b"], "shapes move")
    assert v.probabilities == P and v.turns[-1].probabilities == P and set(v.mass) == set(P)
    d = json.loads(json.dumps(v.to_dict()))
    assert d["probabilities"]["OA"] == {"1": 0.55, "2": 0.4, "0": 0.05} and d["mass"]["TA"] == 0.99
    # stored, then read back and combined: the probabilities survive; an old stored verdict has none
    rows = [PairRow("x", str(clips["a"]), str(clips["b"]), "shapes move", 1, 0)]
    with Store(str(tmp_path / "j.sqlite")) as store:
        both = Judge(GivenProbabilities(ScriptedBackend([ANSWER]), [[P], [R]]), "card")
        run_batch(both, rows, store, job="j", orders="both", ident=identify(both))
        item = next(iter(judged_items(store, "j")))
        assert item.verdict.per_order[0].probabilities == P
        exported = item.to_dict()
        assert exported["probabilities"]["TA"]["1"] == pytest.approx(0.9 / 2 + 0.85 / 2)
        assert exported["per_order"][1]["probabilities"] == R
        store.db.execute("UPDATE judgments SET verdict = json_remove(verdict, '$.probabilities', '$.mass')")
        old = next(iter(judged_items(store, "j")))
        assert old.verdict.probabilities is None and old.to_dict()["probabilities"] is None


def test_pair_confidence_is_the_winners_probability_and_min_confidence_filters_on_it(tmp_path, clips):
    from vrthinker.pairs import build_pairs

    judge = Judge(GivenProbabilities(ScriptedBackend([ANSWER]), [[P]]), "card")
    rows = [PairRow("x", str(clips["a"]), str(clips["b"]), "shapes move", 1, 0)]
    with Store(str(tmp_path / "j.sqlite")) as store:
        run_batch(judge, rows, store, job="j", orders="one", ident=identify(judge))
        ta = build_pairs(store, "TA", job="j").pairs
        mq = build_pairs(store, "MQ", job="j").pairs
        assert [p.confidence for p in ta] == [0.9] and ta[0].chosen == str(clips["a"])
        assert [p.confidence for p in mq] == [0.7] and mq[0].chosen == str(clips["b"])
        kept = build_pairs(store, "MQ", job="j", min_confidence=0.8)
        assert not kept.pairs and kept.skipped.get("below_margin") == 1


def test_report_draws_a_bar_per_label_from_the_averaged_probabilities(tmp_path, clips):
    from vrthinker.report import write_report

    judge = Judge(GivenProbabilities(ScriptedBackend([ANSWER]), [[P], [R]]), "card")
    rows = [PairRow("x", str(clips["a"]), str(clips["b"]), "<b>shapes</b> move", 1, 0)]
    out = tmp_path / "r.html"
    with Store(str(tmp_path / "j.sqlite")) as store:
        run_batch(judge, rows, store, job="j", orders="both", ident=identify(judge))
        write_report(store, str(out), job="j")
    page = out.read_text()
    assert "probabilities (both orders averaged)" in page
    # TA: forward 0.9, reverse mapped back 0.85 -> 0.875 for video 1
    assert "width:87.5%'></span></span>0.88" in page and "width:7.5%'></span></span>0.08" in page
    assert "<b>shapes</b>" not in page and "&lt;b&gt;shapes&lt;/b&gt;" in page


def test_the_table_shows_each_labels_probability_and_combine_needs_both_orders(clips, capsys):
    from rich.console import Console

    from vrthinker.cli import main, render_verdict

    f = verdict({"TA": 1, "VQ": 0, "MQ": 2, "OA": 1}, P)
    r = verdict({"TA": 2, "VQ": 0, "MQ": 1, "OA": 1}, R)
    console = Console(record=True, width=120)
    render_verdict(combine(f, r, rule="probabilities"), console)
    text = console.export_text()
    rows = {line.split()[1]: line.split() for line in text.splitlines() if line.startswith("│ ")
            and line.split()[1] in P}
    assert rows["TA"][-2] == "0.88" and rows["OA"][-2] == "0.65" and rows["VQ"][-2] == "0.40"
    assert "mean total-variation distance 0.163; labels by probabilities" in text
    console = Console(record=True, width=120)
    render_verdict(Verdict(labels={"OA": 1}, reason=None), console)
    assert " P " not in console.export_text()
    code = main([str(clips["a"]), str(clips["b"]), "--prompt", "p", "--combine", "probabilities",
                 "--backend", "metrics"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--orders both" in err


def test_a_training_tool_turn_keeps_its_recommendation_probabilities(clips):
    rec = ('<synthesis>s</synthesis><think>t</think><Recommend Answer>TA=0, VQ=1, MQ=0, OA=2, CF=2</Recommend Answer>'
           '<tool_call>{"name": "select_frames", "arguments": {"target_frames": [3, 40]}}</tool_call>')
    final = "<synthesis>s</synthesis><think>t</think><final answer>TA=1, VQ=1, MQ=2, OA=2</final answer>"
    interim = {"OA": {"1": 0.2, "2": 0.5, "0": 0.3}, "TA": {"1": 0.1, "2": 0.1, "0": 0.8}}
    judge = Judge(GivenProbabilities(ScriptedBackend([rec, final]), [[interim, P]]), "training")
    v = judge.compare(clips["a"], clips["b"], "shapes move")
    assert v.turns[0].action == "tool_call" and v.turns[0].probabilities == interim
    assert v.turns[1].probabilities == P and v.probabilities == P


def test_the_weight_free_judge_says_null(clips):
    v = Judge.from_pretrained(None, backend="metrics").compare(clips["a"], clips["b"], "shapes move")
    d = v.to_dict()
    assert v.probabilities is None and d["probabilities"] is None and d["mass"] is None
