"""`judge V1 V2 --prompt P` from the command line: output, exit codes, trace, and user mistakes."""
import json
import subprocess
import sys

import pytest

from vrthinker.cli import main

ANSWER = "<Think>v1 keeps the robot in frame</Think><Answer>TA=1, VQ=0, MQ=2, OA=1</Answer>"
TOOL = '<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [100, 20]}}</tool_call>'


@pytest.fixture
def script(tmp_path):
    def make(replies):
        p = tmp_path / "replies.json"
        p.write_text(json.dumps(replies))
        return str(p)
    return make


def test_table_shows_winners_frames_and_reasoning(clips, script, capsys):
    code = main([str(clips["a"]), str(clips["b"]), "--prompt", "A robot", "--backend", "scripted",
                 "--model", script([TOOL, ANSWER])])
    out = capsys.readouterr().out
    assert code == 0
    assert "Video 1" in out and "Video 2" in out and "tie" in out
    assert "turn 1: [100, 20]" in out and "v1 keeps the robot in frame" in out


def test_json_and_trace(clips, script, capsys, tmp_path):
    trace = tmp_path / "t.json"
    code = main([str(clips["a"]), str(clips["b"]), "--prompt", "A robot", "--backend", "scripted", "--json",
                 "--model", script([TOOL, ANSWER]), "--trace", str(trace)])
    v = json.loads(capsys.readouterr().out)
    assert code == 0 and v["labels"] == {"TA": 1, "VQ": 0, "MQ": 2, "OA": 1} and v["complete"]
    assert v["frames_requested"] == [[100, 20]] and v["protocol"] == "card/1"
    t = json.loads(trace.read_text())
    images = t["turns"][1]["new_images"]
    assert [(i["video"], i["grid_index"]) for i in images] == [(1, 100), (2, 100), (1, 20), (2, 20)]
    assert all(len(i["sha256"]) == 64 for i in images)
    assert images[0]["real_index"] == int(100 / 128 * 36)  # clip a has 36 frames


def test_incomplete_exits_3_with_reason(clips, script, capsys):
    code = main([str(clips["a"]), str(clips["b"]), "--prompt", "p", "--backend", "scripted",
                 "--model", script(["<Answer>TA=1</Answer>"])])
    assert code == 3 and "partial_answer" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "corrupt", "empty_prompt", "no_model", "bad_script"])
def test_user_mistakes_exit_2_with_one_line(case, clips, script, capsys, tmp_path):
    a, b = str(clips["a"]), str(clips["b"])
    args = {
        "missing": [a, str(tmp_path / "nope.mp4"), "--prompt", "p", "--backend", "scripted", "--model", script([])],
        "corrupt": [a, str(clips["corrupt"]), "--prompt", "p", "--backend", "scripted", "--model", script([])],
        "empty_prompt": [a, b, "--prompt", "  "],
        "no_model": [a, b, "--prompt", "p", "--model", str(tmp_path / "no-such-checkpoint")],
        "bad_script": [a, b, "--prompt", "p", "--backend", "scripted", "--model", str(tmp_path / "x.json")],
    }[case]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("judge: error:") and "Traceback" not in err and len(err.strip().splitlines()) <= 2


@pytest.mark.slow
def test_real_hf_backend_through_the_console_script(clips, tiny_model_dir, tmp_path):
    """The installed `judge` command, the tiny random model, real clips: a verdict with a reason."""
    trace = tmp_path / "trace.json"
    cmd = [sys.executable, "-m", "vrthinker.cli", str(clips["a"]), str(clips["b"]), "--prompt", "A robot",
           "--model", str(tiny_model_dir), "--protocol", "card", "--max-new-tokens", "8", "--max-turns", "2", "--json",
           "--trace", str(trace), "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 3), r.stderr
    v = json.loads(r.stdout)
    assert v["model_id"] == str(tiny_model_dir) and v["backend"] == "hf"
    assert (r.returncode == 0) == v["complete"] and (v["reason"] is None) == v["complete"]
    t = json.loads(trace.read_text())
    first = t["turns"][0]
    assert first["rendered"].startswith("<|im_start|>system\nTask Description:")
    assert first["rendered"].count("<|image_pad|>") == 8 and first["prefill_tokens"] > 2000
    assert len(first["new_images"]) == 8


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--model", "--protocol", "--json", "--trace", "--max-turns", "--max-new-tokens", "--device",
                 "--dtype", "--quantize", "--backend"):
        assert flag in out


def test_a_missing_extra_is_one_line_naming_the_install(monkeypatch, capsys):
    """The light core has no torch: whatever needs it says which extra to install, in one line, exit 2."""
    import importlib

    from vrthinker.cliutil import guarded

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ModuleNotFoundError('torch')
    assert guarded(lambda: importlib.import_module("torch"), "dqa") == 2
    err = capsys.readouterr().err
    assert err == "dqa: error: this needs torch, which the light install leaves out: pip install 'vrthinker[hf]'\n"
    monkeypatch.setitem(sys.modules, "not_an_extra_module", None)
    with pytest.raises(ModuleNotFoundError):  # a module no extra installs is a bug: it keeps its traceback
        guarded(lambda: importlib.import_module("not_an_extra_module"))
