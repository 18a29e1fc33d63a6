"""The project's one SQLite store: it owns every table (judgments, rankings, selections, tune runs, scores).

A judgment's key is a sha256 over both videos' content hashes (in the order shown), the prompt and the
judge's whole configuration (model identity, adapter, quantization, dtype, device, limits, decoding
settings, profile, backend; see `vrthinker.identity`): a re-run finds what is done, a changed judge or video
misses the cache. The reverse order of a pair is the same key with the videos swapped.
The schema has a version (PRAGMA user_version) and an ordered list of migrations; a file written by an
older version is brought up to date when opened for writing, each step in one transaction under the
write lock, so two processes opening or creating one file at once both succeed.
The file is in WAL mode, every write is one short transaction (a killed process leaves no half-written
row) and another process may read it while a batch runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vrthinker.errors import UsageError, VideoError
from vrthinker.identity import canonical, content_view

SCHEMA_VERSION = 7
DEFAULT_DB = "judgments.sqlite"
DB_ENV = "VRTHINKER_DB"

# Schema 1: the judgment tables, as the first release wrote them.
_V1_JUDGMENTS = """
CREATE TABLE IF NOT EXISTS judgments (
    key       TEXT PRIMARY KEY,          -- judgment_key(hashA, hashB, prompt, judge configuration)
    videoA    TEXT NOT NULL,             -- shown first ("Video 1" to the model)
    videoB    TEXT NOT NULL,             -- shown second
    hashA     TEXT NOT NULL,
    hashB     TEXT NOT NULL,
    prompt    TEXT NOT NULL,
    model_id  TEXT NOT NULL,
    revision  TEXT NOT NULL DEFAULT '',
    adapter   TEXT NOT NULL DEFAULT '',
    protocol  TEXT NOT NULL,
    backend   TEXT NOT NULL,
    labels    TEXT NOT NULL,             -- JSON {TA, VQ, MQ, OA}: 1 = A better, 2 = B better, 0 tie, null
    reason    TEXT,                      -- null when all four labels are present
    detail    TEXT NOT NULL DEFAULT '',
    reasoning TEXT NOT NULL DEFAULT '',
    verdict   TEXT NOT NULL,             -- JSON Verdict.to_dict(trace=True), rendered prompts dropped
    created   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    job         TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    position    INTEGER NOT NULL,        -- row number in the input file
    video1      TEXT NOT NULL,
    video2      TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    orders      TEXT NOT NULL CHECK (orders IN ('one', 'both')),
    status      TEXT NOT NULL CHECK (status IN ('done', 'bad')),
    reason      TEXT,                    -- why a row is bad (missing_file, unreadable, bad_video)
    detail      TEXT NOT NULL DEFAULT '',
    key_forward TEXT REFERENCES judgments(key),  -- (video1, video2)
    key_reverse TEXT REFERENCES judgments(key),  -- (video2, video1), null with orders 'one'
    updated     REAL NOT NULL,
    PRIMARY KEY (job, item_id),
    CHECK (status = 'bad' OR key_forward IS NOT NULL),
    CHECK (status = 'bad' OR orders = 'one' OR key_reverse IS NOT NULL)
);
CREATE TABLE IF NOT EXISTS file_hashes (
    path     TEXT PRIMARY KEY,           -- absolute, symlinks resolved
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rankings (
    job         TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    dimension   TEXT NOT NULL,
    candidate   TEXT NOT NULL,           -- a video path
    score       REAL NOT NULL,           -- Bradley-Terry log-odds (higher is better)
    uncertainty REAL,                    -- standard error of the score
    rank        INTEGER NOT NULL,        -- 1 = best
    comparisons INTEGER NOT NULL DEFAULT 0,
    model_id    TEXT NOT NULL DEFAULT '',
    updated     REAL NOT NULL,
    PRIMARY KEY (job, prompt, dimension, candidate)
);
"""

# Schema 2: the tables dqa used to add beside the judgments on its own (a schema-1 file may hold them
# already, hence IF NOT EXISTS): a person's selections, the tuner's replies and runs, and DQA scores.
_V2_DQA = """
CREATE TABLE IF NOT EXISTS selections (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,  -- increasing: the sleeptime rule counts ids after a run's last
    prompt    TEXT NOT NULL,
    video_a   TEXT NOT NULL,                      -- absolute paths as given (shown first to the judge)
    video_b   TEXT NOT NULL,
    hash_a    TEXT NOT NULL,
    hash_b    TEXT NOT NULL,
    chosen    TEXT NOT NULL CHECK (chosen IN ('a', 'b')),
    dimension TEXT NOT NULL DEFAULT 'OA',
    user      TEXT NOT NULL DEFAULT '',
    time      TEXT NOT NULL DEFAULT '',           -- when the person chose (ISO 8601, as given)
    question  TEXT NOT NULL,                      -- prompt|dimension|user|sorted hashes: equal for duplicates
    source    TEXT NOT NULL DEFAULT '',           -- 'select' or the imported file
    created   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS selections_question ON selections (question);
CREATE TABLE IF NOT EXISTS tune_replies (
    selection_id INTEGER NOT NULL REFERENCES selections(id) ON DELETE CASCADE,
    judge        TEXT NOT NULL,                   -- ModelIdentity.label of the judge that replied
    reply        TEXT NOT NULL,                   -- the judge's conversation: JSON {"turns": [...]} (or one reply)
    labels       TEXT NOT NULL,                   -- JSON labels parsed from its <Answer>, null without one
    created      REAL NOT NULL,
    PRIMARY KEY (selection_id, judge)
);
CREATE TABLE IF NOT EXISTS tune_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    base_model  TEXT NOT NULL,
    adapter     TEXT NOT NULL,                    -- the output dir
    status      TEXT NOT NULL,                    -- 'done' or 'failed'
    first_id    INTEGER,                          -- selection ids trained on: first .. last
    last_id     INTEGER,
    n_train     INTEGER NOT NULL DEFAULT 0,
    n_val       INTEGER NOT NULL DEFAULT 0,
    steps       INTEGER NOT NULL DEFAULT 0,
    train_loss  REAL,
    val_loss    REAL,                             -- best validation loss (the adapter kept)
    losses      TEXT NOT NULL DEFAULT '[]',       -- JSON: the trainer's log history
    agreement_before REAL,                        -- agreement (final label) on the validation split
    agreement_after  REAL,
    detail      TEXT NOT NULL DEFAULT '',
    started     REAL NOT NULL,
    finished    REAL
);
CREATE TABLE IF NOT EXISTS dqa_scores (
    video_sha  TEXT NOT NULL,
    prompt     TEXT NOT NULL,             -- '' for workers that do not read the prompt
    worker     TEXT NOT NULL,
    config     TEXT NOT NULL,             -- sha256 of the worker's configuration (its version included)
    component  TEXT NOT NULL,
    value      REAL,
    unit       REAL,
    details    TEXT,
    reason     TEXT,                      -- NULL for a score
    message    TEXT,
    created    REAL NOT NULL,
    PRIMARY KEY (video_sha, prompt, worker, config, component),
    CHECK ((reason IS NULL) = (value IS NOT NULL))
);
"""


# Schema 4: `dqa serve`'s jobs (persisted so a restart resumes them) and its A/B questions and answers.
_V4_SERVE = """
CREATE TABLE IF NOT EXISTS serve_jobs (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,   -- run order
    id       TEXT NOT NULL UNIQUE,                -- what the API hands out
    kind     TEXT NOT NULL CHECK (kind IN ('compare', 'score')),
    request  TEXT NOT NULL,                       -- JSON: the checked request (real paths)
    key      TEXT NOT NULL,                       -- sha256 of content hashes + request + configuration
    state    TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    result   TEXT,                                -- JSON: the document the CLI prints with --json
    error    TEXT,                                -- JSON {"code", "message"} when failed
    created  REAL NOT NULL,
    started  REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS serve_jobs_key ON serve_jobs (key);
CREATE INDEX IF NOT EXISTS serve_jobs_state ON serve_jobs (state, seq);
CREATE TABLE IF NOT EXISTS ab_questions (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt    TEXT NOT NULL,
    video_a   TEXT NOT NULL,                      -- real paths inside the media roots
    video_b   TEXT NOT NULL,
    dimension TEXT,                               -- the one dimension asked (NULL: all four)
    job       TEXT REFERENCES serve_jobs(id),     -- the judge's comparison, shown after the answer
    created   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ab_answers (
    question  INTEGER NOT NULL REFERENCES ab_questions(id),
    dimension TEXT NOT NULL,
    user      TEXT NOT NULL DEFAULT '',
    chosen    TEXT NOT NULL CHECK (chosen IN ('a', 'b', 'tie')),
    selection INTEGER REFERENCES selections(id),  -- the selection it made (NULL for a tie)
    status    TEXT NOT NULL,                      -- recorded, duplicate, contradiction or tie
    created   REAL NOT NULL,
    PRIMARY KEY (question, dimension, user)
);
"""

# Schema 5: the tuner's sampled conversations, what each run found beyond its losses (row kinds, the
# question split, model confidence, failure patterns), and the weight-free measures of selected videos.
_V5_TUNER = """
CREATE TABLE IF NOT EXISTS tune_samples (
    selection_id INTEGER NOT NULL REFERENCES selections(id) ON DELETE CASCADE,
    judge        TEXT NOT NULL,                   -- ModelIdentity.label of the judge that replied
    sample       INTEGER NOT NULL,                -- 1.. (sample 0 is the greedy one, in tune_replies)
    temperature  REAL NOT NULL,
    seed         INTEGER NOT NULL,                -- the run's --seed (each sample derives its own from it)
    reply        TEXT NOT NULL,                   -- JSON {"turns": [...]}, as tune_replies.reply
    labels       TEXT NOT NULL,                   -- JSON labels parsed from its last <Answer>, null without one
    created      REAL NOT NULL,
    PRIMARY KEY (selection_id, judge, sample, temperature, seed)
);
CREATE TABLE IF NOT EXISTS tune_run_details (
    run_id   INTEGER PRIMARY KEY REFERENCES tune_runs(id) ON DELETE CASCADE,
    details  TEXT NOT NULL                        -- JSON: row kinds, split, confidence, patterns
);
CREATE TABLE IF NOT EXISTS video_measures (
    video_sha TEXT NOT NULL,
    version   TEXT NOT NULL,                      -- the measures' version (dqa.measures.video)
    measures  TEXT NOT NULL,                      -- JSON {name: raw value}
    created   REAL NOT NULL,
    PRIMARY KEY (video_sha, version)
);
"""

def _statements(ddl: str) -> Callable[[sqlite3.Connection], None]:
    def apply(db: sqlite3.Connection) -> None:
        for statement in ddl.split(";"):  # executescript would commit on its own
            if statement.strip():
                db.execute(statement)
    return apply


def _add_judgment_config(db: sqlite3.Connection) -> None:
    columns = {r[1] for r in db.execute("PRAGMA table_info(judgments)")}
    if "config" not in columns:
        db.execute("ALTER TABLE judgments ADD COLUMN config TEXT")  # NULL for judgments stored before


def _add_ranking_content(db: sqlite3.Connection) -> None:
    columns = {r[1] for r in db.execute("PRAGMA table_info(rankings)")}
    if "sha256" not in columns:  # NULL for rankings stored before: those are known by path only
        db.execute("ALTER TABLE rankings ADD COLUMN sha256 TEXT")
    if "covariance" not in columns:
        db.execute("ALTER TABLE rankings ADD COLUMN covariance TEXT")


def _add_serve_job_owner(db: sqlite3.Connection) -> None:
    """Who runs a `running` serve job, when it last said so and for how long that holds (its lease, seconds):
    another process on the store re-queues only jobs whose owner is gone (see dqa.serve.lease). NULL for jobs
    stored before."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(serve_jobs)")}
    for name, kind in (("owner", "TEXT"), ("owner_host", "TEXT"), ("owner_pid", "INTEGER"), ("heartbeat", "REAL"),
                       ("lease", "REAL")):
        if name not in columns:
            db.execute(f"ALTER TABLE serve_jobs ADD COLUMN {name} {kind}")


@dataclass(frozen=True)
class Migration:
    """One step of the schema: applied in one transaction, after which PRAGMA user_version is `version`."""

    version: int
    what: str
    apply: Callable[[sqlite3.Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "judgments, items, file hashes, rankings", _statements(_V1_JUDGMENTS)),
    Migration(2, "selections, tune replies, tune runs, DQA scores", _statements(_V2_DQA)),
    Migration(3, "the judge configuration beside each judgment (JSON)", _add_judgment_config),
    Migration(4, "dqa serve: jobs, A/B questions and their answers", _statements(_V4_SERVE)),
    Migration(5, "tuner: sampled conversations, run details, video measures", _statements(_V5_TUNER)),
    Migration(6, "rankings: each candidate's content hash and its row of the fit's covariance",
              _add_ranking_content),
    Migration(7, "dqa serve jobs: a running job's owner (host, pid, process token), heartbeat and lease",
              _add_serve_job_owner),
)


def default_path() -> str:
    """$VRTHINKER_DB if set, else judgments.sqlite in the current directory."""
    return os.environ.get(DB_ENV) or DEFAULT_DB


@dataclass(frozen=True)
class ModelIdentity:
    """Everything about the judge that changes its answers, hence part of every judgment key.

    `config` is the judge's whole configuration (`vrthinker.batch.judge_config`); the named fields are
    what tables and summaries show of it.
    """

    model_id: str
    revision: str = ""
    protocol: str = ""
    backend: str = ""
    adapter: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The short name of the judge that wrote a stored reply: model id, protocol version and adapter."""
        return f"{self.model_id}|{self.protocol}|{self.adapter or ''}"


def judgment_key(hash_a: str, hash_b: str, prompt: str, ident: ModelIdentity) -> str:
    """sha256 of one ordered judgment's inputs (JSON-encoded, so no two field splits collide). A local model
    or adapter counts by its fingerprint, not its path (`identity.content_view`)."""
    config = content_view(dict(ident.config)) if ident.config else {}
    model = config["model_id"] if config.get("fingerprint") else ident.model_id
    adapter = config.get("adapter")
    adapter = adapter["adapter"] if isinstance(adapter, dict) and adapter.get("fingerprint") else ident.adapter
    parts = [hash_a, hash_b, prompt.strip(), model, ident.revision or "", ident.protocol,
             ident.backend, adapter or ""]
    if config:
        parts.append(canonical(config))
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class Judgment:
    """One stored ordered judgment: video A was shown first; labels are in that order (1 = A better)."""

    key: str
    videoA: str
    videoB: str
    hashA: str
    hashB: str
    prompt: str
    model_id: str
    revision: str
    adapter: str
    protocol: str
    backend: str
    labels: Mapping[str, int | None]
    reason: str | None
    detail: str
    reasoning: str
    verdict: Mapping[str, Any]
    created: float
    config: Mapping[str, Any] | None = None  # the judge's configuration; None for judgments stored before it was



@dataclass(frozen=True)
class Item:
    """One input row of a job and where it stands; `key_*` name its judgments."""

    job: str
    item_id: str
    position: int
    video1: str
    video2: str
    prompt: str
    orders: str
    status: str
    reason: str | None = None
    detail: str = ""
    key_forward: str | None = None
    key_reverse: str | None = None
    updated: float = 0.0


@dataclass(frozen=True)
class RankEntry:
    """One candidate's place in a stored ranking."""

    job: str
    prompt: str
    dimension: str
    candidate: str
    score: float
    uncertainty: float | None
    rank: int
    comparisons: int
    model_id: str = ""
    sha256: str | None = None  # the candidate's content hash (None in rankings stored before schema 6)
    covariance: Mapping[str, float] | None = None  # other candidate's path -> covariance of the two scores


class Store:
    """The project database. `Store(path)` creates or migrates it if needed; `readonly=True` never writes."""

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False, timeout: float = 30.0):
        self.path = os.fspath(path)
        self.readonly = readonly
        self.timeout = timeout
        if readonly:
            if not os.path.isfile(self.path):
                raise UsageError(f"no judgment database at {self.path} (run 'judge batch' first, or pass --db)")
            uri = f"{Path(self.path).resolve().as_uri()}?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self.db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        self.db.row_factory = sqlite3.Row
        try:
            self._retry_locked(self._setup)
        except BaseException:
            self.db.close()
            raise

    # ------------------------------------------------------------------------------------------------------
    # setup

    def _retry_locked(self, step: Callable[[], None]) -> None:
        """Run `step`, again while another process holds a lock SQLite will not wait for (within `timeout`).

        The busy timeout covers most waits, but SQLite answers "locked" at once where waiting could
        deadlock (a connection switching a new file to WAL while another creates it, for one).
        """
        deadline = time.monotonic() + self.timeout
        pause = 0.005
        while True:
            try:
                return step()
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() >= deadline:
                    raise
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                time.sleep(pause)
                pause = min(pause * 2, 0.2)

    def _setup(self) -> None:
        if not self.readonly:
            # WAL: readers never block the writer and a killed writer leaves the last commit intact.
            # synchronous=NORMAL is crash-safe in WAL mode; only a power cut may lose the latest commits.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise UsageError(f"{self.path}: database schema {version} is newer than this version of "
                             f"vrthinker understands ({SCHEMA_VERSION}); upgrade vrthinker")
        if version == 0:
            tables = self.db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
            if tables:
                raise UsageError(f"{self.path} is an SQLite file but not a judgment database")

    def _migrate(self) -> None:
        """Apply the migrations this file lacks, each in one transaction under the write lock.

        The version is read again inside the lock: another process may have migrated the file meanwhile.
        A read-only store never migrates; it reads an older file as it is (columns added since read as
        missing).
        """
        if self.readonly:
            self.db.execute("BEGIN")  # one snapshot for the version and the tables
            try:
                version = self.schema_version()
                self._check_version(version)
            finally:
                self.db.execute("COMMIT")
            if version == 0:
                raise UsageError(f"{self.path} is empty: no judgment database yet")
            return
        if self.schema_version() == SCHEMA_VERSION:
            return
        for m in MIGRATIONS:
            with self.transaction():
                version = self.schema_version()
                self._check_version(version)
                if version >= m.version:
                    continue
                m.apply(self.db)
                self.db.execute(f"PRAGMA user_version={m.version}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def transaction(self):
        """`with store.transaction():` one atomic write (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error)."""
        return _Transaction(self.db)

    # ------------------------------------------------------------------------------------------------------
    # content hashes

    def file_hash(self, path: str | os.PathLike) -> str:
        """sha256 of a file's bytes, cached by (path, size, mtime). Raises VideoError if it can't be read."""
        p = os.path.realpath(os.fspath(path))
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise VideoError(os.fspath(path), "file not found") from None
        except OSError as e:
            raise VideoError(os.fspath(path), f"cannot read it ({e.strerror})") from None
        row = self.db.execute("SELECT size, mtime_ns, sha256 FROM file_hashes WHERE path=?", (p,)).fetchone()
        if row and row["size"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns:
            return row["sha256"]
        h = hashlib.sha256()
        try:
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as e:
            raise VideoError(os.fspath(path), f"cannot read it ({e.strerror})") from None
        digest = h.hexdigest()
        if not self.readonly:
            with self.transaction():
                self.db.execute("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?)",
                                (p, st.st_size, st.st_mtime_ns, digest))
        return digest

    # ------------------------------------------------------------------------------------------------------
    # judgments and items

    def existing(self, keys: Iterable[str]) -> set[str]:
        """Which of `keys` have a stored judgment."""
        keys = [k for k in set(keys) if k]
        if not keys:
            return set()
        marks = ",".join("?" * len(keys))
        return {r[0] for r in self.db.execute(f"SELECT key FROM judgments WHERE key IN ({marks})", keys)}

    def judgment(self, key: str | None) -> Judgment | None:
        if not key:
            return None
        row = self.db.execute("SELECT * FROM judgments WHERE key=?", (key,)).fetchone()
        return _judgment(row) if row else None

    def record(self, item: Item, judgments: Sequence[Judgment] = ()) -> None:
        """Store new judgments and the item that uses them in one transaction (all or nothing).

        A judgment already stored (same key) is kept as it is; the item row is inserted or replaced.
        """
        with self.transaction():
            for j in judgments:
                self.db.execute(
                    f"INSERT OR IGNORE INTO judgments ({', '.join(_JUDGMENT_COLUMNS)}) "
                    f"VALUES ({','.join('?' * len(_JUDGMENT_COLUMNS))})",
                    (j.key, j.videoA, j.videoB, j.hashA, j.hashB, j.prompt, j.model_id, j.revision or "",
                     j.adapter or "", j.protocol, j.backend, json.dumps(dict(j.labels)), j.reason, j.detail,
                     j.reasoning, json.dumps(j.verdict, ensure_ascii=False), j.created or time.time(),
                     None if j.config is None else canonical(j.config)))
            self.db.execute(
                """INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT (job, item_id) DO UPDATE SET position=excluded.position,
                   video1=excluded.video1, video2=excluded.video2, prompt=excluded.prompt,
                   orders=excluded.orders, status=excluded.status, reason=excluded.reason,
                   detail=excluded.detail, key_forward=excluded.key_forward,
                   key_reverse=excluded.key_reverse, updated=excluded.updated""",
                (item.job, item.item_id, item.position, item.video1, item.video2, item.prompt, item.orders,
                 item.status, item.reason, item.detail, item.key_forward, item.key_reverse,
                 item.updated or time.time()))

    def item(self, job: str, item_id: str) -> Item | None:
        row = self.db.execute("SELECT * FROM items WHERE job=? AND item_id=?", (job, item_id)).fetchone()
        return Item(**dict(row)) if row else None

    def items(self, job: str | None = None, status: str | None = None) -> Iterator[Item]:
        """Items in input order (by job, then position)."""
        where, args = [], []
        if job is not None:
            where.append("job=?")
            args.append(job)
        if status is not None:
            where.append("status=?")
            args.append(status)
        sql = "SELECT * FROM items" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY job, position"
        for row in self.db.execute(sql, args).fetchall():
            yield Item(**dict(row))

    def jobs(self) -> list[str]:
        jobs = {r[0] for r in self.db.execute("SELECT DISTINCT job FROM items")}
        jobs |= {r[0] for r in self.db.execute("SELECT DISTINCT job FROM rankings")}
        return sorted(jobs)

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {t: self.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("judgments", "items", "file_hashes", "rankings")}

    # ------------------------------------------------------------------------------------------------------
    # rankings

    def put_ranking(self, job: str, prompt: str, dimension: str, standings: Sequence[Any], *,
                    model_id: str = "", hashes: Mapping[str, str] | None = None,
                    covariance: Mapping[str, Mapping[str, float]] | None = None) -> None:
        """Replace the ranking of (job, prompt, dimension) in one transaction.

        `standings` is best first; each entry is a `vrthinker.rank.Standing` (candidate, score, stderr,
        wins, losses, ties) or a mapping with `candidate`, `score` and optionally `uncertainty` (or
        `stderr`) and `comparisons` (or wins/losses/ties, summed). Candidates are video paths; `hashes`
        gives their content hashes and `covariance` each one's row of the fit's covariance (by path).
        """
        rows = []
        for k, s in enumerate(standings):
            get = s.get if isinstance(s, Mapping) else (lambda name, default=None, _s=s: getattr(_s, name, default))
            unc = get("uncertainty", get("stderr"))
            comparisons = get("comparisons")
            if comparisons is None:
                comparisons = sum(int(get(n, 0) or 0) for n in ("wins", "losses", "ties"))
            cand = str(get("candidate"))
            cov = (covariance or {}).get(cand)
            rows.append((job, prompt, dimension, cand, float(get("score")),
                         None if unc is None else float(unc), k + 1, int(comparisons), model_id, time.time(),
                         (hashes or {}).get(cand), None if cov is None else json.dumps(dict(cov))))
        with self.transaction():
            self.db.execute("DELETE FROM rankings WHERE job=? AND prompt=? AND dimension=?", (job, prompt, dimension))
            self.db.executemany("INSERT INTO rankings (job, prompt, dimension, candidate, score, uncertainty, rank, "
                                "comparisons, model_id, updated, sha256, covariance) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                                rows)

    def rankings(self, job: str | None = None) -> list[RankEntry]:
        """Stored ranking entries, grouped by job, prompt and dimension, best first."""
        have = {r[1] for r in self.db.execute("PRAGMA table_info(rankings)")}  # a read-only older file lacks some
        extra = "".join(f", {c}" for c in ("sha256", "covariance") if c in have)
        sql = f"SELECT job, prompt, dimension, candidate, score, uncertainty, rank, comparisons, model_id{extra} " \
              "FROM rankings"
        args: tuple = ()
        if job is not None:
            sql += " WHERE job=?"
            args = (job,)
        sql += " ORDER BY job, prompt, dimension, rank"
        out = []
        for r in self.db.execute(sql, args).fetchall():
            d = dict(r)
            d["covariance"] = json.loads(d["covariance"]) if d.get("covariance") else None
            out.append(RankEntry(**d))
        return out

    # ------------------------------------------------------------------------------------------------------
    # health

    def check(self) -> list[str]:
        """Problems found: SQLite's integrity check, plus 'done' items whose judgments are missing."""
        problems = [r[0] for r in self.db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        orphans = self.db.execute(
            """SELECT count(*) FROM items i WHERE i.status='done' AND (
                   NOT EXISTS (SELECT 1 FROM judgments j WHERE j.key = i.key_forward) OR
                   (i.key_reverse IS NOT NULL AND
                    NOT EXISTS (SELECT 1 FROM judgments j WHERE j.key = i.key_reverse)))"""
        ).fetchone()[0]
        if orphans:
            problems.append(f"{orphans} done items without their judgments")
        return problems


def _is_busy(e: sqlite3.OperationalError) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")  # take the write lock now, not halfway through
        return self.db

    def __exit__(self, exc_type, *_):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


_JUDGMENT_COLUMNS = ("key", "videoA", "videoB", "hashA", "hashB", "prompt", "model_id", "revision", "adapter",
                     "protocol", "backend", "labels", "reason", "detail", "reasoning", "verdict", "created", "config")


def _judgment(row: sqlite3.Row) -> Judgment:
    d = dict(row)
    d["labels"] = json.loads(d["labels"])
    d["verdict"] = json.loads(d["verdict"])
    d["config"] = json.loads(d["config"]) if d.get("config") else None  # absent in a schema-1 or -2 file
    return Judgment(**d)
