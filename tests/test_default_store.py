"""`judge rank` and `judge eval` keep their judgments in the store `judge batch` uses, unless told otherwise."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vrthinker.cli import main
from vrthinker.store import DEFAULT_DB, Store

ANSWER = "<Answer>TA=1, VQ=1, MQ=1, OA=1</Answer>"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    from vrthinker_eval.synth import render_scene, write_video

    d = tmp_path_factory.mktemp("store-clips")
    return [str(write_video(d / f"v{k}.mp4", render_scene(kind, 64, 48, 8, seed=k), fps=8))
            for k, kind in enumerate(["shapes", "pan", "orbit"])]


@pytest.fixture
def in_fresh_dir(tmp_path, monkeypatch) -> Path:
    """No $VRTHINKER_DB, an empty working directory: the default is ./judgments.sqlite."""
    monkeypatch.delenv("VRTHINKER_DB", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (tmp_path / "replies.json").write_text(json.dumps([ANSWER]))
    return work


def test_rank_without_db_writes_the_batch_default_store(clips, in_fresh_dir, capsys):
    model = ["--backend", "scripted", "--model", str(in_fresh_dir.parent / "replies.json")]
    assert main(["rank", "--prompt", "A robot", *clips, *model, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["db"] == DEFAULT_DB and first["judged"] > 0
    with Store(in_fresh_dir / DEFAULT_DB, readonly=True) as s:  # kept on disk: a crash loses nothing judged
        assert s.counts()["judgments"] == first["judged"] and s.rankings()
    assert main(["rank", "--prompt", "A robot", *clips, *model, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["judged"] == 0 and again["reused"] == first["judged"]


def test_eval_without_db_writes_the_batch_default_store(clips, in_fresh_dir, capsys):
    data = in_fresh_dir / "mj"
    data.mkdir()
    items = [{"caption": f"c{k}", "video_0_path": clips[k], "video_1_path": clips[k + 1],
              "overall_preference": "Video 1 better", "category_preference": {}} for k in range(2)]
    (data / "test.json").write_text(json.dumps(items))
    args = ["eval", "--benchmark", "mjbench-video", "--data", str(data), "--backend", "scripted", "--model",
            str(in_fresh_dir.parent / "replies.json"), "--bootstrap", "0", "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["db"] == DEFAULT_DB
    with Store(in_fresh_dir / DEFAULT_DB, readonly=True) as s:
        assert s.counts()["judgments"] == 2 and len(list(s.items("eval/mjbench-video"))) == 2
