"""What the MCP tools do, on the same store, job queue, A/B questions and media roots as `dqa serve`.

No MCP here: every method takes plain values, returns a document from dqa.mcp.documents, and refuses bad input
with ToolFailure (one line). Long calls run as `dqa serve` jobs (its one-model-at-a-time worker) and report
progress through a plain callable (done, total, message).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

from vrthinker.errors import JudgeError, VideoError

from dqa.mcp.documents import (
    CompareDoc,
    FrameGroup,
    FrameInfo,
    FrameRef,
    FramesDoc,
    Missing,
    PatternsDoc,
    QuestionDoc,
    SelectionDoc,
    TunerDoc,
    VerifierDoc,
)
from dqa.serve.config import MAX_PROMPT
from dqa.serve.errors import ApiError

Progress = Callable[[float, float, str], None]
MAX_FRAMES = 32  # images per get_frames call
MAX_SIDE = 2048
# the white paper's channels, and what it takes to fill each one
CHANNEL_HINTS = {
    "semantic": "not asked: add 'semantic' to components (a vision-language model, dqa mcp --backend hf)",
    "spatial": "not asked: add 'spatial' to components (ProxyCLIP grounding; needs its weights)",
    "benchmark": "not asked: add 'vbench' or a VBench dimension (e.g. temporal_flickering) to components",
    "measures": "not asked: add 'measures' (vq, mq; weight-free) to components",
    "preference": "not asked: needs a DPO adapter (run_tuner makes one) and 'preference' in components",
    "visionreward": "not asked: add 'visionreward' to components (a vision-language model)",
}
CHOSEN = {"a": "a", "b": "b", "tie": "tie", "variation_a": "a", "variation_b": "b"}


class ToolFailure(Exception):
    """A call the tools refuse or could not finish; the message is one line for the agent."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def _none(_done: float, _total: float, _message: str) -> None:
    pass


@dataclass
class TunerSettings:
    """How run_tuner trains: where adapters go and the `dqa tune` settings (see dqa.tune.train.TuneSettings)."""

    out: str
    max_steps: int = 50
    extra: Mapping[str, Any] = field(default_factory=dict)  # more TuneSettings fields


class Service:
    """One `dqa mcp` process's state: the store's connections, the job worker, the A/B questions."""

    def __init__(self, db: str, roots: Sequence[str], judge: Mapping[str, Any], *, budget_gb: float = 24.0,
                 device: str | None = None, tuner: TunerSettings | None = None, poll_s: float = 0.5,
                 components: Sequence[str] | None = None, job_lease: float | None = None):
        from dqa.serve.config import ServeConfig
        from dqa.serve.jobs import Jobs
        from dqa.serve.media import Prober
        from dqa.serve.questions import Questions
        from dqa.serve.tables import Connections

        try:
            lease = {} if job_lease is None else {"job_lease": job_lease}
            config = ServeConfig(db=db, roots=tuple(roots), judge=dict(judge), **lease)  # checks the roots, lease
        except JudgeError as e:
            raise ToolFailure(str(e)) from None
        self.db, self.roots, self.judge_kwargs = db, config.roots, dict(judge)
        self.conns = Connections(db)
        self.jobs = Jobs(self.conns, self.judge_kwargs, budget_gb=budget_gb, device=device, lease_s=config.job_lease,
                         log=lambda s: print(f"dqa mcp: {s}", file=sys.stderr, flush=True))
        self.questions = Questions(self.conns)
        self.prober = Prober()
        self.tuner = tuner or TunerSettings(out=os.path.join(os.path.dirname(os.path.abspath(db)), "dqa-adapter"))
        self.poll_s = poll_s
        self.components = list(components) if components else None
        self._tuning = threading.Lock()

    # ------------------------------------------------------------------------------------------------------
    # lifetime

    def start(self) -> None:
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()
        self.conns.close()

    # ------------------------------------------------------------------------------------------------------
    # checks shared by the tools (the same rules as dqa serve's endpoints)

    def prompt(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ToolFailure("prompt: give the text the video was generated from (it is empty)")
        if len(value) > MAX_PROMPT:
            raise ToolFailure(f"prompt: {len(value)} characters; at most {MAX_PROMPT}")
        return value.strip()

    def path(self, value: Any, field: str) -> str:
        """The real path of a file inside the media roots (relative paths: to the first root)."""
        from dqa.serve.media import resolve

        try:
            return resolve(value, self.roots, field)
        except ApiError as e:
            raise ToolFailure(e.message) from None

    def video(self, value: Any, field: str) -> tuple[str, str]:
        """(real path, content hash) of a video inside the roots that decodes."""
        real = self.path(value, field)
        try:
            self.prober.check(real, field)
            return real, self.conns.get().file_hash(real)
        except ApiError as e:
            raise ToolFailure(e.message) from None
        except JudgeError as e:
            raise ToolFailure(f"{field}: {e}") from None

    def submit(self, kind: str, request: Mapping[str, Any], hashes: Sequence[str]):
        """A job on dqa serve's queue (or the one that already answers this request)."""
        from dqa.serve.jobs import QueueFull

        try:
            return self.jobs.submit(kind, request, hashes)
        except QueueFull as e:
            raise ToolFailure(str(e)) from None

    def wait(self, job_id: str, progress: Progress, what: str) -> Any:
        """Wait for a job of the shared queue; progress says queued / running / done. Returns the Job."""
        last = None
        while True:
            job = self.jobs.get(job_id)
            if job is None:
                raise ToolFailure(f"{what}: job {job_id} vanished from the store")
            if job.state != last:
                if job.state == "done" and last != "running":  # it ran between two looks: say so, in order
                    progress(1, 2, f"{what}: running")
                last = job.state
                step = {"queued": 0, "running": 1, "done": 2, "failed": 2}[job.state]
                progress(step, 2, f"{what}: {job.state}")
            if job.state in ("done", "failed"):
                return job
            health = self.jobs.health()
            if not health.get("ok", True):
                w = health.get("worker") or {}
                why = w.get("state", "dead") + (f": {w['last_error']}" if w.get("last_error") else "")
                raise ToolFailure(f"{what}: the job worker is down ({why}); job {job_id} stays queued")
            try:
                self.jobs.wait(job_id, timeout=self.poll_s)
            except TimeoutError:
                pass

    # ------------------------------------------------------------------------------------------------------
    # the Verifier

    def default_components(self) -> list[str]:
        if self.components:
            return list(self.components)
        if self.judge_kwargs.get("backend") == "metrics":
            return ["offline"]
        return ["offline", "semantic", "spatial"]

    def verify_video(self, video: str, prompt: str, components: Sequence[str] | None = None,
                     progress: Progress = _none) -> VerifierDoc:
        from dqa.score.scoring import resolve_components

        prompt = self.prompt(prompt)
        try:
            comps = list(resolve_components(list(components) if components else self.default_components()))
        except JudgeError as e:
            raise ToolFailure(f"components: {e}") from None
        real, h = self.video(video, "video")
        job = self.submit("score", {"videos": [real], "prompt": prompt, "components": comps}, [h])
        done = self.wait(job.id, progress, "scoring")
        if done.state == "failed" or not done.result:
            raise ToolFailure(f"scoring failed: {(done.error or {}).get('message', 'no result')}")
        return verifier_doc(done.result["videos"][0])

    # ------------------------------------------------------------------------------------------------------
    # the judge

    def compare_videos(self, video1: str, video2: str, prompt: str, orders: str = "one",
                       progress: Progress = _none) -> CompareDoc:
        prompt = self.prompt(prompt)
        if orders not in ("one", "both"):
            raise ToolFailure(f"orders must be 'one' or 'both', not {orders!r}")
        v1, h1 = self.video(video1, "video1")
        v2, h2 = self.video(video2, "video2")
        job = self.submit("compare", {"video1": v1, "video2": v2, "prompt": prompt, "orders": orders}, [h1, h2])
        done = self.wait(job.id, progress, "judging")
        if done.state == "failed" or not isinstance(done.result, dict):
            raise ToolFailure(f"judging failed: {(done.error or {}).get('message', 'no result')}")
        return compare_doc(done.result, (v1, v2), prompt, self.frames_seen(done.result, (v1, v2)))

    def frames_seen(self, verdict: Mapping[str, Any], videos: tuple[str, str]) -> list[FrameGroup]:
        """The frames the judge looked at (as the A/B page shows them), as frame numbers per video."""
        from dqa.serve.thumbs import judge_frames

        doc = judge_frames(verdict, videos, lambda p: self.path(p, "video"))
        return [FrameGroup(title=g["title"], frames=[FrameRef(video=im["video"], frame=im["frame"])
                                                     for cell in g["cells"] for im in cell["images"]])
                for g in doc["groups"]]

    # ------------------------------------------------------------------------------------------------------
    # frames for the agent's own model

    def get_frames(self, video: str, count: int | None = None, indices: Sequence[int] | None = None,
                   max_side: int = 512) -> tuple[FramesDoc, list[bytes]]:
        """(what was decoded, one JPEG per frame): `count` evenly spaced frames (first and last included) or
        the frames at `indices`."""
        import cv2
        import numpy as np

        from vrthinker.media.decode import capped_size, decode_frames

        if count is not None and indices is not None:
            raise ToolFailure("give count or indices, not both")
        if indices is not None:
            if not indices:
                raise ToolFailure("indices: give at least one frame index")
            if len(indices) > MAX_FRAMES:
                raise ToolFailure(f"indices: at most {MAX_FRAMES} frames per call, not {len(indices)}")
            if any(i < 0 for i in indices):
                raise ToolFailure("indices: frame indices start at 0")
        count = 8 if count is None and indices is None else count
        if count is not None and not 1 <= count <= MAX_FRAMES:
            raise ToolFailure(f"count must be 1..{MAX_FRAMES}, not {count}")
        if not 16 <= max_side <= MAX_SIDE:
            raise ToolFailure(f"max_side must be 16..{MAX_SIDE}, not {max_side}")
        real = self.path(video, "video")

        def pick(total: int) -> list[int]:
            if indices is not None:
                return sorted({int(i) for i in indices if int(i) < total})
            if count >= total:
                return list(range(total))
            return sorted(set(np.linspace(0, total - 1, count).round().astype(int).tolist()))

        def shrink(bgr, _n):
            h, w = bgr.shape[:2]
            nh, nw = capped_size(w, h, max_side)
            return cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA) if (nh, nw) != (h, w) else bgr

        try:
            d = decode_frames(real, pick, shrink)
        except JudgeError as e:
            raise ToolFailure(f"video: {e}") from None
        if indices is not None:
            past = sorted({int(i) for i in indices} - set(d.frames))
            if past:
                raise ToolFailure(f"indices: {past[:8]} past the last frame ({d.total_frames} frames, 0.."
                                  f"{d.total_frames - 1})")
        order = [int(i) for i in indices] if indices is not None else sorted(d.frames)
        images = []
        for i in order:
            ok, buf = cv2.imencode(".jpg", d.frames[i], [cv2.IMWRITE_JPEG_QUALITY, 85])
            if not ok:
                raise ToolFailure(f"video: frame {i} could not be encoded")
            images.append(buf.tobytes())
        first = d.frames[order[0]]
        fps = float(d.fps or 0.0)
        doc = FramesDoc(video=str(video), total_frames=d.total_frames, fps=round(fps, 4), width=first.shape[1],
                        height=first.shape[0],
                        frames=[FrameInfo(index=i, time_s=round(i / fps, 4) if fps > 0 else 0.0) for i in order])
        return doc, images

    # ------------------------------------------------------------------------------------------------------
    # A/B questions for a person (the same questions and selections as the A/B page)

    def ask_preference(self, prompt: str, a: str, b: str, dimension: str | None = None) -> QuestionDoc:
        from dqa.serve.questions import dimension_of

        prompt = self.prompt(prompt)
        try:
            dim = dimension_of(dimension)
        except ApiError as e:
            raise ToolFailure(e.message) from None
        ra, ha = self.video(a, "a")
        rb, hb = self.video(b, "b")
        if ha == hb:
            raise ToolFailure("a and b have the same content")
        job = self.submit("compare", {"video1": ra, "video2": rb, "prompt": prompt, "orders": "one"}, [ha, hb])
        q = self.questions.ask(prompt, ra, rb, dim, job.id)
        return QuestionDoc(test_id=q.id, prompt=q.prompt, variation_a=q.a, variation_b=q.b,
                           dimensions=list(q.dimensions), page=f"/ab/{q.id}", judge_job=job.id)

    def record_selection(self, test_id: int, chosen: str, dimension: str | None = None,
                         user: str | None = None) -> SelectionDoc:
        c = CHOSEN.get(str(chosen or "").strip().lower())
        if c is None:
            raise ToolFailure(f"chosen must be variation_a, variation_b or tie (or a, b), not {chosen!r}")
        try:
            ans = self.questions.answer(int(test_id), c, dimension, user)
        except ApiError as e:
            raise ToolFailure(e.message) from None
        q = self.questions.get(int(test_id))
        when = _utc(ans.created)
        if ans.selection is not None:
            row = self.conns.get().db.execute("SELECT time FROM selections WHERE id=?", (ans.selection,)).fetchone()
            when = row["time"] if row and row["time"] else when
        side = {"a": "variation_a", "b": "variation_b"}
        return SelectionDoc(test_id=q.id, variation_a=q.a, variation_b=q.b,
                            chosen=side.get(ans.chosen, "tie"),
                            rejected={"a": "variation_b", "b": "variation_a"}.get(ans.chosen),
                            timestamp=when, dimension=ans.dimension, user=ans.user, selection=ans.selection,
                            status=ans.status)

    # ------------------------------------------------------------------------------------------------------
    # the Tuner

    def base_model(self) -> str:
        from vrthinker.judge import DEFAULT_MODEL

        return self.judge_kwargs.get("model") or DEFAULT_MODEL

    def run_tuner(self, min_new: int = 1, progress: Progress = _none) -> TunerDoc:
        """One sleeptime cycle: train when at least `min_new` new selections arrived, else say so."""
        from dqa.tune.selections import open_store
        from dqa.tune.train import TuneSettings, pending

        if min_new < 1:
            raise ToolFailure(f"min_new must be at least 1, not {min_new}")
        model = self.base_model()
        with self._tuning:  # one tuner run per process at a time
            with open_store(self.db) as store:
                sels, new, _ = pending(store, model)
            if len(new) >= min_new:  # a run reads every usable selection's videos: all must be inside the roots
                self.check_inside(sels)
            if len(new) >= min_new and self.judge_kwargs.get("backend") != "hf":
                raise ToolFailure(f"{len(new)} new selection(s) to train on, but run_tuner trains the hf "
                                  f"(Qwen2.5-VL) judge: start dqa mcp with --backend hf, not "
                                  f"{self.judge_kwargs.get('backend')}")
            kw = self.judge_kwargs
            options = {k: kw.get(k) for k in ("device", "dtype", "revision", "protocol", "max_new_tokens",
                                              "quantize", "max_turns")}
            steps = [0]

            def log(line: str) -> None:
                steps[0] += 1
                progress(steps[0], 0, line)

            settings = TuneSettings(max_steps=self.tuner.max_steps, **dict(self.tuner.extra))
            # training loads the model itself: the job worker pauses and lets its judge go meanwhile
            device = self.jobs.exclusive() if len(new) >= min_new else contextlib.nullcontext()
            try:
                with device:
                    return self._tune(min_new, model, settings, log, options, len(new))
            except JudgeError as e:
                raise ToolFailure(f"tuning failed: {e}") from None

    def _tune(self, min_new: int, model: str, settings: Any, log: Callable[[str], None],
              options: Mapping[str, Any], new: int) -> TunerDoc:
        """Train (or skip) through dqa.tune's API when this install has it, else dqa.tune.train.tune."""
        api = _tuner_api()
        if api is not None:
            d = api.run_tuner(min_new, db=self.db, model=model, out=self.tuner.out, settings=settings, log=log,
                              **options)
            return self.tuner_doc(d, model, new)
        from dqa.tune.train import tune

        r = tune(self.db, model, self.tuner.out, settings=settings, min_new=min_new, log=log, **options)
        return self.tuner_doc({"status": r.status, "detail": r.detail, "run_id": r.run_id}, model, new)

    def check_inside(self, selections: Sequence[Any]) -> None:
        """Refuse a tuner run that would read videos outside the media roots (recorded by `dqa select` or an
        import from elsewhere): nothing outside the roots is read through this server."""
        from dqa.serve.media import inside

        out = [s for s in selections if not all(inside(os.path.realpath(p), self.roots)
                                                for p in (s.video_a, s.video_b))]
        if out:
            raise ToolFailure(f"{len(out)} selection(s) (e.g. #{out[0].id}) use videos outside the media roots: "
                              "add their folder as a --media-root, or train with dqa tune")

    def tuner_doc(self, d: Mapping[str, Any], model: str, new: int) -> TunerDoc:
        """The paper's Tuner document: the run's own figures where the tuner gives them, else the tune_runs
        table's (all successful runs of this base model)."""
        from dqa.tune.selections import open_store

        with open_store(self.db) as store:
            rows = [dict(x) for x in store.db.execute(
                "SELECT * FROM tune_runs WHERE base_model=? AND status='done' ORDER BY id", (model,))]
        last = rows[-1] if rows else {}
        loss = last.get("val_loss") if last.get("val_loss") is not None else last.get("train_loss")
        status = d.get("status") if d.get("status") in ("done", "skipped") else "skipped"
        return TunerDoc(training_step=int(d.get("training_step", sum(int(x.get("steps") or 0) for x in rows))),
                        loss=d.get("loss", loss), new_patterns=[str(x) for x in d.get("new_patterns") or []],
                        model_confidence=d.get("model_confidence", last.get("agreement_after")),
                        model_confidence_detail=d.get("model_confidence_detail"), status=status,
                        detail=str(d.get("detail") or ""), run_id=d.get("run_id"), new_selections=new,
                        adapter=last.get("adapter"))

    def failure_patterns(self, progress: Progress = _none) -> PatternsDoc:
        """What rejected videos share against chosen ones, over the store's usable selections. Only videos
        inside the media roots are measured (the others are named as skipped, unread)."""
        try:
            from dqa.tune import patterns as pt
        except ImportError:
            raise ToolFailure("failure patterns are not available in this install (dqa.tune.patterns is "
                              "missing)") from None
        from dqa.serve.media import inside
        from dqa.tune.selections import open_store, usable

        def measure(path: str):
            from dqa.measures.video import measure_video

            real = os.path.realpath(path)
            if not inside(real, self.roots):
                raise VideoError(path, "outside the media roots: not read")
            return measure_video(real)

        with open_store(self.db) as store:
            sels, _ = usable(store)
            report = pt.find(store, sels, measure=measure, progress=lambda s: progress(0, 0, s)).to_dict()
        found = report.get("patterns") or []
        detail = report.get("note") or (f"{report.get('selections', 0)} selection(s) measured, "
                                        f"{report.get('tests', 0)} (group, measure) test(s), "
                                        f"{len(found)} pattern(s) hold")
        skipped = report.get("skipped") or []
        if skipped:
            detail += (f"; {len(skipped)} selection(s) skipped (e.g. #{skipped[0]['selection_id']}: "
                       f"{skipped[0]['why']})")
        return PatternsDoc(FAILURE_PATTERNS=[str(p.get("text", "")) for p in found], patterns=found, detail=detail)

    # ------------------------------------------------------------------------------------------------------
    # resources

    def recent_grades(self, limit: int = 20) -> list[dict]:
        """The latest grades from score jobs (this server's and dqa serve's on the same store), newest first."""
        import json

        rows = self.conns.get().db.execute(
            "SELECT id, result, finished FROM serve_jobs WHERE kind='score' AND state='done' "
            "ORDER BY finished DESC LIMIT ?", (limit,)).fetchall()
        out = []
        for r in rows:
            for v in (json.loads(r["result"]) or {}).get("videos", []):
                g = v.get("grade") or {}
                out.append({"video": v.get("video"), "prompt": v.get("prompt"), "grade": g.get("grade"),
                            "action": g.get("action"), "score": g.get("score"), "job": r["id"],
                            "finished": _utc(r["finished"]) if r["finished"] else None})
        return out[:limit]

    def tuner_history(self) -> list[dict]:
        from dqa.tune.train import runs

        keep = ("id", "base_model", "adapter", "status", "steps", "train_loss", "val_loss", "agreement_before",
                "agreement_after", "n_train", "n_val", "detail")
        return [{k: r.get(k) for k in keep} | {"started": _utc(r["started"]) if r.get("started") else None,
                                               "finished": _utc(r["finished"]) if r.get("finished") else None}
                for r in runs(self.conns.get())]

    def recent_selections(self, limit: int = 50) -> list[dict]:
        """USER_SELECTIONS in the paper's shape, newest first (from dqa select, imports, the A/B page, MCP)."""
        rows = self.conns.get().db.execute("SELECT * FROM selections ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"test_id": _question_of(r["source"]), "variation_a": r["video_a"], "variation_b": r["video_b"],
                 "chosen": f"variation_{r['chosen']}", "rejected": f"variation_{'b' if r['chosen'] == 'a' else 'a'}",
                 "timestamp": r["time"], "dimension": r["dimension"], "user": r["user"], "selection": r["id"],
                 "source": r["source"]} for r in rows]


# ----------------------------------------------------------------------------------------------------------
# documents from stored results


def _tuner_api():
    """dqa.tune.api (run_tuner, failure patterns) when this install has it, else None."""
    try:
        from dqa.tune import api
    except ImportError:
        return None
    return api


def _question_of(source: str) -> int | None:
    """The A/B question a selection answered (the page and MCP record source 'serve:ab/N'), else None."""
    head, _, n = str(source or "").partition("serve:ab/")
    return int(n) if not head and n.isdigit() else None


def verifier_doc(v: Mapping[str, Any]) -> VerifierDoc:
    """The Verifier document of one video of a `dqa score` result (ScoreRun.to_dict()['videos'][k])."""
    g = v.get("grade") or {}
    channels = {k: float(x) for k, x in (g.get("channels") or {}).items() if x is not None}
    components = {k: float(c["value"]) for k, c in (v.get("components") or {}).items()}
    missing = [Missing(component=k, reason=f.get("reason", "failed"), message=f.get("message", ""))
               for k, f in (v.get("missing") or {}).items()]
    named = {m.component for m in missing}
    for ch in g.get("missing") or ():
        if ch not in named:
            missing.append(Missing(component=ch, reason="not_asked", message=CHANNEL_HINTS.get(ch, "not asked")))
    from dqa.score.grade import load_config

    config = load_config()
    parts = []
    units = {k: c.get("unit") for k, c in (v.get("components") or {}).items()}
    for ch, x in channels.items():
        members = [f"{k} {units[k]:.3f}" for k in units
                   if k != ch and units[k] is not None and config.channel_of(k) == ch]
        parts.append(f"{ch} {x:.3f}" + (f" ({', '.join(members)})" if members else ""))
    why = "; ".join(parts) or "no channel could be scored"
    if missing:
        why += "; not scored: " + ", ".join(f"{m.component} ({m.reason})" for m in missing)
    score = g.get("score")
    if score is not None:
        capped = f", capped by {g['capped_by']}" if g.get("capped_by") else ""
        why += f". Grade {g.get('grade')} ({score:.3f}{capped}): {g.get('action')}."
    return VerifierDoc(video=str(v.get("video")), prompt=str(v.get("prompt") or ""),
                       semantic_score=channels.get("semantic"), spatial_score=channels.get("spatial"),
                       benchmark_score=channels.get("benchmark"), prompt_adherence=score, reasoning=why,
                       grade=str(g.get("grade", "-")), action=str(g.get("action", "none")), missing=missing,
                       channels=channels, components=components)


def compare_doc(verdict: Mapping[str, Any], videos: tuple[str, str], prompt: str,
                frames: list[FrameGroup]) -> CompareDoc:
    labels = verdict.get("labels") or {}
    return CompareDoc(video1=videos[0], video2=videos[1], prompt=prompt,
                      labels={d: labels.get(d) for d in ("TA", "VQ", "MQ", "OA")},
                      probabilities=verdict.get("probabilities") or None, reasoning=str(verdict.get("reasoning") or ""),
                      complete=bool(verdict.get("complete")), reason=verdict.get("reason"),
                      detail=str(verdict.get("detail") or ""), backend=str(verdict.get("backend") or ""),
                      model_id=str(verdict.get("model_id") or ""), frames=frames)
