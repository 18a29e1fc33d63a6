"""The Tuner as other programs call it (the MCP tools, scripts): one sleeptime cycle, and the failure patterns.

`run_tuner(min_new)` gives the DQA paper's Tuner document {"training_step", "loss", "new_patterns",
"model_confidence"} (with what else the run recorded); `failure_patterns()` gives the paper's FAILURE_PATTERNS
as dicts. Both read and write the same store as `dqa tune` and `dqa patterns`.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vrthinker.store import default_path

from dqa.tune import patterns as pt
from dqa.tune.selections import open_store, usable
from dqa.tune.train import TuneSettings, details, tune


def _steps_so_far(store, model: str) -> int:
    row = store.db.execute("SELECT sum(steps) FROM tune_runs WHERE base_model=? AND status='done'", (model,)).fetchone()
    return int(row[0] or 0)


def run_tuner(min_new: int = 1, *, db: str | None = None, model: str | None = None, out: str | Path | None = None,
              settings: TuneSettings | None = None, log: Callable[[str], None] = lambda s: None,
              **options) -> dict:
    """One sleeptime cycle (`dqa tune`): trains when `min_new` selections arrived since the last run.

    Returns {"training_step": DPO steps of every successful run for this model, "loss": this run's best
    validation loss (else its last training loss; the last run's when skipped), "new_patterns": [text] found
    since the previous run, "model_confidence": agreement on the recent validation questions (0..1, None when
    unknown), "model_confidence_detail", "new_patterns_detail", "status", "detail", "run_id"}. `options` go to
    `dqa.tune.train.tune` (device, protocol, max_turns, ...)."""
    from vrthinker.judge import DEFAULT_MODEL

    db = db or default_path()
    model = model or DEFAULT_MODEL
    out = out or Path(db).resolve().parent / "dqa-adapter"
    r = tune(db, model, out, settings=settings, min_new=min_new, log=log, **options)
    with open_store(db) as store:
        run_id = r.run_id
        if run_id is None:
            row = store.db.execute("SELECT id FROM tune_runs WHERE base_model=? AND status='done' ORDER BY id DESC "
                                   "LIMIT 1", (model,)).fetchone()
            run_id = row[0] if row else None
        run = dict(store.db.execute("SELECT * FROM tune_runs WHERE id=?", (run_id,)).fetchone() or {}) \
            if run_id is not None else {}
        extra = details(store, run_id) if run_id is not None else {}
        steps = _steps_so_far(store, model)
    fresh = extra.get("new_patterns", []) if r.status == "done" else []
    conf = extra.get("model_confidence")
    loss = run.get("val_loss") if run.get("val_loss") is not None else run.get("train_loss")
    return {"training_step": steps, "loss": loss, "new_patterns": [p["text"] for p in fresh],
            "model_confidence": conf["agreement"] if conf else run.get("agreement_after"),
            "model_confidence_detail": conf, "new_patterns_detail": fresh, "status": r.status,
            "detail": r.detail, "run_id": r.run_id}


def failure_patterns(db: str | None = None, since: int | None = None) -> list[dict]:
    """The patterns the rejected videos share against the chosen ones (`dqa patterns --json`'s "patterns":
    dimension, prompt_group, measure, direction, ratio, support, n, p_value, median_difference, text), over
    the usable selections (after tune run `since`'s last one, when given). Empty when none holds or the data
    is too thin (`patterns_report` says which)."""
    return [p.to_dict() for p in patterns_report(db, since).patterns]


def patterns_report(db: str | None = None, since: int | None = None) -> pt.Report:
    from vrthinker.errors import UsageError

    with open_store(db or default_path()) as store:
        after = 0
        if since is not None:
            row = store.db.execute("SELECT last_id FROM tune_runs WHERE id=?", (since,)).fetchone()
            if row is None:
                raise UsageError(f"--since {since}: no such tune run")
            after = row[0] or 0
        sels, _ = usable(store, after)
        return pt.find(store, sels)
