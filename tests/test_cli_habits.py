"""One set of CLI habits: one exit rule for every command (0 done, 3 some judgment failed or ended incomplete, 2 bad
input), Ctrl-C says what is saved, help that names every subcommand."""
import json

from vrthinker.cli import main as judge_main


def test_weight_free_judge_exits_0_and_says_it_measured_whole_videos(clips, capsys):
    """TA is missing by design for the weight-free judge: reported, not a failure (exit 3 broke `set -e`)."""
    code = judge_main([str(clips["a"]), str(clips["b"]), "--prompt", "shapes drift", "--backend", "metrics"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "needs_vlm" in out and "measured over the whole videos (36 and 30 frames)" in out
    assert "judged on the initial frames" not in out


def test_an_undecodable_video_is_one_error_line_and_no_table(clips, capsys):
    code = judge_main([str(clips["a"]), str(clips["corrupt"]), "--prompt", "x", "--backend", "metrics"])
    cap = capsys.readouterr()
    assert code == 2 and cap.out == ""
    assert cap.err.startswith("judge: error: ") and cap.err.count("\n") == 1 and "not a decodable video" in cap.err


def test_batch_and_rank_exit_0_when_only_ta_is_missing_by_design(clips, tmp_path, capsys):
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(json.dumps({"video1": str(clips["a"]), "video2": str(clips["b"]), "prompt": "x"}) + "\n")
    db = str(tmp_path / "j.sqlite")
    assert judge_main(["batch", str(pairs), "--db", db, "--backend", "metrics"]) == 0
    assert "incomplete=0" in capsys.readouterr().out
    assert judge_main(["rank", str(clips["a"]), str(clips["b"]), "--prompt", "x", "--db", db,
                       "--backend", "metrics", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["incomplete"] == 0


def test_dqa_score_exits_2_on_a_missing_or_undecodable_video(clips, tmp_path, capsys):
    from dqa.cli import main as dqa_main

    for bad in (str(clips["corrupt"]), str(tmp_path / "nowhere.mp4")):
        assert dqa_main(["score", str(clips["a"]), bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dqa: error: ") and err.count("\n") == 1


def test_ctrl_c_mid_batch_says_what_is_saved_and_how_to_resume(tmp_path, clips):
    """SIGINT to a running batch: one line with the pairs saved and 'run the same command again', exit 130."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    answer = "<Answer>TA=1, VQ=1, MQ=1, OA=1</Answer>"
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([answer]))
    pairs = tmp_path / "p.jsonl"
    pairs.write_text("".join(json.dumps({"video1": str(clips["a"]), "video2": str(clips["b"]), "prompt": f"p{k}"})
                             + "\n" for k in range(40)))
    db = tmp_path / "j.sqlite"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
               SLOW_BACKEND_DELAY="0.2")
    p = subprocess.Popen([sys.executable, str(root / "tests" / "slow_backend.py"), "batch", str(pairs), "--db",
                          str(db), "--backend", "slow", "--model", str(replies), "--protocol", "card"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    from vrthinker.store import Store

    def done() -> int:
        try:
            with Store(str(db), readonly=True) as store:
                return store.counts()["items"]
        except Exception:  # not created yet
            return 0

    deadline = time.monotonic() + 60
    while done() < 3 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130, err[-2000:]
    line = [x for x in err.splitlines() if "interrupted" in x][-1]
    assert line.startswith("judge: error: interrupted: ") and " of 40 pairs are saved in " in line
    saved = int(line.split("interrupted: ")[1].split(" of ")[0])
    assert 3 <= saved < 40 and saved == done()  # the figure is the store's
    assert "run the same command again to resume" in line


def test_dqa_help_names_every_subcommand_in_one_line(capsys):
    from dqa.cli import main as dqa_main

    assert dqa_main(["--help"]) == 0
    out = capsys.readouterr().out
    desc = " ".join(out.split("\n\n")[1].split())
    assert "Score videos" in desc and "serve" in desc and "A/B" in desc
    for name in ("select", "import-selections", "tune", "patterns", "score", "serve", "mcp", "agreement"):
        line = [x for x in out.splitlines() if x.strip().startswith(name + " ")]
        assert line and len(line[0].split(name, 1)[1].strip()) > 10, name


def test_errors_name_python_arguments_from_python_and_flags_from_the_cli(clips, capsys):
    import pytest

    from vrthinker import Judge, UsageError

    with pytest.raises(UsageError) as e:
        Judge.from_pretrained("x", backend="metrics", device="cpu")
    assert str(e.value) == "backend='metrics' does not take device="
    with pytest.raises(UsageError, match=r"^backend='openai' needs server= URL"):
        Judge.from_pretrained("x", backend="openai")
    assert judge_main([str(clips["a"]), str(clips["b"]), "--prompt", "x", "--backend", "openai"]) == 2
    assert "--backend openai needs --server URL" in capsys.readouterr().err
    with pytest.raises(UsageError, match=r"^backend='openai' needs server= URL"):  # the CLI's spelling ended
        Judge.from_pretrained("x", backend="openai")


def test_one_comparison_is_kept_in_the_default_store_and_reused_by_pairs(clips, tmp_path, capsys, monkeypatch):
    """`judge V1 V2` keeps its verdict where `judge batch` keeps pairs ($VRTHINKER_DB): pairs and report see it."""
    import os

    from vrthinker.store import Store

    db = os.environ["VRTHINKER_DB"]  # each test's own default store (conftest)
    assert judge_main([str(clips["a"]), str(clips["b"]), "--prompt", "shapes", "--backend", "metrics"]) == 0
    capsys.readouterr()
    with Store(db, readonly=True) as store:
        assert store.counts()["items"] == 1 and store.counts()["judgments"] == 1
    out = tmp_path / "dpo.jsonl"
    assert judge_main(["pairs", "--out", str(out)]) == 0
    assert "from 1 judged pair" in capsys.readouterr().out or out.exists()
    assert judge_main([str(clips["a"]), str(clips["b"]), "--prompt", "shapes", "--backend", "metrics"]) == 0
    with Store(db, readonly=True) as store:  # the same pair again: the same keys, nothing duplicated
        assert store.counts()["items"] == 1 and store.counts()["judgments"] == 1


def test_dqa_score_keeps_results_in_the_default_store(clips, capsys):
    from dqa.cli import main as dqa_main

    assert dqa_main(["score", str(clips["a"]), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert dqa_main(["score", str(clips["a"]), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert first["phases"][0]["videos"] == 1 and again["phases"][0]["videos"] == 0  # reused from the store
    assert again["videos"][0]["components"]["vq"] == first["videos"][0]["components"]["vq"]
