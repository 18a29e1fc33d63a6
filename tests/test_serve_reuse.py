"""`dqa serve` reuses a finished job only under the same full configuration, and always under it: the model
and adapter by content, the revision, the scoring workers' versions and models, the code's version."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="dqa serve's tests need the serve extra (pip install '.[serve]')")
pytest.importorskip("fastapi", reason="dqa serve needs the serve extra (pip install '.[serve]')")

from serve_helpers import Server, wait_job  # noqa: E402

PROMPT = "a red square glides over a textured field"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from vrthinker_eval.synth import render_scene, write_video

    root = tmp_path_factory.mktemp("reuse") / "media"
    root.mkdir()
    write_video(root / "a.mp4", render_scene("shapes", 96, 64, 12, seed=1), fps=12)
    write_video(root / "b.mp4", render_scene("pan", 96, 64, 12, seed=2), fps=12)
    return root


def _score(server: Server) -> tuple[str, dict]:
    with server.client() as c:
        r = c.post("/v1/score", json={"videos": ["a.mp4"], "prompt": PROMPT, "components": ["vq"]})
        assert r.status_code == 202, r.text
        job = r.json()["job"]
        return job, wait_job(c, job)


def test_a_score_job_is_not_reused_after_a_worker_upgrade_and_is_reused_without(media, tmp_path):
    """Before, the key held the grade weights and the device only: an upgraded worker got the stale job."""
    db = tmp_path / "store.sqlite"
    first = Server(db, [media]).start()
    try:
        job, done = _score(first)
        assert done["state"] == "done"
    finally:
        first.stop()
    upgraded = Server(db, [media], launcher="upgraded_serve.py", env={"DQA_UPGRADE": "measures=99"}).start()
    try:
        new, d = _score(upgraded)
        assert new != job and d["state"] == "done"  # scored again by the upgraded worker
    finally:
        upgraded.stop()
    again = Server(db, [media]).start()  # the first configuration again: its finished job, at once
    try:
        same, _ = _score(again)
        assert same == job
    finally:
        again.stop()
    assert "Traceback" not in first.stderr() + upgraded.stderr() + again.stderr()


def _checkpoint(d: Path, weights: bytes) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text('{"hidden_size": 8}')
    (d / "adapter_model.safetensors").write_bytes(weights)
    return d


def test_a_compare_job_follows_the_adapter_content_the_revision_and_the_model_by_content(tmp_path, monkeypatch):
    """Jobs' own key, on a real store (the judge is never loaded to key a request): before, a compare job
    was keyed by the flags as typed, so a rewritten adapter got the stale verdict and `./ckpt` missed."""
    from dqa.serve.jobs import Jobs
    from dqa.serve.tables import Connections

    model = _checkpoint(tmp_path / "models" / "ckpt", b"\1" * (3 << 20))
    adapter = _checkpoint(tmp_path / "lora", b"\2" * (3 << 20))
    conns = Connections(str(tmp_path / "store.sqlite"))
    request = {"video1": "/m/a.mp4", "video2": "/m/b.mp4", "prompt": PROMPT, "orders": "one"}

    def submit(**judge) -> str:
        job = Jobs(conns, {"backend": "hf", "device": "cpu", **judge}).submit("compare", request, ["ha", "hb"])
        with conns.get().transaction() as db:  # as if the worker had finished it
            db.execute("UPDATE serve_jobs SET state='done', result='{}' WHERE id=?", (job.id,))
        return job.id

    first = submit(model=str(model), adapter=str(adapter))
    assert submit(model=str(model), adapter=str(adapter)) == first
    monkeypatch.chdir(tmp_path / "models")
    assert submit(model="./ckpt", adapter=str(adapter)) == first  # the same model by another name
    copy = tmp_path / "copy" / "ckpt"
    shutil.copytree(model, copy)
    assert submit(model=str(copy), adapter=str(adapter)) == first  # the same files in another folder
    assert submit(model=str(model), adapter=str(adapter), revision="v2") != first
    # dqa tune writes a new adapter into the same folder: a middle byte of its weights changes
    data = bytearray((adapter / "adapter_model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (adapter / "adapter_model.safetensors").write_bytes(bytes(data))
    retuned = submit(model=str(model), adapter=str(adapter))
    assert retuned != first
    # each checkpoint file was hashed through the store's cache (path, size, mtime)
    paths = {r[0] for r in conns.get().db.execute("SELECT path FROM file_hashes")}
    assert str((adapter / "adapter_model.safetensors").resolve()) in paths
    stored = json.loads(conns.get().db.execute("SELECT request FROM serve_jobs WHERE id=?", (first,)).fetchone()[0])
    assert stored == request
