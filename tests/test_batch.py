"""`judge batch` / `judge export`: real SQLite, resume, model changes, bad rows, inputs, and a kill -9 mid-run."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vrthinker.backends.scripted import ScriptedBackend
from vrthinker.batch import identify, judged_items, read_pairs, run_batch
from vrthinker.cli import main
from vrthinker.errors import UsageError
from vrthinker.judge import Judge
from vrthinker.store import Store, judgment_key

ROOT = Path(__file__).resolve().parents[1]
TOOL = '<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [100, 20]}}</tool_call>'
ANSWER = "<Think>the first keeps the cat in frame</Think><Answer>TA=1, VQ=0, MQ=2, OA=1</Answer>"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    """Four small real clips (64x48, 10 frames) and a corrupt file (last)."""
    from vrthinker_eval.synth import render_scene, write_corrupt, write_video

    d = tmp_path_factory.mktemp("videos")
    out = [str(write_video(d / f"v{k}.mp4", render_scene(kind, 64, 48, 10, seed=k), fps=8))
           for k, kind in enumerate(("shapes", "pan", "orbit", "text"))]
    out.append(str(write_corrupt(d / "corrupt.mp4")))
    return out


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def tournament(videos, prompt="a cat on a skateboard") -> list[dict]:
    good = videos[:4]
    return [{"video1": a, "video2": b, "prompt": prompt} for k, a in enumerate(good) for b in good[k + 1:]]


def scripted_judge(model_id="scripted:a", replies=(TOOL, ANSWER)) -> Judge:
    return Judge(ScriptedBackend(list(replies), model_id=model_id), "card")


def generate_calls(judge: Judge) -> int:
    return sum(len(s.calls) for s in judge.backend.sessions)


# ----------------------------------------------------------------------------------------------------------
# input


def test_reads_jsonl_and_csv_alike(tmp_path, videos):
    rows = [{"video1": videos[0], "video2": videos[1], "prompt": "p", "id": "a"},
            {"video1": os.path.basename(videos[1]), "video2": videos[2], "prompt": "q"}]
    jl = read_pairs(write_jsonl(Path(videos[0]).parent / "in.jsonl", rows))
    c = Path(videos[0]).parent / "in.csv"
    with c.open("w", newline="") as f:
        w = csv.DictWriter(f, ["id", "video1", "video2", "prompt"])
        w.writeheader()
        w.writerows(rows)
    assert [(r.item_id, r.video1, r.video2, r.prompt) for r in jl] == \
        [(r.item_id, r.video1, r.video2, r.prompt) for r in read_pairs(c)]
    assert [r.item_id for r in jl] == ["a", "2"]  # default id: the row number
    assert jl[1].video1 == videos[1]  # relative paths: against the PAIRS file's folder


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_a_csv_prompt_keeps_its_line_breaks(tmp_path, videos, ending):
    prompt = f"A cat.{ending}Then a dog,{ending}in the rain."
    c = tmp_path / "multi.csv"
    with c.open("w", newline="") as f:
        csv.writer(f).writerows([["video1", "video2", "prompt"], [videos[0], videos[1], prompt],
                                 [videos[1], videos[2], "one line"]])
    rows = read_pairs(c)
    assert [r.prompt for r in rows] == [prompt, "one line"]  # as written: the break is part of the prompt


@pytest.mark.parametrize("name, text, needle", [
    ("p.txt", "", "unknown pairs format"),
    ("p.jsonl", '{"video1": "a", "video2": "b", "prompt": "p"}\n{"video1": "a", "prompt": "p"}\n', "p.jsonl:2"),
    ("p.jsonl", '{"video1": "a", "video2": "b", "prompt": "p"}\nnot json\n', "p.jsonl:2"),
    ("p.jsonl", '{"id": 1, "video1": "a", "video2": "b", "prompt": "p"}\n'
                '{"id": "1", "video1": "a", "video2": "c", "prompt": "p"}\n', "repeats line 1"),
    ("p.csv", "video1,video2\na,b\n", "lacks prompt"),
    ("p.csv", "video1,video2,prompt\na,b,\n", "p.csv:2"),
])
def test_malformed_pairs_name_the_line(tmp_path, name, text, needle):
    (tmp_path / name).write_text(text)
    with pytest.raises(UsageError, match=needle):
        read_pairs(tmp_path / name)


# ----------------------------------------------------------------------------------------------------------
# resume, model changes, orders, bad rows


def test_rerun_judges_nothing_new_and_changed_model_rejudges(tmp_path, videos):
    rows = read_pairs(write_jsonl(tmp_path / "t.jsonl", tournament(videos)))  # 6 pairs
    with Store(tmp_path / "j.sqlite") as store:
        judge = scripted_judge()
        s = run_batch(judge, rows, store, job="t")
        assert (s.judged, s.reused, s.bad, s.judgments_written) == (6, 0, 0, 12)
        assert judge.grids.decodes == 4  # each video decoded once, not once per pair
        # the scripted judge always prefers the video shown first: TA, MQ, OA flip with the order, VQ ties
        assert s.compared == 24 and s.agreed == 6 and s.consistency == 0.25
        assert s.per_dimension["VQ"] == (6, 6) and s.per_dimension["OA"] == (0, 6)
        calls = generate_calls(judge)

        again = run_batch(judge, rows, store, job="t")
        assert (again.judged, again.reused, again.judgments_written) == (0, 6, 0)
        assert generate_calls(judge) == calls and store.counts()["judgments"] == 12
        assert again.consistency == 0.25  # reported from the stored judgments too

        other = scripted_judge(model_id="scripted:b")
        changed = run_batch(other, rows, store, job="t")
        assert (changed.judged, changed.judgments_written) == (6, 12)
        assert store.counts()["judgments"] == 24 and store.counts()["items"] == 6
        assert {j.forward.model_id for j in judged_items(store, "t")} == {"scripted:b"}
        assert store.check() == []


def test_one_order_then_both_reuses_the_forward_judgments(tmp_path, videos):
    rows = read_pairs(write_jsonl(tmp_path / "t.jsonl", tournament(videos)[:2]))
    with Store(tmp_path / "j.sqlite") as store:
        judge = scripted_judge()
        assert run_batch(judge, rows, store, job="t", orders="one").judgments_written == 2
        n = len(judge.backend.sessions)
        s = run_batch(judge, rows, store, job="t", orders="both")
        assert s.judged == 2 and s.judgments_written == 2  # only the reverse orders
        assert len(judge.backend.sessions) == n + 2
        ident = identify(judge)
        h = [store.file_hash(v) for v in videos[:2]]
        item = store.item("t", rows[0].item_id)
        assert item.key_forward == judgment_key(h[0], h[1], rows[0].prompt, ident)
        assert item.key_reverse == judgment_key(h[1], h[0], rows[0].prompt, ident)
        rev = store.judgment(item.key_reverse)
        assert (rev.videoA, rev.videoB) == (videos[1], videos[0])


def test_bad_rows_are_recorded_and_the_batch_goes_on(tmp_path, videos):
    rows = read_pairs(write_jsonl(tmp_path / "t.jsonl", [
        {"video1": videos[0], "video2": str(tmp_path / "gone.mp4"), "prompt": "p", "id": "missing"},
        {"video1": videos[0], "video2": videos[4], "prompt": "p", "id": "corrupt"},
        {"video1": videos[0], "video2": videos[1], "prompt": "p", "id": "fine"},
    ]))
    with Store(tmp_path / "j.sqlite") as store:
        s = run_batch(scripted_judge(), rows, store, job="t")
        assert (s.bad, s.judged) == (2, 1)
        items = {i.item_id: i for i in store.items("t")}
        assert items["missing"].status == "bad" and items["missing"].reason == "missing_file"
        assert "gone.mp4: file not found" in items["missing"].detail
        assert items["corrupt"].status == "bad" and items["corrupt"].reason == "bad_video"
        assert items["fine"].status == "done" and store.counts()["judgments"] == 2


def test_metrics_judge_has_an_identity_and_both_orders(tmp_path, videos):
    pytest.importorskip("dqa.measures.video")
    judge = Judge.from_pretrained(backend="metrics")
    ident = identify(judge)
    assert (ident.model_id, ident.protocol, ident.backend) == ("weight-free-metrics", "metrics/1", "metrics")
    rows = read_pairs(write_jsonl(tmp_path / "t.jsonl", tournament(videos)[:1]))
    with Store(tmp_path / "j.sqlite") as store:
        s = run_batch(judge, rows, store, job="m")
        assert s.judgments_written == 2 and s.consistency == 1.0  # measures have no position bias


def test_a_judgment_is_reused_only_when_the_whole_judge_configuration_is_the_same(tmp_path, videos):
    rows = read_pairs(write_jsonl(tmp_path / "t.jsonl", tournament(videos)[:2]))
    with Store(tmp_path / "j.sqlite") as store:
        base = run_batch(scripted_judge(), rows, store, job="t")
        assert (base.judged, base.reused) == (2, 0)
        same = scripted_judge()  # a fresh judge, configured alike
        assert (run_batch(same, rows, store, job="t").reused, generate_calls(same)) == (2, 0)
        for changed in (Judge(ScriptedBackend([TOOL, ANSWER], model_id="scripted:a"), "card", max_new_tokens=64),
                        Judge(ScriptedBackend([TOOL, ANSWER], model_id="scripted:a"), "card", max_turns=2),
                        Judge(ScriptedBackend([TOOL, ANSWER], model_id="scripted:a"), "training")):
            s = run_batch(changed, rows, store, job="t")
            assert (s.judged, s.reused) == (2, 0) and generate_calls(changed) > 0
        stored = store.judgment(store.item("t", rows[0].item_id).key_forward)
        assert stored.config == identify(changed).config and stored.config["backend"] == "scripted"
        plain = scripted_judge()
        assert identify(plain).config["max_new_tokens"] == plain.profile.max_new_tokens and \
            identify(plain).config["profile"] == {"name": "card", "version": plain.profile.version}


def test_a_4bit_or_other_dtype_rerun_of_a_model_is_not_served_from_the_store(tmp_path, videos, hf_backend,
                                                                            monkeypatch):
    import torch
    from transformers import BitsAndBytesConfig

    rows = read_pairs(write_jsonl(tmp_path / "t.jsonl", tournament(videos)[:1]))
    judge = Judge(hf_backend, "card", max_turns=1, max_new_tokens=4)
    with Store(tmp_path / "j.sqlite") as store:
        assert run_batch(judge, rows, store, job="t", orders="one").judged == 1
        assert run_batch(judge, rows, store, job="t", orders="one").reused == 1
        config = identify(judge).config
        assert config["fingerprint"] and config["dtype"] == "float32" and config["device"] == "cpu"
        # what from_pretrained(quantize="4bit") leaves on the model it loads
        monkeypatch.setattr(hf_backend.model.config, "quantization_config",
                            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16), raising=False)
        quant = identify(judge)
        assert quant.config["quantization"]["load_in_4bit"] is True
        s = run_batch(judge, rows, store, job="t", orders="one")
        assert (s.judged, s.reused) == (1, 0)
        monkeypatch.undo()
        monkeypatch.setattr(type(hf_backend.model), "dtype", property(lambda self: torch.bfloat16))
        assert identify(judge).config["dtype"] == "bfloat16" and identify(judge).config != config
        assert run_batch(judge, rows, store, job="t", orders="one").judged == 1
        monkeypatch.undo()
        assert identify(judge).config == config and run_batch(judge, rows, store, job="t", orders="one").reused == 1
        assert store.counts()["judgments"] == 3


def test_cli_batch_ends_with_one_summary_line_and_export_shows_the_config(tmp_path, videos, capsys):
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([TOOL, ANSWER]))
    pairs = write_jsonl(tmp_path / "t.jsonl", tournament(videos)[:3])
    db = str(tmp_path / "j.sqlite")
    model = ["--backend", "scripted", "--model", str(replies)]
    assert main(["batch", pairs, "--db", db, *model]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "judged=3 reused=0 failed=0" in last
    assert main(["batch", pairs, "--db", db, *model, "--max-new-tokens", "99"]) == 0
    assert "judged=3 reused=0 failed=0" in capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["batch", pairs, "--db", db, *model]) == 0
    assert "judged=0 reused=3 failed=0" in capsys.readouterr().out.strip().splitlines()[-1]
    with (tmp_path / "bad.jsonl").open("w") as f:
        f.write(json.dumps({"video1": videos[0], "video2": videos[4], "prompt": "p"}) + "\n")
    assert main(["batch", str(tmp_path / "bad.jsonl"), "--db", db, *model]) == 3
    assert "judged=0 reused=0 failed=1" in capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["export", "--db", db, "--job", "t"]) == 0
    x = json.loads(capsys.readouterr().out.splitlines()[0])
    assert x["config"]["backend"] == "scripted" and x["config"]["model_id"] == "scripted:replies.json"
    assert x["config"]["max_new_tokens"] != 99 and x["config"]["profile"]["version"] == x["protocol"] == "card/1"


# ----------------------------------------------------------------------------------------------------------
# the command line


def test_cli_batch_csv_and_export_fields(tmp_path, videos, capsys):
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([TOOL, ANSWER]))
    pairs = tmp_path / "t.csv"
    with pairs.open("w", newline="") as f:
        w = csv.DictWriter(f, ["video1", "video2", "prompt"])
        w.writeheader()
        w.writerows(tournament(videos)[:3])
    db = str(tmp_path / "j.sqlite")
    model = ["--backend", "scripted", "--model", str(replies)]
    assert main(["batch", str(pairs), "--db", db, *model]) == 0
    out = capsys.readouterr().out
    assert "position consistency: 25.0%" in out
    out_file = tmp_path / "export.jsonl"
    assert main(["export", "--db", db, "--out", str(out_file)]) == 0
    lines = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["1", "2", "3"]
    x = lines[0]
    assert {"id", "video1", "video2", "prompt", "labels", "reason", "orders", "consistency", "inconsistent",
            "backend", "model_id", "revision", "protocol", "per_order"} <= set(x)
    assert x["labels"] == {"TA": 0, "VQ": 0, "MQ": 0, "OA": 0} and x["inconsistent"] == ["TA", "MQ", "OA"]
    assert x["orders"] == "both" and x["consistency"] == 0.25 and x["backend"] == "scripted"
    assert x["model_id"] == "scripted:replies.json" and x["protocol"] == "card/1"
    assert [o["order"] for o in x["per_order"]] == ["forward", "reverse"]
    assert x["per_order"][1]["shown"] == [x["video2"], x["video1"]]
    assert x["per_order"][0]["labels"] == {"TA": 1, "VQ": 0, "MQ": 2, "OA": 1}
    assert x["per_order"][0]["frames_requested"] == [[100, 20]]

    # a bad row: exit 3, recorded, exported only with --include-bad; the default database path
    with (tmp_path / "more.jsonl").open("w") as f:
        f.write(json.dumps({"video1": videos[0], "video2": videos[4], "prompt": "p"}) + "\n")
    os.environ["VRTHINKER_DB"] = db
    try:
        assert main(["batch", str(tmp_path / "more.jsonl"), *model]) == 3
        assert "bad row 1: bad_video" in capsys.readouterr().out
        assert main(["export", "--job", "more"]) == 0
        assert capsys.readouterr().out == ""
        assert main(["export", "--job", "more", "--include-bad"]) == 0
        bad = json.loads(capsys.readouterr().out)
        assert bad["status"] == "bad" and bad["reason"] == "bad_video"
    finally:
        del os.environ["VRTHINKER_DB"]


def test_cli_usage_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "p.jsonl").write_text('{"video1": "a"}\n')
    assert main(["batch", str(tmp_path / "p.jsonl"), "--db", str(tmp_path / "j.sqlite")]) == 2
    assert main(["export", "--db", str(tmp_path / "none.sqlite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("judge: error:") for e in err)
    assert "p.jsonl:1" in err[0] and "no judgment database" in err[1]


# ----------------------------------------------------------------------------------------------------------
# kill -9 mid-run, then resume


def _done(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT count(*) FROM items WHERE status='done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _consistent(db: Path, n_items: int) -> tuple[int, int]:
    with Store(db, readonly=True) as store:
        assert store.check() == []  # PRAGMA integrity_check ok; every done item has both judgments
        c = store.counts()
        items = list(store.items())
    assert len(items) == c["items"] <= n_items and len({i.item_id for i in items}) == len(items)
    return c["items"], c["judgments"]


def test_kill_9_mid_batch_loses_at_most_the_pair_in_flight(tmp_path, videos):
    rows = [dict(r, prompt=f"prompt {k // 6}") for k, r in enumerate(tournament(videos) * 2)]  # 12 items
    pairs = write_jsonl(tmp_path / "t.jsonl", rows)
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([TOOL, ANSWER]))
    db = tmp_path / "j.sqlite"
    cmd = [sys.executable, str(ROOT / "tests" / "slow_backend.py"), "batch", pairs, "--db", str(db),
           "--backend", "slow", "--model", str(replies)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               SLOW_BACKEND_DELAY="0.05")
    # 12 items, 2 orders x 2 turns each at 0.05 s a turn: ~0.2 s an item
    for wait_for in (3, 7):  # kill twice, at different points
        before = _done(db)
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while _done(db) < wait_for and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        time.sleep(0.07)  # land somewhere inside the next item
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        p.stderr.close()
        n_items, n_judgments = _consistent(db, 12)
        assert before < n_items < 12
        assert n_judgments == 2 * n_items  # a pair's judgments and its item are written together or not at all
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    n_items, n_judgments = _consistent(db, 12)
    assert (n_items, n_judgments) == (12, 24)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and re.search(r"│\s+0 │\s+12 │\s+0 │", r.stdout), r.stdout
    with Store(db, readonly=True) as store:
        assert store.counts()["judgments"] == 24
