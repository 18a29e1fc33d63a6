"""One exit-status rule for every command: 0 done, 3 some judgment failed or ended incomplete, 2 bad input."""
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
