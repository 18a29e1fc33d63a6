"""Judge a file of pairs with one loaded judge, storing every ordered judgment so a re-run resumes.

Each input row is an item (video1, video2, prompt, id). Its ordered judgments, (video1, video2) and, with
orders "both", (video2, video1), are looked up by content key (`store.judgment_key`); only missing ones
are judged, and the judgments and the item row are written in one transaction. A row whose video is
missing, unreadable or undecodable is recorded as 'bad' with its reason and the batch goes on.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vrthinker import jsonl
from vrthinker.errors import UsageError, VideoError
from vrthinker.identity import plain
from vrthinker.orders import agreement, combine
from vrthinker.store import Item, Judgment, ModelIdentity, Store, judgment_key
from vrthinker.verdict import DIMENSIONS, Verdict, plain_probabilities

REQUIRED = ("video1", "video2", "prompt")
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


# ----------------------------------------------------------------------------------------------------------
# input


@dataclass(frozen=True)
class PairRow:
    """One input row: two videos (absolute paths), the prompt, an id, and its line in the file."""

    item_id: str
    video1: str
    video2: str
    prompt: str
    line: int
    position: int


def _resolve(value: str, base: Path) -> str:
    """A relative path is taken against the PAIRS file's folder, else the current directory."""
    p = Path(os.path.expanduser(value))
    if p.is_absolute():
        return str(p)
    beside = base / p
    if beside.exists() or not p.exists():
        return os.path.abspath(beside)
    return os.path.abspath(p)


def read_pairs(path: str | os.PathLike) -> list[PairRow]:
    """Read PAIRS as .jsonl or .csv (fields video1, video2, prompt, optional id; default id: the row number).

    Raises UsageError naming the file and line for an unknown extension, a malformed row, a missing or
    empty field, or a repeated id.
    """
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"{path}: unknown pairs format {path.suffix or '(no extension)'!r}; "
                         f"use {', '.join(FORMATS)}")
    text = jsonl.read_text(path, newline="" if kind == "csv" else None)
    records: list[tuple[int, Any]] = []
    if kind == "jsonl":
        records = list(jsonl.records(path, text=text, objects=False))
    else:
        # read with newline="" (csv's own rule): a quoted prompt keeps its line breaks as written
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [f for f in REQUIRED if f not in (reader.fieldnames or [])]
        if missing:
            raise UsageError(f"{path}:1: the CSV header lacks {', '.join(missing)} "
                             f"(needs {', '.join(REQUIRED)}, optional id)")
        for row in reader:
            records.append((reader.line_num, row))
    base = path.resolve().parent
    rows: list[PairRow] = []
    seen: dict[str, int] = {}
    for position, (line, rec) in enumerate(records, 1):
        if not isinstance(rec, dict):
            raise UsageError(f"{path}:{line}: each line must be a JSON object with {', '.join(REQUIRED)}")
        values = {}
        for f in REQUIRED:
            v = rec.get(f)
            if not isinstance(v, str) or not v.strip():
                raise UsageError(f"{path}:{line}: missing or empty field {f!r}")
            values[f] = v.strip()
        raw_id = rec.get("id")
        item_id = str(position) if raw_id is None or str(raw_id).strip() == "" else str(raw_id).strip()
        if item_id in seen:
            raise UsageError(f"{path}:{line}: id {item_id!r} repeats line {seen[item_id]}")
        seen[item_id] = line
        rows.append(PairRow(item_id, _resolve(values["video1"], base), _resolve(values["video2"], base),
                            values["prompt"], line, position))
    return rows


# ----------------------------------------------------------------------------------------------------------
# the judge's identity


def judge_config(judge: Any) -> dict:
    """The judge's whole configuration as JSON: everything that shapes its answers, hence its judgments' key.

    A `Judge` is its backend's `config()` (model identity, adapter, quantization, dtype, device, decoding)
    with its profile (name, version, decoding overrides) and limits (turns, new tokens, frames); any
    other judge (the weight-free one) says it with its own `config()`.
    """
    backend = getattr(judge, "backend", None)
    profile = getattr(judge, "profile", None)
    if backend is not None and profile is not None:
        own = backend.config() if callable(getattr(backend, "config", None)) else {
            "backend": str(getattr(backend, "name", "")), "model_id": str(getattr(backend, "model_id", "")),
            "revision": str(getattr(backend, "revision", None) or "")}
        return plain({**own, "profile": {"name": profile.name, "version": profile.version},
                      "profile_generation": dict(profile.generation or {}),
                      "max_turns": judge.max_turns, "max_new_tokens": judge.max_new_tokens,
                      "min_frames": getattr(judge, "min_frames", None)})
    if callable(getattr(judge, "config", None)):
        return plain(judge.config())
    return {}


def identify(judge: Any, adapter: str | None = None, store: Store | None = None) -> ModelIdentity:
    """What makes this judge's answers what they are: model id, revision, protocol, backend, adapter and
    the whole configuration (`judge_config`). The one way a judge is named: stored judgments are keyed by
    it and the tuner's stored replies by its `label`.

    A `Judge` has them on its backend and profile; a judge without a backend (the weight-free metrics
    judge) is read from its attributes, else its module's MODEL_ID / PROTOCOL / BACKEND constants.
    A local model or adapter is named by its resolved path (`./ckpt` is `/abs/ckpt`); with `store`, its
    files' hashes come from the store's cache (each file read once, not once per run).
    """
    from vrthinker.identity import hashing_with, local_dir

    backend = getattr(judge, "backend", None)
    with hashing_with(store.file_hash if store is not None else None):
        config = judge_config(judge)
    if backend is not None and hasattr(backend, "model_id"):
        adapter = adapter or getattr(backend, "adapter", None)
        if local_dir(adapter) is not None:
            adapter = str(local_dir(adapter))
        model_id = str(local_dir(backend.model_id) or backend.model_id)
        return ModelIdentity(model_id=model_id, revision=str(getattr(backend, "revision", None) or ""),
                             protocol=str(judge.profile.version), backend=str(getattr(backend, "name", "")),
                             adapter=str(adapter or ""), config=config)
    module = sys.modules.get(type(judge).__module__)
    return ModelIdentity(
        model_id=str(getattr(judge, "model_id", None) or getattr(module, "MODEL_ID", type(judge).__name__)),
        revision=str(getattr(judge, "revision", None) or ""),
        protocol=str(getattr(judge, "protocol", None) or getattr(module, "PROTOCOL", "")),
        backend=str(getattr(module, "BACKEND", "") if backend is None else backend),
        adapter=str(adapter or ""), config=config)


# ----------------------------------------------------------------------------------------------------------
# running


@dataclass(frozen=True)
class ItemOutcome:
    """What happened to one row: 'judged' (the model ran), 'reused' (all from the store) or 'bad'."""

    item_id: str
    position: int
    status: str
    reason: str | None = None
    detail: str = ""
    labels: dict[str, int | None] = field(default_factory=dict)
    agreement: dict[str, bool] = field(default_factory=dict)  # per dimension both orders labelled: agree?
    probabilities: dict | None = None  # the item's label probabilities (both orders averaged), if read

    @property
    def consistency(self) -> float | None:
        """Share of dimensions where both orders agree (None unless judged in both orders)."""
        return sum(self.agreement.values()) / len(self.agreement) if self.agreement else None


@dataclass(frozen=True)
class BatchSummary:
    """Counts of one run, and its position consistency over the items judged in both orders."""

    job: str
    items: int
    judged: int
    reused: int
    bad: int
    judgments_written: int
    incomplete: int  # done items with a label missing for a reason other than the backend's design
    agreed: int
    compared: int
    per_dimension: dict[str, tuple[int, int]]  # dimension -> (agreed, compared)
    seconds: float
    bad_rows: tuple[ItemOutcome, ...] = ()

    @property
    def consistency(self) -> float | None:
        """Share of dimensions, over items judged in both orders, where both orders agree (None: none)."""
        return self.agreed / self.compared if self.compared else None


def _stored_verdict(v: Verdict) -> dict:
    """The verdict as stored: the full trace (frames shown, replies) minus the rendered prompts, which are
    large (the whole conversation every turn) and reproducible from the protocol."""
    d = v.to_dict(trace=True)
    for t in d["turns"]:
        t.pop("rendered", None)
    d.pop("per_order", None)
    return d


def _as_verdict(j: Judgment) -> Verdict:
    return Verdict(labels=j.labels, reason=j.reason, detail=j.detail, reasoning=j.reasoning,
                   videos=(j.videoA, j.videoB), prompt=j.prompt, model_id=j.model_id, protocol=j.protocol,
                   backend=j.backend, probabilities=(j.verdict or {}).get("probabilities"),
                   mass=(j.verdict or {}).get("mass"))  # None for judgments stored before they were read


def _judgment(key: str, ha: str, hb: str, prompt: str, ident: ModelIdentity, v: Verdict, now: float) -> Judgment:
    """One ordered verdict as the store keeps it."""
    return Judgment(
        key=key, videoA=v.videos[0] or "", videoB=v.videos[1] or "", hashA=ha, hashB=hb,
        prompt=prompt, model_id=ident.model_id, revision=ident.revision, adapter=ident.adapter,
        protocol=ident.protocol, backend=ident.backend, labels={d: v.labels.get(d) for d in DIMENSIONS},
        reason=v.reason, detail=v.detail, reasoning=v.reasoning, verdict=_stored_verdict(v), created=now,
        config=ident.config or None)


def record_compare(store: Store, judge: Any, v: Verdict, adapter: str | None = None, job: str = "judge") -> str:
    """Keep one `judge V1 V2` comparison in the store as `judge batch` keeps a row (job "judge"), so batch, rank,
    pairs and report reuse it. Returns the item id. A judgment already stored under the same key is kept."""
    if v.reason in ("bad_video", "server_error") or v.extra.get("refused"):
        raise UsageError(f"not stored: {v.reason}")
    ident = identify(judge, adapter=adapter, store=store)
    v1, v2 = (str(Path(p).resolve()) for p in v.videos)
    h1, h2 = store.file_hash(v1), store.file_hash(v2)
    per = v.per_order or (v,)
    keys = [judgment_key(h1, h2, v.prompt, ident)] + ([judgment_key(h2, h1, v.prompt, ident)] if len(per) > 1 else [])
    now = time.time()
    judgments = [_judgment(k, ha, hb, v.prompt, ident, o, now)
                 for k, (ha, hb), o in zip(keys, [(h1, h2), (h2, h1)], per)]
    item_id = hashlib.sha256(f"{h1}\0{h2}\0{v.prompt}".encode()).hexdigest()[:16]
    store.record(Item(job=job, item_id=item_id, position=0, video1=v1, video2=v2, prompt=v.prompt,
                      orders="both" if len(keys) > 1 else "one", status="done", key_forward=keys[0],
                      key_reverse=keys[1] if len(keys) > 1 else None), judgments)
    return item_id


def combined(forward: Judgment, reverse: Judgment | None) -> Verdict:
    """The item's verdict for (video1, video2): the forward judgment, or both orders combined."""
    f = _as_verdict(forward)
    return f if reverse is None else combine(f, _as_verdict(reverse))


def _judge(judge: Any, row: PairRow, need_forward: bool, need_reverse: bool) -> list[Verdict]:
    """Run the judge for the orders still missing; returns [forward?, reverse?] verdicts in that order."""
    if need_forward and need_reverse:
        v = judge.compare(row.video1, row.video2, row.prompt, orders="both")
        if v.per_order:
            return list(v.per_order)
        if v.reason in ("bad_video", "server_error"):
            return [v]
        # a judge without per-order verdicts (the metrics judge is order-free): ask each order on its own
        return [v, judge.compare(row.video2, row.video1, row.prompt, orders="one")]
    if need_forward:
        return [judge.compare(row.video1, row.video2, row.prompt, orders="one")]
    return [judge.compare(row.video2, row.video1, row.prompt, orders="one")]


def run_batch(judge: Any, rows: Sequence[PairRow], store: Store, *, job: str, orders: str = "both",
              ident: ModelIdentity | None = None,
              on_item: Callable[[ItemOutcome], None] | None = None, concurrency: int = 1) -> BatchSummary:
    """Judge every row not already in `store` (for this judge) and record each as done or bad.

    `on_item` is called after each row (a progress bar). Safe to kill at any moment: each row's
    judgments and item are one transaction, so at most the rows in flight are lost. With a backend that
    takes several conversations at once (`backend.concurrent`, a served model), at most `concurrency`
    conversations are in flight (rows judged in threads, both orders of a row stepped together; at 1 they
    take turns); the store is read and written by this thread only, rows recorded as they finish.
    """
    if orders not in ("one", "both"):
        raise UsageError(f"orders must be 'one' or 'both', not {orders!r}")
    ident = ident or identify(judge, store=store)
    t0 = time.perf_counter()
    counts = {"judged": 0, "reused": 0, "bad": 0, "written": 0, "incomplete": 0}
    per_dim = {d: [0, 0] for d in DIMENSIONS}
    bad_rows: list[ItemOutcome] = []
    # `concurrency` counts conversations in flight, exactly: the backend holds one slot per request it has
    # at a server (backend.limit); a row judged in both orders steps its two conversations together, so
    # ceil(N / 2) rows keep N conversations going (at N = 1 the two orders take turns, one request at a time)
    backend = getattr(judge, "backend", None)
    served = getattr(backend, "concurrent", False)
    concurrency = max(1, int(concurrency))
    workers = -(-concurrency // (2 if orders == "both" else 1)) if served else 1
    limit = backend.limit(concurrency) if served and hasattr(backend, "limit") else contextlib.nullcontext()
    with limit:
        results = (_run_many(judge, rows, store, job, orders, ident, counts, workers) if workers > 1 else
                   (_run_one(judge, row, store, job, orders, ident, counts) for row in rows))
        _consume(results, bad_rows, per_dim, on_item)
    agreed = sum(a for a, _ in per_dim.values())
    compared = sum(c for _, c in per_dim.values())
    return BatchSummary(job=job, items=len(rows), judged=counts["judged"], reused=counts["reused"],
                        bad=counts["bad"], judgments_written=counts["written"], incomplete=counts["incomplete"],
                        agreed=agreed, compared=compared, per_dimension={d: tuple(v) for d, v in per_dim.items()},
                        seconds=round(time.perf_counter() - t0, 3), bad_rows=tuple(bad_rows))


def _consume(outs: Iterable[ItemOutcome], bad_rows: list, per_dim: dict,
             on_item: Callable[[ItemOutcome], None] | None) -> None:
    for out in outs:
        if out.status == "bad":
            bad_rows.append(out)
        for d, ok in out.agreement.items():
            per_dim[d][1] += 1
            per_dim[d][0] += ok
        if on_item is not None:
            on_item(out)


def _run_many(judge, rows: Sequence[PairRow], store: Store, job: str, orders: str, ident: ModelIdentity,
              counts: dict, workers: int) -> Iterable[ItemOutcome]:
    """`_run_one` over `rows` with up to `workers` rows being judged at once, yielded as they finish."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    pending: dict[Any, tuple[PairRow, bool, bool]] = {}
    pool = ThreadPoolExecutor(workers, thread_name_prefix="batch")

    def submit(row: PairRow, f: bool, r: bool) -> None:
        pending[pool.submit(_judge, judge, row, f, r)] = (row, f, r)

    def collect(done) -> Iterable[ItemOutcome]:
        for fut in done:
            row, f, r = pending.pop(fut)
            yield _run_one(judge, row, store, job, orders, ident, counts, judged=(f, r, fut.result()))

    try:
        for row in rows:
            while len(pending) >= workers:
                yield from collect(wait(pending, None, FIRST_COMPLETED).done)
            out = _run_one(judge, row, store, job, orders, ident, counts, ahead=lambda f, r, row=row: submit(row, f, r))
            if out is not None:
                yield out
        while pending:
            yield from collect(wait(pending, None, FIRST_COMPLETED).done)
    finally:  # interrupted: rows not yet started are dropped; nothing is written for those in flight
        pool.shutdown(wait=False, cancel_futures=True)


def _run_one(judge, row: PairRow, store: Store, job: str, orders: str, ident: ModelIdentity,
             counts: dict, judged: tuple[bool, bool, list[Verdict]] | None = None,
             ahead: Callable[[bool, bool], None] | None = None) -> ItemOutcome | None:
    base = Item(job=job, item_id=row.item_id, position=row.position, video1=row.video1, video2=row.video2,
                prompt=row.prompt, orders=orders, status="done")

    def bad(reason: str, detail: str) -> ItemOutcome:
        item = replace(base, status="bad", reason=reason, detail=detail)
        store.record(item)
        counts["bad"] += 1
        return ItemOutcome(row.item_id, row.position, "bad", reason, detail)

    try:
        h1, h2 = store.file_hash(row.video1), store.file_hash(row.video2)
    except VideoError as e:
        return bad("missing_file" if e.cause == "file not found" else "unreadable", str(e))
    kf = judgment_key(h1, h2, row.prompt, ident)
    kr = judgment_key(h2, h1, row.prompt, ident) if orders == "both" else None
    have = store.existing([kf] + ([kr] if kr else []))
    need_f, need_r = kf not in have, kr is not None and kr not in have
    if judged is None and (need_f or need_r) and ahead is not None:
        ahead(need_f, need_r)  # judged in a worker thread; this row comes back here when it is done
        return None
    if judged is not None:  # judged for the orders missing then; a row with the same inputs may have
        asked_f, asked_r, verdicts = judged  # stored some of them since
        by_order = dict(zip([o for o, asked in (("f", asked_f), ("r", asked_r)) if asked], verdicts))
        if len(verdicts) == 1 and verdicts[0].reason in ("bad_video", "server_error"):
            by_order = {"f": verdicts[0], "r": verdicts[0]}
        need_f, need_r = need_f and "f" in by_order, need_r and "r" in by_order
    new: dict[str, Judgment] = {}
    if need_f or need_r:
        verdicts = ([v for o, v in by_order.items() if (o == "f" and need_f) or (o == "r" and need_r)]
                    if judged is not None else _judge(judge, row, need_f, need_r))
        # a server that failed after its retries, or refused a prompt past its context length (--max-model-len,
        # not the model's answer): the row is 'bad' for now (no judgment kept), so a rerun judges it again
        broken = next((v for v in verdicts
                       if v.reason in ("bad_video", "server_error") or v.extra.get("refused")), None)
        if broken is not None:
            return bad(broken.reason, broken.detail)
        wanted = ([(kf, h1, h2)] if need_f else []) + ([(kr, h2, h1)] if need_r else [])
        now = time.time()
        for (key, ha, hb), v in zip(wanted, verdicts):
            new[key] = _judgment(key, ha, hb, row.prompt, ident, v, now)
    item = replace(base, key_forward=kf, key_reverse=kr)
    old = store.item(job, row.item_id)
    if new or old is None or replace(old, updated=0.0) != item:  # a reused item is rewritten only if it changed
        store.record(item, list(new.values()))
    counts["written"] += len(new)
    counts["judged" if new else "reused"] += 1
    forward = new.get(kf) or store.judgment(kf)
    reverse = (new.get(kr) or store.judgment(kr)) if kr else None
    v = combined(forward, reverse)
    if not v.as_designed:
        counts["incomplete"] += 1
    return ItemOutcome(row.item_id, row.position, "judged" if new else "reused", v.reason, v.detail,
                       {d: v.labels.get(d) for d in DIMENSIONS},
                       agreement(forward.labels, reverse.labels) if reverse is not None else {},
                       plain_probabilities(v.probabilities))


# ----------------------------------------------------------------------------------------------------------
# reading back


@dataclass(frozen=True)
class JudgedItem:
    """A stored item with its judgments; `verdict` is for (video1, video2), both orders combined."""

    item: Item
    forward: Judgment | None
    reverse: Judgment | None
    verdict: Verdict | None

    @property
    def consistency(self) -> float | None:
        return self.verdict.extra.get("consistency") if self.verdict is not None else None

    @property
    def inconsistent(self) -> tuple[str, ...]:
        return tuple(self.verdict.extra.get("inconsistent") or ()) if self.verdict is not None else ()

    def to_dict(self) -> dict:
        """One export line: the item, its labels for (video1, video2), each order as the model answered."""
        it, v, ref = self.item, self.verdict, self.forward
        per_order = []
        for name, j in (("forward", self.forward), ("reverse", self.reverse)):
            if j is not None:
                per_order.append({"order": name, "key": j.key, "shown": [j.videoA, j.videoB],
                                  "labels": dict(j.labels), "reason": j.reason,
                                  "frames_requested": j.verdict.get("frames_requested", []),
                                  "probabilities": j.verdict.get("probabilities")})
        return {
            "id": it.item_id, "job": it.job, "status": it.status, "video1": it.video1, "video2": it.video2,
            "prompt": it.prompt, "orders": it.orders,
            "labels": {d: v.labels.get(d) for d in DIMENSIONS} if v else {d: None for d in DIMENSIONS},
            "reason": v.reason if v else it.reason, "detail": (v.detail if v else it.detail) or "",
            "reasoning": v.reasoning if v else "",
            "consistency": self.consistency, "inconsistent": list(self.inconsistent),
            "single_order": list(v.extra.get("single_order") or ()) if v else [],
            "probabilities": plain_probabilities(v.probabilities) if v else None,
            "tv_distance": v.extra.get("tv_distance") if v else None,
            "backend": ref.backend if ref else None, "model_id": ref.model_id if ref else None,
            "revision": ref.revision if ref else None, "adapter": ref.adapter if ref else None,
            "protocol": ref.protocol if ref else None, "config": ref.config if ref else None,
            "per_order": per_order,
        }


def judged_items(store: Store, job: str | None = None, include_bad: bool = False) -> Iterable[JudgedItem]:
    """Stored items (done ones, and bad ones if asked) with their judgments, in input order."""
    for it in store.items(job):
        if it.status != "done":
            if include_bad:
                yield JudgedItem(it, None, None, None)
            continue
        f, r = store.judgment(it.key_forward), store.judgment(it.key_reverse)
        yield JudgedItem(it, f, r, combined(f, r) if f is not None else None)
