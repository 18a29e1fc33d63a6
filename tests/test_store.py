"""The one store: every table, a versioned schema with migrations, old files, two processes at once; the JSONL
reader; what a stored judgment or score is keyed by."""
from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

import pytest

from vrthinker import jsonl
from vrthinker.errors import UsageError
from vrthinker.identity import adapter_identity, model_identity
from vrthinker.store import MIGRATIONS, SCHEMA_VERSION, Store

TABLES = {"judgments", "items", "file_hashes", "rankings", "selections", "tune_replies", "tune_runs", "dqa_scores",
          "serve_jobs", "ab_questions", "ab_answers", "tune_samples", "tune_run_details", "video_measures"}

# ----------------------------------------------------------------------------------------------------------
# the DDL of the code before one store owned every table, copied as it was: vrthinker/store.py wrote
# schema 1, then dqa/selections.py and dqa/score_store.py each added their tables beside it

OLD_STORE = """
CREATE TABLE judgments (
    key TEXT PRIMARY KEY, videoA TEXT NOT NULL, videoB TEXT NOT NULL, hashA TEXT NOT NULL, hashB TEXT NOT NULL,
    prompt TEXT NOT NULL, model_id TEXT NOT NULL, revision TEXT NOT NULL DEFAULT '',
    adapter TEXT NOT NULL DEFAULT '', protocol TEXT NOT NULL, backend TEXT NOT NULL, labels TEXT NOT NULL,
    reason TEXT, detail TEXT NOT NULL DEFAULT '', reasoning TEXT NOT NULL DEFAULT '', verdict TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE items (
    job TEXT NOT NULL, item_id TEXT NOT NULL, position INTEGER NOT NULL, video1 TEXT NOT NULL,
    video2 TEXT NOT NULL, prompt TEXT NOT NULL, orders TEXT NOT NULL CHECK (orders IN ('one', 'both')),
    status TEXT NOT NULL CHECK (status IN ('done', 'bad')), reason TEXT, detail TEXT NOT NULL DEFAULT '',
    key_forward TEXT REFERENCES judgments(key), key_reverse TEXT REFERENCES judgments(key),
    updated REAL NOT NULL, PRIMARY KEY (job, item_id),
    CHECK (status = 'bad' OR key_forward IS NOT NULL),
    CHECK (status = 'bad' OR orders = 'one' OR key_reverse IS NOT NULL)
);
CREATE TABLE file_hashes (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL
);
CREATE TABLE rankings (
    job TEXT NOT NULL, prompt TEXT NOT NULL, dimension TEXT NOT NULL, candidate TEXT NOT NULL,
    score REAL NOT NULL, uncertainty REAL, rank INTEGER NOT NULL, comparisons INTEGER NOT NULL DEFAULT 0,
    model_id TEXT NOT NULL DEFAULT '', updated REAL NOT NULL, PRIMARY KEY (job, prompt, dimension, candidate)
);
"""
OLD_SELECTIONS = """
CREATE TABLE IF NOT EXISTS selections (
    id INTEGER PRIMARY KEY AUTOINCREMENT, prompt TEXT NOT NULL, video_a TEXT NOT NULL, video_b TEXT NOT NULL,
    hash_a TEXT NOT NULL, hash_b TEXT NOT NULL, chosen TEXT NOT NULL CHECK (chosen IN ('a', 'b')),
    dimension TEXT NOT NULL DEFAULT 'OA', user TEXT NOT NULL DEFAULT '', time TEXT NOT NULL DEFAULT '',
    question TEXT NOT NULL, source TEXT NOT NULL DEFAULT '', created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS selections_question ON selections (question);
CREATE TABLE IF NOT EXISTS tune_replies (
    selection_id INTEGER NOT NULL REFERENCES selections(id) ON DELETE CASCADE, judge TEXT NOT NULL,
    reply TEXT NOT NULL, labels TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (selection_id, judge)
);
CREATE TABLE IF NOT EXISTS tune_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, base_model TEXT NOT NULL, adapter TEXT NOT NULL, status TEXT NOT NULL,
    first_id INTEGER, last_id INTEGER, n_train INTEGER NOT NULL DEFAULT 0, n_val INTEGER NOT NULL DEFAULT 0,
    steps INTEGER NOT NULL DEFAULT 0, train_loss REAL, val_loss REAL, losses TEXT NOT NULL DEFAULT '[]',
    agreement_before REAL, agreement_after REAL, detail TEXT NOT NULL DEFAULT '', started REAL NOT NULL,
    finished REAL
);
"""
OLD_SCORES = """
CREATE TABLE IF NOT EXISTS dqa_scores (
    video_sha TEXT NOT NULL, prompt TEXT NOT NULL, worker TEXT NOT NULL, config TEXT NOT NULL,
    component TEXT NOT NULL, value REAL, unit REAL, details TEXT, reason TEXT, message TEXT,
    created REAL NOT NULL, PRIMARY KEY (video_sha, prompt, worker, config, component),
    CHECK ((reason IS NULL) = (value IS NOT NULL))
)
"""
LABELS = {"TA": 1, "VQ": 0, "MQ": 2, "OA": 1}


def old_file(path: Path, *, dqa: bool = True) -> Path:
    """A database as the old code left it: schema 1 (user_version 1), the dqa tables beside it, one row each."""
    db = sqlite3.connect(path)
    db.executescript(OLD_STORE + "PRAGMA user_version=1;" + (OLD_SELECTIONS + OLD_SCORES + ";" if dqa else ""))
    db.execute("INSERT INTO judgments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
               ("k1", "/v/a.mp4", "/v/b.mp4", "ha", "hb", "a cat", "m", "", "", "card/1", "hf",
                json.dumps(LABELS), None, "", "thinking", json.dumps({"turns": []}), 1.0))
    db.execute("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
               ("job", "1", 1, "/v/a.mp4", "/v/b.mp4", "a cat", "one", "done", None, "", "k1", None, 2.0))
    db.execute("INSERT INTO rankings VALUES (?,?,?,?,?,?,?,?,?,?)",
               ("job", "a cat", "OA", "/v/a.mp4", 0.5, 0.1, 1, 1, "m", 3.0))
    if dqa:
        db.execute("INSERT INTO selections (prompt, video_a, video_b, hash_a, hash_b, chosen, question, created)"
                   " VALUES ('a cat', '/v/a.mp4', '/v/b.mp4', 'ha', 'hb', 'a', 'q', 4.0)")
        db.execute("INSERT INTO tune_replies VALUES (1, 'm|card/1|', 'reply', 'null', 5.0)")
        db.execute("INSERT INTO tune_runs (base_model, adapter, status, started) VALUES ('m', '/out', 'done', 6.0)")
        db.execute("INSERT INTO dqa_scores VALUES ('ha', '', 'measures', 'c0', 'vq', 0.7, 0.7, '{}', NULL, NULL, 7.0)")
    db.commit()
    db.close()
    return path


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")} - {"sqlite_sequence"}


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


# ----------------------------------------------------------------------------------------------------------
# schema


def test_a_new_file_holds_every_table_at_the_current_version(tmp_path):
    with Store(tmp_path / "new.sqlite") as s:
        assert s.schema_version() == SCHEMA_VERSION
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))  # in order, none skipped
    assert tables(tmp_path / "new.sqlite") == TABLES


def test_dqa_modules_create_no_tables():
    import dqa.score.store
    import dqa.tune.selections

    for mod in (dqa.tune.selections, dqa.score.store):
        assert "CREATE TABLE" not in Path(mod.__file__).read_text().upper()


def test_an_old_file_opens_migrates_and_keeps_its_rows(tmp_path):
    from dqa.tune.selections import all_selections, open_store
    from vrthinker.batch import judged_items

    path = old_file(tmp_path / "old.sqlite")
    with Store(path, readonly=True) as s:  # read-only: read as it is, never migrated
        [j] = list(judged_items(s))
        assert j.forward.labels == LABELS and j.forward.config is None and j.to_dict()["config"] is None
    assert user_version(path) == 1
    with open_store(path) as s:
        assert s.schema_version() == SCHEMA_VERSION
        [j] = list(judged_items(s))
        assert (j.forward.key, j.forward.reasoning, j.forward.labels, j.forward.config) == \
            ("k1", "thinking", LABELS, None)
        assert [(r.candidate, r.score, r.rank) for r in s.rankings("job")] == [("/v/a.mp4", 0.5, 1)]
        [sel] = all_selections(s)
        assert (sel.id, sel.prompt, sel.chosen, sel.created) == (1, "a cat", "a", 4.0)
        rows = {t: [tuple(r) for r in s.db.execute(sql)] for t, sql in (
            ("replies", "SELECT judge, reply FROM tune_replies"), ("runs", "SELECT base_model, status FROM tune_runs"),
            ("scores", "SELECT worker, component, value FROM dqa_scores"))}
        assert rows == {"replies": [("m|card/1|", "reply")], "runs": [("m", "done")],
                        "scores": [("measures", "vq", 0.7)]}
        assert s.counts() == {"judgments": 1, "items": 1, "file_hashes": 0, "rankings": 1}
    assert tables(path) == TABLES
    with Store(path) as s:  # opening again changes nothing
        assert s.schema_version() == SCHEMA_VERSION and s.counts()["judgments"] == 1


def test_an_old_file_without_the_dqa_tables_gets_them(tmp_path):
    path = old_file(tmp_path / "old.sqlite", dqa=False)
    with Store(path) as s:
        assert s.judgment("k1").labels == LABELS
    assert tables(path) == TABLES and user_version(path) == SCHEMA_VERSION


def test_a_newer_file_and_a_foreign_file_are_refused(tmp_path):
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(UsageError, match="newer than this version"):
        Store(newer)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(UsageError, match="not a judgment database"):
        Store(foreign)
    assert tables(foreign) == {"t"}


def test_a_failing_migration_leaves_the_file_at_its_last_step(tmp_path, monkeypatch):
    import vrthinker.store as store_mod

    def broken(db):
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("disk on fire")

    steps = list(store_mod.MIGRATIONS)
    steps[-1] = store_mod.Migration(steps[-1].version, "broken", broken)
    monkeypatch.setattr(store_mod, "MIGRATIONS", tuple(steps))
    path = old_file(tmp_path / "old.sqlite")
    with pytest.raises(RuntimeError):
        Store(path)
    assert user_version(path) == SCHEMA_VERSION - 1 and "half_done" not in tables(path)
    monkeypatch.undo()
    with Store(path) as s:
        assert s.schema_version() == SCHEMA_VERSION


# ----------------------------------------------------------------------------------------------------------
# two processes at once


def _open_at(path: str, start, kind: str, results) -> None:
    try:
        start.wait(10)
        if kind == "selections":
            from dqa.tune.selections import open_store

            store = open_store(path)
        else:
            store = Store(path)
        with store:
            results.put((kind, store.db.execute("PRAGMA user_version").fetchone()[0]))
    except BaseException as e:  # noqa: BLE001 - the parent reports what went wrong in the child
        results.put((kind, f"{type(e).__name__}: {e}"))


def test_two_processes_create_one_new_file_at_once(tmp_path):
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    for round_ in range(12):
        path = str(tmp_path / f"race{round_}.sqlite")  # a fresh file each round
        start, results = ctx.Event(), ctx.Queue()
        kinds = ("store", "selections") if round_ % 2 else ("store", "store")
        procs = [ctx.Process(target=_open_at, args=(path, start, k, results)) for k in kinds]
        for p in procs:
            p.start()
        time.sleep(0.05)
        start.set()
        got = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(60)
        assert [v for _, v in got] == [SCHEMA_VERSION] * 2, got
        assert tables(Path(path)) == TABLES and user_version(Path(path)) == SCHEMA_VERSION


# ----------------------------------------------------------------------------------------------------------
# the JSONL reader


def test_jsonl_records_number_lines_and_skip_blank_ones(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text('\ufeff{"a": 1}\n\n   \n{"a": 2}\n')
    assert list(jsonl.records(f)) == [(1, {"a": 1}), (4, {"a": 2})]
    assert list(jsonl.records(f, text='[1]\n"x"\n', objects=False)) == [(1, [1]), (2, "x")]


@pytest.mark.parametrize("text, needle", [
    ('{"a": 1}\nnot json\n', r"r\.jsonl:2: not JSON"),
    ('{"a": 1}\n\n[1, 2]\n', r"r\.jsonl:3: not a JSON object"),
])
def test_jsonl_a_bad_line_is_one_usage_error_naming_file_and_line(tmp_path, text, needle):
    f = tmp_path / "r.jsonl"
    f.write_text(text)
    with pytest.raises(UsageError, match=needle):
        list(jsonl.records(f))


def test_jsonl_collects_every_bad_line_when_asked(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text('{"a": 1}\nnope\n7\n{"a": 2}\n')
    bad: list[jsonl.BadLine] = []
    assert [n for n, _ in jsonl.records(f, bad=bad)] == [1, 4]
    assert [(b.line, b.reason.split(" (")[0]) for b in bad] == [(2, "not JSON"), (3, "not a JSON object")]
    with pytest.raises(UsageError, match="cannot read it"):
        list(jsonl.records(tmp_path / "missing.jsonl"))


# ----------------------------------------------------------------------------------------------------------
# what a stored judgment and a stored score are keyed by


def _checkpoint(d: Path, weights: bytes = b"\0" * 4096) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text('{"hidden_size": 8}')
    (d / "model.safetensors.index.json").write_text('{"weight_map": {"w": "model.safetensors"}}')
    (d / "model.safetensors").write_bytes(weights)
    return d


def test_a_local_checkpoint_is_named_by_content_not_by_time(tmp_path):
    a = model_identity(str(_checkpoint(tmp_path / "a")))
    time.sleep(0.01)
    copy = model_identity(str(_checkpoint(tmp_path / "copy")))  # same files, later mtimes, other folder
    assert a["fingerprint"] == copy["fingerprint"]
    (tmp_path / "copy" / "config.json").write_text('{"hidden_size": 16}')
    assert model_identity(str(tmp_path / "copy"))["fingerprint"] != a["fingerprint"]
    other = model_identity(str(_checkpoint(tmp_path / "tuned", weights=b"\1" * 4096)))
    assert other["fingerprint"] != a["fingerprint"]
    assert model_identity("org/model", "v2") == {"model_id": "org/model", "revision": "v2"}
    ad = tmp_path / "lora"
    ad.mkdir()
    (ad / "adapter_config.json").write_text("{}")
    (ad / "adapter_model.safetensors").write_bytes(b"\2" * 10)
    first = adapter_identity(str(ad))
    (ad / "adapter_model.safetensors").write_bytes(b"\3" * 10)
    assert adapter_identity(str(ad))["fingerprint"] != first["fingerprint"] and adapter_identity(None) == {}


def test_a_changed_worker_version_is_not_served_from_the_score_store(tmp_path, clips):
    from dqa.score.scheduler import Item
    from dqa.score.store import ScoreStore
    from dqa.workers.base import Score, Worker

    class Brightness(Worker):
        name = "brightness_test"
        components = ("brightness",)

    class Brightness2(Brightness):
        version = "2"  # e.g. a threshold changed in the code

    item = Item(str(clips["a"]), "a ball")
    with ScoreStore(str(tmp_path / "s.sqlite")) as store:
        store.put(item, Brightness(), [Score("brightness", 0.5, 0.5)], [])
        assert store.done(item, Brightness(), ["brightness"])
        assert not store.done(item, Brightness2(), ["brightness"])
        assert not store.done(item, Brightness(threshold=0.3), ["brightness"])
    assert Brightness().config()["version"] == "1"
