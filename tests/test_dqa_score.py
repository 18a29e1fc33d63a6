"""dqa score: the scheduler (budget, one load per worker, memory back to baseline, per-video failures,
resume), grade synthesis, and the CLI on real clips with the weight-free worker."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from dqa.score.grade import load_config, synthesize
from dqa.score.scheduler import Item, Scheduler
from dqa.score.scoring import resolve_components, score
from dqa.workers.base import Score, Worker
from vrthinker.errors import UsageError

LEAK: list = []


class FakeWorker(Worker):
    """A worker with a real torch module, counting loads and scored videos; can fail or leak on request."""

    name = "fake"
    components = ("spatial",)
    needs_prompt = True

    def __init__(self, footprint=1.0, fail_load=False, leak=False, bad=(), interrupt_at=None, **kw):
        super().__init__(**kw)
        self.fp, self.fail_load, self.leak, self.bad, self.interrupt_at = footprint, fail_load, leak, bad, interrupt_at
        self.loads, self.scored, self.net = 0, [], None

    def footprint_gb(self):
        return self.fp

    def _load(self):
        from vrthinker.errors import ModelLoadError

        if self.fail_load:
            raise ModelLoadError("fake model not found")
        self.loads += 1
        self.net = torch.nn.Linear(4, 1)
        if self.leak:
            LEAK.append(self.net)

    def score(self, video, prompt):
        if self.interrupt_at is not None and len(self.scored) == self.interrupt_at:
            raise KeyboardInterrupt
        if any(b in video.path for b in self.bad):
            raise RuntimeError("model blew up on this one")
        self.scored.append(video.path)
        v = float(video.frames.mean() / 255)
        return [Score(self.components[0], v, v, {"frames": len(video.frames)})]

    def unload(self):
        self.net = None
        super().unload()


class FakeVQ(FakeWorker):
    name = "fake_vq"
    components = ("aesthetic_quality",)
    needs_prompt = False


@pytest.fixture(scope="module")
def videos(clips, tmp_path_factory):
    from vrthinker_eval.synth import render_scene, write_video

    d = tmp_path_factory.mktemp("score")
    paths = [str(clips["a"]), str(clips["b"])]
    for i, scene in enumerate(("shapes", "orbit", "text")):
        paths.append(str(write_video(d / f"v{i}.mp4", render_scene(scene, 96, 64, 12, seed=10 + i), fps=12)))
    return paths


def test_k_loads_for_n_videos_and_memory_freed(videos):
    a, b = FakeWorker(), FakeVQ()
    sched = Scheduler([a, b], budget_gb=24)
    r = sched.run([Item(p, "a red ball") for p in videos])
    assert a.loads == 1 and b.loads == 1 and r.loads == 2
    assert len(a.scored) == len(videos) == len(b.scored)
    assert all(p.freed for p in r.phases) and [p.worker for p in r.phases] == ["fake", "fake_vq"]
    assert r.decodes == len(videos)  # decoded once, shared by both workers
    assert all(isinstance(r.results[i]["spatial"], Score) for i in range(len(videos)))


def test_leaked_model_is_reported_not_freed(videos):
    w = FakeWorker(leak=True)
    r = Scheduler([w]).run([Item(videos[0], "x")])
    LEAK.clear()
    assert r.phases[0].freed is False


def test_over_budget_refused_before_loading(videos):
    big, small = FakeWorker(footprint=30.0), FakeVQ(footprint=2.0)
    r = Scheduler([big, small], budget_gb=24).run([Item(p, "x") for p in videos[:2]])
    assert big.loads == 0 and small.loads == 1
    assert r.refused and "30.0 GB" in r.refused[0][1] and "24 GB" in r.refused[0][1]
    assert r.results[0]["spatial"].reason == "over_budget"
    assert isinstance(r.results[0]["aesthetic_quality"], Score)


def test_failures_are_per_video(videos, clips, tmp_path):
    one = tmp_path / "one.mp4"
    from vrthinker_eval.synth import render_scene, write_video

    write_video(one, render_scene("shapes", 64, 48, 1, seed=3), fps=12)
    items = [Item(videos[0], "a ball"), Item(str(clips["corrupt"]), "a ball"), Item(videos[1], ""),
             Item(videos[2], "a ball"), Item(str(tmp_path / "missing.mp4"), "a ball")]
    w = FakeWorker(bad=(videos[2],))
    r = Scheduler([w]).run(items)
    reasons = {i: getattr(r.results[i]["spatial"], "reason", "ok") for i in range(len(items))}
    assert reasons == {0: "ok", 1: "bad_video", 2: "empty_prompt", 3: "failed", 4: "bad_video"}
    assert "blew up" in r.results[3]["spatial"].message


def test_model_unavailable_is_named_for_every_video(videos):
    r = Scheduler([FakeWorker(fail_load=True)]).run([Item(p, "x") for p in videos[:2]])
    assert {r.results[i]["spatial"].reason for i in range(2)} == {"model_unavailable"}
    assert "fake model not found" in r.results[0]["spatial"].message and r.loads == 0


def test_resume_from_store_skips_done_work(videos, tmp_path):
    db = str(tmp_path / "s.sqlite")
    items = [Item(p, "a red ball") for p in videos]
    w = FakeWorker(interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        score(items, components=["spatial"], workers=[w], db=db)
    assert w.net is None  # unloaded on the way out
    w2 = FakeWorker()
    run = score(items, components=["spatial"], workers=[w2], db=db)
    assert len(w2.scored) == len(videos) - 3 and w2.loads == 1
    first = [v.components["spatial"].value for v in run.videos]
    w3 = FakeWorker()
    again = score(items, components=["spatial"], workers=[w3], db=db)
    assert w3.loads == 0 and again.loads == 0
    assert [v.components["spatial"].value for v in again.videos] == pytest.approx(first)
    # another prompt is another question for a prompt-reading worker
    w4 = FakeWorker()
    score([Item(videos[0], "a blue cube")], components=["spatial"], workers=[w4], db=db)
    assert w4.loads == 1


def test_grade_renormalises_and_bands():
    c = load_config()
    g = synthesize({"spatial": 0.5, "semantic": 1.0}, c)
    assert g.score == pytest.approx((0.15 * 0.5 + 0.25 * 1.0) / 0.40)
    assert set(g.missing) == {"benchmark", "preference", "visionreward", "measures"}
    assert sum(g.weights_used.values()) == pytest.approx(1.0)
    cases = {0.95: ("A", "accept"), 0.85: ("A-", "accept"), 0.75: ("B+", "accept"), 0.65: ("B", "accept"),
             0.55: ("B-", "review"), 0.45: ("C", "refine"), 0.2: ("F", "reject"), 0.9: ("A", "accept")}
    for s, want in cases.items():
        g = synthesize({"spatial": s}, c)
        assert (g.grade, g.action) == want, s
    # benchmark channel = VBench's Quality Score of the dims present (dynamic_degree weighs 0.5); overrides change it
    g = synthesize({"temporal_flickering": 1.0, "dynamic_degree": 0.0}, c)
    assert g.channels["benchmark"] == pytest.approx(1.0 / 1.5)
    c2 = load_config(overrides={"benchmark.dynamic_degree": 0.0})
    assert synthesize({"temporal_flickering": 1.0, "dynamic_degree": 0.0}, c2).score == pytest.approx(1.0)
    assert synthesize({}, c).grade == "-"


def test_grade_config_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown channel"):
        load_config(overrides={"vibes": 1.0})
    bad = tmp_path / "w.toml"
    bad.write_text("[weights]\nspatial = -1\n")
    with pytest.raises(UsageError, match=">= 0"):
        load_config(bad)
    bad.write_text("[weights\n")
    with pytest.raises(UsageError, match="TOML"):
        load_config(bad)
    ok = tmp_path / "ok.toml"
    ok.write_text("[weights]\nspatial = 1.0\nmeasures = 3.0\n")
    c = load_config(ok)
    assert synthesize({"spatial": 0.0, "vq": 1.0, "mq": 1.0}, c).score == pytest.approx(0.75)


def test_resolve_components():
    assert resolve_components(None)[:2] == ("vq", "mq")
    assert resolve_components(["measures,vq"]) == ("vq", "mq")
    with pytest.raises(UsageError, match="unknown component"):
        resolve_components(["sparkle"])


def _dqa(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dqa.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_cli_json_table_and_bad_input(videos, clips, tmp_path):
    # on the command line an undecodable video is bad input: one line, exit 2, as `judge` does
    c = _dqa("score", videos[0], str(clips["corrupt"]), "--prompt", "a ball", "--components", "measures")
    assert c.returncode == 2 and c.stdout == "" and c.stderr.count("\n") == 1 and "not a decodable" in c.stderr
    # in a manifest it is one bad row among many: the rest is scored, the row reported, exit 3 (as judge batch)
    man = tmp_path / "bad.jsonl"
    man.write_text("".join(json.dumps({"video": str(v), "prompt": "a ball"}) + "\n"
                           for v in (videos[0], clips["corrupt"])))
    p = _dqa("score", "--manifest", str(man), "--components", "measures", "--json", "--db", str(tmp_path / "s.db"))
    assert p.returncode == 3, p.stderr
    doc = json.loads(p.stdout)
    good, bad = doc["videos"]
    assert 0 <= good["components"]["vq"]["value"] <= 1 and good["grade"]["grade"] in {"A", "A-", "B+", "B", "B-",
                                                                                         "C", "F"}
    assert bad["missing"]["vq"]["reason"] == "bad_video" and bad["grade"]["grade"] == "-"
    assert "Traceback" not in p.stderr
    t = _dqa("score", videos[0], "--components", "measures")
    assert t.returncode == 0 and "grade" in t.stdout and "vq" in t.stdout
    u = _dqa("score", "--components", "measures")
    assert u.returncode == 2 and "no videos" in u.stderr and "Traceback" not in u.stderr
    w = _dqa("score", videos[0], "--weight", "spatial=abc")
    assert w.returncode == 2 and "not a number" in w.stderr


def test_cli_manifest_resumes(videos, tmp_path):
    man = tmp_path / "m.jsonl"
    man.write_text("\n".join(json.dumps({"video": p, "prompt": "a ball"}) for p in videos[:3]) + "\n")
    db = str(tmp_path / "db.sqlite")
    p1 = _dqa("score", "--manifest", str(man), "--db", db, "--components", "measures", "--json")
    assert p1.returncode == 0, p1.stderr
    p2 = _dqa("score", "--manifest", str(man), "--db", db, "--components", "measures", "--json")
    d1, d2 = json.loads(p1.stdout), json.loads(p2.stdout)
    assert [v["components"]["vq"]["value"] for v in d1["videos"]] == \
        pytest.approx([v["components"]["vq"]["value"] for v in d2["videos"]])
    assert d1["phases"][0]["videos"] == 3 and d2["phases"][0]["videos"] == 0  # nothing re-scored
    man.write_text('{"video": 3}\n')
    p3 = _dqa("score", "--manifest", str(man))
    assert p3.returncode == 2 and "line 1" in p3.stderr


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, tiny_model_dir) -> dict[str, str]:
    from make_tiny_dqa_models import build_all

    models = build_all(tmp_path_factory.mktemp("dqa-models"), vlm=False)
    models["vlm"] = str(tiny_model_dir)
    return models


def test_cli_every_component_on_tiny_models(videos, clips, tiny_models, tmp_path):
    """All workers through their real loaders: one load each, memory freed after each, VBench names on
    VBench's scale, a corrupt video (a manifest's bad row) named per component, and a budget too small for the
    VLM refusing it before it loads while the others still run."""
    man = tmp_path / "m.jsonl"
    man.write_text("".join(json.dumps({"video": str(v), "prompt": "a red ball to the left of a blue box"}) + "\n"
                           for v in (videos[0], clips["corrupt"])))
    args = ["score", "--manifest", str(man), "--components", "all", "--json", "--db", str(tmp_path / "s.db")]
    for role, path in tiny_models.items():
        args += ["--models", f"{role}={path}"]
    p = _dqa(*args, "--vram-budget", "1.6")
    assert p.returncode == 3, p.stderr
    doc = json.loads(p.stdout)
    phases = {ph["worker"]: ph for ph in doc["phases"]}
    assert "vlm" not in phases and doc["refused"][0]["worker"] == "vlm" and "1.6 GB" in doc["refused"][0]["message"]
    loaded = [ph for ph in doc["phases"] if ph["models"]]
    assert doc["model_loads"] == len(loaded) >= 5 and all(ph["freed"] for ph in doc["phases"] if not ph["error"])
    good, bad = doc["videos"]
    for dim in ("temporal_flickering", "motion_smoothness", "subject_consistency", "background_consistency",
                "dynamic_degree", "aesthetic_quality"):
        assert 0.0 <= good["vbench"][dim] <= 1.0, dim
        assert bad["missing"][dim]["reason"] == "bad_video"
    assert 0.0 <= good["components"]["spatial"]["value"] <= 1.0
    assert good["missing"]["visionreward"]["reason"] == "over_budget"
    assert good["missing"]["preference"]["reason"] == "not_configured"
    assert set(good["grade"]["weights_used"]) >= {"measures", "benchmark", "spatial"}
    assert "Traceback" not in p.stderr


def test_a_loader_crashing_its_own_way_is_named_and_freed(videos):
    class Crashy(FakeWorker):
        def _load(self):
            self.net = torch.nn.Linear(4, 1)  # half loaded, then the loader fails
            raise RuntimeError("CUDA out of memory (pretend)")

    w = Crashy()
    r = Scheduler([w, FakeVQ()]).run([Item(videos[0], "x")])
    assert r.results[0]["spatial"].reason == "model_unavailable" and "out of memory" in r.results[0]["spatial"].message
    assert w.net is None and isinstance(r.results[0]["aesthetic_quality"], Score)


def test_out_of_memory_on_one_video_keeps_the_batch(videos):
    class Greedy(FakeWorker):
        def score(self, video, prompt):
            if video.path == videos[0]:
                raise MemoryError
            return super().score(video, prompt)

    r = Scheduler([Greedy()]).run([Item(p, "x") for p in videos[:2]])
    assert r.results[0]["spatial"].reason == "too_large" and isinstance(r.results[1]["spatial"], Score)


class FakeCuda:
    """torch.cuda stand-in: records the device every memory call is made for; `free` bytes per device."""

    def __init__(self, free=None, allocated=0):
        self.calls, self.free, self.allocated, self.emptied = [], dict(free or {}), allocated, 0

    def install(self, monkeypatch):
        for name in ("memory_allocated", "max_memory_allocated", "reset_peak_memory_stats", "synchronize"):
            monkeypatch.setattr(torch.cuda, name, self._recorder(name))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
        monkeypatch.setattr(torch.cuda, "mem_get_info", self._mem_get_info)
        monkeypatch.setattr(torch.cuda, "empty_cache", self._empty)
        return self

    def _recorder(self, name):
        def call(device=None):
            self.calls.append((name, device))
            return self.allocated if "memory_allocated" in name else None
        return call

    def _mem_get_info(self, device=None):
        self.calls.append(("mem_get_info", device))
        return self.free.get(device.index, 80 * 10**9), 80 * 10**9

    def _empty(self):
        self.emptied += 1


def test_gpu_memory_is_measured_on_the_workers_own_device(videos, monkeypatch):
    cuda = FakeCuda().install(monkeypatch)
    r = Scheduler([FakeWorker(device="cuda:1")], budget_gb=24).run([Item(videos[0], "x")])
    assert isinstance(r.results[0]["spatial"], Score) and r.phases[0].freed
    devices = {d for _, d in cuda.calls}
    assert devices == {torch.device("cuda", 1)}, cuda.calls  # never the default cuda:0 (no device given)
    names = {n for n, _ in cuda.calls}
    assert {"memory_allocated", "max_memory_allocated", "reset_peak_memory_stats", "mem_get_info"} <= names
    # a bare "cuda" (device_map="auto" may spread a model) is every visible device
    cuda.calls.clear()
    Scheduler([FakeWorker(device="cuda")], budget_gb=24).run([Item(videos[0], "x")])
    assert {d for n, d in cuda.calls if n == "memory_allocated"} == {torch.device("cuda", 0), torch.device("cuda", 1)}


def test_real_free_memory_is_checked_before_loading(videos, monkeypatch):
    FakeCuda(free={1: 3 * 10**9}).install(monkeypatch)
    w, other = FakeWorker(footprint=5.0, device="cuda:1"), FakeVQ(footprint=5.0, device="cuda:0")
    r = Scheduler([w, other], budget_gb=24).run([Item(p, "x") for p in videos[:2]])
    assert w.loads == 0 and other.loads == 1  # within the budget, but cuda:1 has only 3 GB free
    why = r.results[0]["spatial"].message
    assert r.results[0]["spatial"].reason == "over_budget" and "5.0 GB" in why and "3.0 GB free" in why
    assert [name for name, _ in r.refused] == ["fake"] and isinstance(r.results[1]["aesthetic_quality"], Score)


def test_cuda_cache_emptied_after_a_failed_load(videos, monkeypatch):
    cuda = FakeCuda().install(monkeypatch)
    r = Scheduler([FakeWorker(fail_load=True, device="cuda:0")]).run([Item(videos[0], "x")])
    assert r.results[0]["spatial"].reason == "model_unavailable" and cuda.emptied == 1
