"""The tuner's rows from sampled conversations, and its split by question."""
import re

import pytest

from dqa.tune import dataset as ds
from dqa.tune import sampling
from dqa.tune import split as qs
from dqa.tune.selections import Selection, add, all_selections, normalize, open_store
from vrthinker.backends.base import Sampling
from vrthinker.backends.scripted import ScriptedBackend
from vrthinker.judge import Judge
from vrthinker.parsing import parse_answer

TOOL3 = '<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [3]}}</tool_call>'
TOOL5 = '<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [5]}}</tool_call>'


def says(v: int) -> str:
    """A reply whose reasoning leads to video `v` on every dimension, and whose answer says so."""
    return f"<Think>Video {v} is better on every count</Think><Answer>TA={v}, VQ={v}, MQ={v}, OA={v}</Answer>"


GREEDY = [TOOL3, says(1)]
SAMPLES = [[TOOL3, says(2)],  # parts from the greedy one at turn 2
           [says(2)],  # answers at once: parts at turn 1
           [TOOL5, says(1)],
           [TOOL5, "<Think>hard to say</Think>"]]  # no answer


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "db.sqlite")


def _sel(clips, chosen="a", dim="OA", prompt="A robot"):
    return normalize(prompt, str(clips["a"]), str(clips["b"]), chosen, dim)


def _consistent(text: str) -> bool:
    """The reasoning's video is the one its answer names (the scripted replies say which in words)."""
    named = re.findall(r"Video (\d) is better", text)
    labels = parse_answer(text)
    return not labels or not named or set(labels.values()) == {int(named[-1])}


def test_scripted_samples_differ_and_seed_decides(clips):
    """A sampled session follows a script picked by its seed: the same seed, the same conversation."""
    b = ScriptedBackend(GREEDY, samples=SAMPLES)
    picks = set()
    for seed in range(12):
        one, two = b.new_session(), b.new_session()
        one.set_sampling(Sampling(0.7, seed))
        two.set_sampling(Sampling(0.7, seed))
        first = one.generate([], [], 100).text
        assert two.generate([], [], 100).text == first
        picks.add(first)
    assert len(picks) > 1
    assert b.new_session().generate([], [], 100).text == GREEDY[0]  # no sampling: the greedy script


def test_rows_from_sampled_conversations(clips, db):
    """Chosen conversations end in the person's label, rejected ones in the other, and no chosen text
    contradicts its answer; the row is the turn where the two part ways, as the judge asked it."""
    with open_store(db) as store:
        add(store, [_sel(clips, "ab"[k % 2], ("OA", "VQ", "TA", "MQ")[k % 4], prompt=f"prompt {k}")
                    for k in range(8)])
        sels = all_selections(store)
        backend = ScriptedBackend(GREEDY, samples=SAMPLES)
        judge = Judge(backend, "card")
        built = sampling.build(store, judge.profile, sels, judge=judge, samples=4, temperature=0.7, seed=3)
        kinds = built.kind_counts
        assert kinds["sampled"] >= 4 and sum(kinds.values()) == 8 and kinds["label_swap"] == 0
        for row, meta in zip(built.rows, built.meta):
            s = next(x for x in sels if x.id == meta["selection_id"])
            assert meta["kind"] == "sampled" and not meta["synthetic"]
            assert parse_answer(meta["chosen_final"])[s.dimension] == s.label
            assert parse_answer(meta["rejected_final"])[s.dimension] == 3 - s.label
            chosen = row["chosen"][0]["content"]
            assert chosen != row["rejected"][0]["content"]
            assert _consistent(chosen) and _consistent(meta["chosen_final"])
            if parse_answer(chosen):  # parted at the answer: the chosen reply itself answers the person's way
                assert parse_answer(chosen)[s.dimension] == s.label
            t = meta["parting_turn"]
            # the prompt is the request the judge was given at that turn, by its own turn loop
            asked = [c for sess in backend.sessions for c in sess.calls if len(c[0]) == len(row["prompt"])]
            assert any(c[0] == row["prompt"] for c in asked)
            assert len(row["prompt"]) == 2 * t
        assert {m["parting_turn"] for m in built.meta} == {1, 2}
        # where a pair parts only at its answers it is preferred: both completions are whole final answers
        for row, meta in zip(built.rows, built.meta):
            if meta["parting_turn"] == 2:
                assert parse_answer(row["chosen"][0]["content"]) and parse_answer(row["rejected"][0]["content"])
        pairs_at_answers = sum(m["parting_turn"] == 2 for m in built.meta)
        assert pairs_at_answers == 5  # greedy-first choice would give 4: selection 6 has a later-parting pair
        # deterministic for a seed: a second build replays the stored samples, a new store gives the same rows
        again = sampling.build(store, judge.profile, sels, judge=Judge(ScriptedBackend(["x"]), "card"),
                               samples=4, temperature=0.7, seed=3)
        assert [r["chosen"] for r in again.rows] == [r["chosen"] for r in built.rows]
        n_stored = store.db.execute("SELECT count(*) FROM tune_samples").fetchone()[0]
        assert n_stored == 8 * 3
    with open_store(db + "2") as other:
        add(other, [_sel(clips, "ab"[k % 2], ("OA", "VQ", "TA", "MQ")[k % 4], prompt=f"prompt {k}")
                    for k in range(8)])
        fresh = sampling.build(other, judge.profile, all_selections(other),
                               judge=Judge(ScriptedBackend(GREEDY, samples=SAMPLES), "card"), seed=3)
        assert [r["rejected"] for r in fresh.rows] == [r["rejected"] for r in built.rows]


def test_no_row_without_both_labels_unless_label_swap(clips, db):
    """Where every sample reaches the person's label there is nothing to reject: no row (with why), or
    with allow_label_swap a synthetic row built the old way."""
    with open_store(db) as store:
        add(store, [_sel(clips, "a", "OA")])
        sels = all_selections(store)
        agree = Judge(ScriptedBackend([says(1)], samples=[[TOOL3, says(1)], [says(1)]]), "card")
        built = sampling.build(store, agree.profile, sels, judge=agree, samples=3)
        assert built.rows == [] and built.kind_counts == {"sampled": 0, "label_swap": 0, "none": 1}
        assert "3 conversation(s): 3 the person's video" in built.kinds[0][2]
        assert "the other video's label" in built.kinds[0][2]
        swapped = sampling.build(store, agree.profile, sels, judge=agree, samples=3, allow_label_swap=True)
        assert swapped.kind_counts["label_swap"] == 1
        [meta] = swapped.meta
        assert meta["synthetic"] and meta["kind"] == "label_swap"
        assert swapped.rows[0]["rejected"][0]["content"] == says(1).replace("OA=1", "OA=2")
        # a backend that cannot sample says so in one line
        from vrthinker.errors import UsageError

        class Plain(ScriptedBackend):
            def new_session(self):
                s = super().new_session()
                s.set_sampling = None
                return s

        with open_store(db + "3") as other:
            add(other, [_sel(clips, "a", "OA")])
            plain = Judge(Plain([says(1)]), "card")
            with pytest.raises(UsageError, match="cannot sample"):
                sampling.build(other, plain.profile, all_selections(other), judge=plain, samples=2)


def test_truncation_rule_applies_to_samples(clips, db):
    """A sampled conversation past --max-length ends at token_limit, as the judge would: it reaches no label."""
    from vrthinker.backends.base import Reply

    with open_store(db) as store:
        add(store, [_sel(clips)])
        [s] = all_selections(store)
        ds.save_conversation(store, s.id, "j", [Reply(says(2), new_tokens=10, prefill_tokens=900)])
        long = [Reply(TOOL3, new_tokens=10, prefill_tokens=900), Reply(TOOL5, new_tokens=10, prefill_tokens=1500),
                Reply(says(1), new_tokens=10, prefill_tokens=2100)]
        sampling.save_sample(store, s.id, "j", 1, 0.7, 0, long)
        from vrthinker.protocol import Profile

        profile = Profile.load("card")
        whole = sampling.build(store, profile, [s], identity="j", samples=2)
        assert whole.kind_counts["sampled"] == 1 and whole.meta[0]["parting_turn"] == 1
        cut = sampling.build(store, profile, [s], identity="j", samples=2, max_length=1500)
        assert cut.kind_counts["none"] == 1 and "no label" in cut.kinds[0][2]


def _selection(i, prompt, ha, hb, dim="OA", chosen="a"):
    return Selection(i, prompt, "a.mp4", "b.mp4", ha, hb, chosen, dim)


def test_split_by_question_is_stable_and_keeps_a_pair_together():
    """Both dimensions of one pair (either way round) fall on one side, and a question's side never changes
    as selections are added."""
    base = [_selection(i, f"prompt {i % 7}", f"h{i}", f"h{i + 1}") for i in range(40)]
    first = qs.split(base, 0.25)
    assert 0 < len(first.val) < 40 and first.val_questions + first.train_questions == 40
    grown = base + [_selection(100 + i, f"new {i}", f"x{i}", f"y{i}") for i in range(200)]
    second = qs.split(grown, 0.25)
    assert set(first.val) <= set(second.val) and set(first.train) <= set(second.train)
    pair = [_selection(500 + k, "A robot", "hA", "hB", dim) for k, dim in enumerate(("TA", "VQ", "MQ", "OA"))]
    pair.append(_selection(504, " A robot ", "hB", "hA", "VQ", "b"))  # shown the other way round
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.9):
        sides = {qs.is_validation(s, fraction) for s in pair}
        assert len(sides) == 1
    many = [_selection(i, f"q{i}", f"a{i}", f"b{i}") for i in range(2000)]
    assert 0.17 < len(qs.split(many, 0.2).val) / 2000 < 0.23  # the threshold is the fraction


def test_hf_sampling_is_seeded_and_greedy_stays_greedy(hf_backend, clips, tmp_path):
    """On the tiny model: a sampled conversation is the same for the same seed, differs across seeds, and a
    session without sampling still decodes greedily (the judge's replies are unchanged)."""
    import json
    import shutil

    from vrthinker.protocol import Profile, _prompts_root

    prof = tmp_path / "card-small"
    shutil.copytree(_prompts_root() / "card", prof)
    data = json.loads((prof / "profile.json").read_text())
    data.update(name="card-small", version="card-small/1", image_side=56)  # small frames: seconds, not minutes
    (prof / "profile.json").write_text(json.dumps(data))
    judge = Judge(hf_backend, Profile.load(prof), max_new_tokens=12, max_turns=1)
    s = Selection(1, "A robot", str(clips["a"]), str(clips["b"]), "ha", "hb", "a")
    grids = judge.load_videos(clips["a"], clips["b"])

    one = sampling.converse(judge, s, grids, Sampling(0.7, 11))
    again = sampling.converse(judge, s, grids, Sampling(0.7, 11))
    assert [t.reply for t in one] == [t.reply for t in again]
    others = {tuple(t.reply for t in sampling.converse(judge, s, grids, Sampling(1.5, seed))) for seed in range(4)}
    assert len(others) > 1
    greedy = [t.reply for t in sampling.converse(judge, s, grids, None)]
    assert greedy == [t.reply for t in sampling.converse(judge, s, grids, None)]
    assert greedy == [t.reply for t in judge.compare(clips["a"], clips["b"], "A robot", grids=grids).turns]


def test_openai_samples_send_the_temperature_and_each_turns_seed(clips):
    """Over --backend openai a sampled conversation is repeated requests: each turn asks for the temperature
    and its own seed (fixed by the sample's seed), so a server that honours seeds repeats it; greedy asks 0."""
    from fake_openai import Fake, reply_json

    from vrthinker.backends.openai import OpenAIBackend

    f = Fake([(200, reply_json(TOOL3)), (200, reply_json(says(2))), (200, reply_json(says(1)))])
    try:
        b = OpenAIBackend([f.url], backoff_s=0.01)
        judge = Judge(b, b.resolve_profile("card")[0], max_turns=2, max_new_tokens=16)
        s = Selection(1, "A robot", str(clips["a"]), str(clips["b"]), "ha", "hb", "a")
        grids = judge.load_videos(clips["a"], clips["b"])
        sampled = sampling.converse(judge, s, grids, Sampling(0.7, 5))
        greedy = sampling.converse(judge, s, grids, None)
    finally:
        f.close()
    assert [t.reply for t in sampled] == [TOOL3, says(2)] and [t.reply for t in greedy] == [says(1)]
    first, second, plain = f.calls
    assert (first["temperature"], first["seed"]) == (0.7, Sampling(0.7, 5).turn_seed(0))
    assert (second["temperature"], second["seed"]) == (0.7, Sampling(0.7, 5).turn_seed(1))
    assert first["seed"] != second["seed"] and plain["temperature"] == 0.0 and "seed" not in plain


def test_one_judge_loaded_once_under_the_rows_limits():
    """Both row builders take their judge from ds.judge_once: a loader is called on first use only, and the
    judge gets the truncation rule and the turn limit the rows are built with (no limit: its own kept)."""
    made = []

    def load():
        made.append(Judge(ScriptedBackend(GREEDY), "card"))
        return made[-1]

    rules = ds.limited(Judge(ScriptedBackend(GREEDY), "card").profile, 300)
    the_judge = ds.judge_once(load, rules, 2)
    assert made == []  # nothing loaded until a conversation must be run
    first = the_judge()
    assert the_judge() is first and made == [first]
    assert first.profile is rules and first.profile.max_context_tokens == 300 and first.max_turns == 2
    given = Judge(ScriptedBackend(GREEDY), "card")
    turns = given.max_turns
    got = ds.judge_once(given, rules, None)()
    assert got is given and got.profile is rules and got.max_turns == turns
