"""Every user mistake on `judge` and `dqa` is one line and a documented exit status, never a traceback.

Flags a backend does not use are refused by name (read from what the backend's `from_pretrained` takes);
`judge --help` lists the subcommands; and generated flag combinations of both command lines (hypothesis,
over tiny clips with the weight-free and scripted backends) end in 0, 2 or 3 with no exception escaping.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dqa.cli import main as dqa_main
from vrthinker.cli import SUBCOMMANDS, summary
from vrthinker.cli import main as judge_main
from vrthinker.errors import UsageError

ANSWER = "<Think>v1 is steadier</Think><Answer>TA=1, VQ=1, MQ=2, OA=1</Answer>"
TOOL = '<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [100, 20]}}</tool_call>'
EXITS = {0, 2, 3}  # documented by both: done, a usage mistake, judged/scored but incomplete (or nothing new)


def run(main, argv: list[str]) -> tuple[int, str, str]:
    """Run a command line in-process: (exit status, stdout, stderr). Any exception but SystemExit escapes."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse itself: --help (0) or a usage error (2)
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def inputs(clips, tmp_path_factory) -> dict[str, str]:
    """Static inputs every generated command line may name (none of them is written to)."""
    d = tmp_path_factory.mktemp("fuzz-inputs")
    (d / "replies.json").write_text(json.dumps([TOOL, ANSWER] * 20))
    (d / "bad_replies.json").write_text("{not json")
    (d / "pairs.jsonl").write_text(json.dumps({"id": "p1", "video1": str(clips["a"]), "video2": str(clips["b"]),
                                               "prompt": "A robot"}) + "\n")
    (d / "bad_pairs.jsonl").write_text("{nope\n")
    (d / "manifest.jsonl").write_text(json.dumps({"prompt": "A robot", "candidates": [str(clips["a"]),
                                                                                        str(clips["b"])]}) + "\n")
    (d / "selections.jsonl").write_text(json.dumps({"prompt": "A robot", "a": str(clips["a"]), "b": str(clips["b"]),
                                                    "chosen": "a"}) + "\n")
    (d / "data").mkdir()
    return {"a": str(clips["a"]), "b": str(clips["b"]), "corrupt": str(clips["corrupt"]),
            "missing": str(d / "missing.mp4"), "replies": str(d / "replies.json"),
            "bad_replies": str(d / "bad_replies.json"), "pairs": str(d / "pairs.jsonl"),
            "bad_pairs": str(d / "bad_pairs.jsonl"), "manifest": str(d / "manifest.jsonl"),
            "selections": str(d / "selections.jsonl"), "data": str(d / "data"), "nodir": str(d / "no-such-dir")}


# ------------------------------------------------------------------------------------------------------
# flags a backend does not use


UNUSED = [("--device", "cpu"), ("--quantize", "4bit"), ("--dtype", "float32"), ("--revision", "main"),
          ("--adapter", "ADAPTER"), ("--trust-remote-code",)]


@pytest.mark.parametrize("flag", UNUSED + [("--max-turns", "2"), ("--max-new-tokens", "8"), ("--protocol", "card")],
                         ids=lambda f: f[0])
def test_metrics_backend_refuses_model_flags_by_name(flag, inputs, tmp_path):
    argv = [inputs["a"], inputs["b"], "--prompt", "P", "--backend", "metrics",
            *(str(tmp_path) if v == "ADAPTER" else v for v in flag)]
    code, out, err = run(judge_main, argv)
    assert code == 2 and out == ""
    assert err.startswith(f"judge: error: {flag[0]} does not apply to --backend metrics")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", UNUSED, ids=lambda f: f[0])
def test_scripted_backend_refuses_load_flags_by_name(flag, inputs, tmp_path):
    argv = [inputs["a"], inputs["b"], "--prompt", "P", "--backend", "scripted", "--model", inputs["replies"],
            *(str(tmp_path) if v == "ADAPTER" else v for v in flag)]
    code, _, err = run(judge_main, argv)
    assert code == 2 and err.startswith(f"judge: error: {flag[0]} does not apply to --backend scripted")


def test_subcommands_refuse_them_too(inputs):
    code, _, err = run(judge_main, ["rank", inputs["a"], inputs["b"], "--prompt", "P", "--backend", "metrics",
                                    "--dtype", "float16"])
    assert code == 2 and err.startswith("judge: error: --dtype does not apply to --backend metrics")


def test_the_real_command_has_no_traceback(inputs):
    """The issue's own line, as a user runs it: one line on stderr, exit 2."""
    r = subprocess.run([sys.executable, "-m", "vrthinker.cli", inputs["a"], inputs["b"], "--prompt", "P",
                        "--backend", "metrics", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "judge: error: --device does not apply to --backend metrics; leave it out"


def test_what_each_backend_takes_comes_from_its_signature():
    from vrthinker.judge import Judge, unused_options

    every = {"device": "cpu", "dtype": "float32", "quantize": "4bit", "revision": "main", "adapter": "x",
             "trust_remote_code": True, "protocol": "card", "max_turns": 2, "max_new_tokens": 8}
    assert unused_options("hf", every) == []
    assert unused_options("scripted", every) == ["device", "dtype", "quantize", "revision", "adapter",
                                                 "trust_remote_code"]
    assert unused_options("metrics", every) == list(every)
    assert unused_options("metrics", {"tie_margin": 0.05, "device": None}) == []  # its own options; None: not given
    assert Judge.from_pretrained(backend="metrics", tie_margin=0.05).tie_margin == 0.05
    with pytest.raises(UsageError, match="backend='metrics' does not take device="):
        Judge.from_pretrained(backend="metrics", device="cpu")


# ------------------------------------------------------------------------------------------------------
# help


def test_help_lists_every_subcommand_with_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        judge_main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for name in ("batch", "rank", "pairs", "export", "report", "eval"):
        line = next((ln for ln in out.splitlines() if re.match(rf"^\s+{name}\s{{2,}}\S", ln)), None)
        assert line is not None, f"{name} missing from judge --help"
        first = summary(SUBCOMMANDS[name])
        assert first and line.split(None, 1)[1] == first


# ------------------------------------------------------------------------------------------------------
# generated flag combinations


def _pick(options):
    return st.sampled_from(options)


def _mostly(good, *bad):
    """Usually `good` (a run that gets somewhere), sometimes one of the mistakes."""
    return st.sampled_from([good] * (4 * len(bad) or 1) + list(bad))


@st.composite
def model_flags(draw, inputs, backends=("metrics", "scripted")):
    backend = draw(_mostly(draw(_pick(backends)), "nonesuch"))
    flags = ["--backend", backend]
    if backend == "scripted" or draw(st.booleans()):
        flags += ["--model", inputs[draw(_mostly("replies", "bad_replies", "missing"))]]
    optional = {
        "--protocol": ["card", "training", "nope"], "--max-turns": ["1", "3", "0", "-1", "x"],
        "--max-new-tokens": ["16", "0"], "--device": ["cpu", "cuda:7"], "--dtype": ["float32", "int8"],
        "--quantize": ["4bit", "3bit"], "--revision": ["main"], "--adapter": [inputs["nodir"]],
    }
    if draw(st.integers(0, 2)) == 0:
        for flag in draw(st.lists(_pick(sorted(optional)), min_size=1, max_size=2, unique=True)):
            flags += [flag, draw(_pick(optional[flag]))]
    if draw(st.integers(0, 9)) == 0:
        flags.append("--trust-remote-code")
    return flags


@st.composite
def judge_argv(draw, inputs, db):
    command = draw(_pick(["compare", "compare", "compare", "batch", "rank", "rank", "pairs", "export", "report",
                          "eval"]))
    video = _mostly("a", "corrupt", "missing")
    other = _mostly("b", "corrupt", "missing")
    if command == "compare":
        argv = [inputs[draw(video)], inputs[draw(other)]]
        argv += draw(_mostly(["--prompt", "A robot"], ["--prompt", "  "], []))
        argv += draw(st.lists(_mostly("--json", "--orders=both", f"--trace={db}.trace.json", "--orders=sideways"),
                              max_size=2, unique=True))
        return argv + draw(model_flags(inputs))
    if command == "batch":
        argv = ["batch", inputs[draw(_mostly("pairs", "bad_pairs", "missing"))], "--db", db]
        argv += draw(_pick([[], ["--orders", "one"], ["--orders", "both"], ["--orders", "three"]]))
        return argv + draw(model_flags(inputs))
    if command == "rank":
        argv = ["rank", *draw(_mostly([inputs["a"], inputs["b"], "--prompt", "A robot"],
                                      [inputs["a"], "--prompt", "p"], ["--manifest", inputs["bad_pairs"]],
                                      [inputs["a"], inputs["missing"], "--prompt", "p"], [inputs["a"], inputs["b"]]))]
        if draw(st.booleans()):
            argv = ["rank", "--manifest", inputs["manifest"]]
        argv += draw(_pick([[], [], ["--budget", "1"], ["--schedule", "round_robin"], ["--db", db],
                            ["--orders", "both"], ["--budget", "0"], ["--seed", "x"]]))
        return argv + draw(model_flags(inputs))
    if command == "eval":
        argv = ["eval", "--benchmark", draw(_pick(["videogen-rewardbench", "genai-bench", "mjbench-video", "nope"])),
                "--data", inputs[draw(_pick(["data", "nodir"]))], "--db", db]
        argv += draw(_pick([[], ["--limit", "1"], ["--bootstrap", "-1"], ["--json"]]))
        return argv + draw(model_flags(inputs))
    argv = [command, "--db", draw(_mostly(db, inputs["missing"]))]
    if command in ("pairs", "report") or draw(st.booleans()):
        argv += ["--out", f"{db}.{command}.out"]
    extra = {"pairs": [["--dimension", "VQ"], ["--dimension", "XX"], ["--min-margin", "x"],
                       ["--require-consistent", "--allow-inconsistent"]],
             "export": [["--include-bad"], ["--job", "nope"]],
             "report": [["--limit", "1"], ["--thumb", "0"], ["--thumb", "x"]]}[command]
    return argv + draw(_pick([[], *extra]))


@st.composite
def dqa_argv(draw, inputs, db):
    command = draw(_pick(["select", "import-selections", "tune", "agreement", "score", "score", "score"]))
    if command == "select":
        argv = ["select", "--db", db, "--prompt", draw(_mostly("A robot", "")),
                "--a", inputs[draw(_mostly("a", "missing"))], "--b", inputs[draw(_mostly("b", "a", "corrupt"))],
                "--chosen", draw(_mostly("a", "b", "c"))]
        return argv + draw(_pick([[], ["--dimension", "VQ"], ["--dimension", "XX"], ["--time", "yesterday"],
                                  ["--time", "2025-01-02T03:04:05"]]))
    if command == "import-selections":
        return ["import-selections", inputs[draw(_mostly("selections", "bad_pairs", "missing"))], "--db", db]
    if command in ("tune", "agreement"):
        argv = [command, "--db", db] + (["--out", f"{db}.adapter"] if command == "tune" else [])
        if command == "tune":
            argv += draw(_pick([[], ["--max-steps", "0"], ["--min-new", "x"]]))
        return argv + draw(model_flags(inputs))
    videos = draw(st.lists(_mostly("a", "b", "corrupt", "missing"), min_size=1, max_size=2))
    argv = ["score", *(inputs[v] for v in videos)]
    if draw(st.integers(0, 5)) == 0:
        argv = ["score"] + draw(_pick([[], [f"--manifest={inputs['pairs']}"], [inputs["a"], f"--manifest={db}"]]))
    argv += draw(_mostly(["--prompt", "A robot"], ["--prompt", ""], []))
    argv += ["--components", draw(_mostly("measures", "vq", "vq,mq", "temporal_flickering", "nonesuch", "offline,"))]
    argv += draw(st.lists(_pick(["--json", "--quiet", f"--db={db}", "--vram-budget=0", "--vram-budget=-1",
                                 "--weight=vq=2", "--weight=vq=abc", "--weight=x", "--models=bogus=/x",
                                 "--device=cpu"]), max_size=2, unique=True))
    return argv


FUZZ = settings(max_examples=int(os.environ.get("CLI_FUZZ_EXAMPLES", "40")), deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _check(prog: str, argv: list[str], result: tuple[int, str, str]) -> None:
    code, out, err = result
    if os.environ.get("CLI_FUZZ_LOG"):  # to see what the generated lines did: one JSON line per run
        with open(os.environ["CLI_FUZZ_LOG"], "a") as f:
            f.write(json.dumps({"argv": argv, "code": code, "err": err.strip()[-200:]}) + "\n")
    assert code in EXITS, (argv, code, err)
    assert "Traceback" not in err and "Traceback" not in out, argv
    if code == 2:  # a usage mistake: our one line (argparse's own errors add their usage line first)
        lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("usage:", " "))]
        assert len(lines) == 1 and re.match(rf"{prog}( [a-z-]+)?: error: ", lines[0]), (argv, err)


@FUZZ
@given(data=st.data())
def test_judge_flag_combinations_never_trace_back(inputs, data):
    with tempfile.TemporaryDirectory() as d, contextlib.chdir(d):
        argv = data.draw(judge_argv(inputs, str(Path(d) / "j.sqlite")), label="argv")
        _check("judge", argv, run(judge_main, argv))


@FUZZ
@given(data=st.data())
def test_dqa_flag_combinations_never_trace_back(inputs, data):
    with tempfile.TemporaryDirectory() as d, contextlib.chdir(d):
        argv = data.draw(dqa_argv(inputs, str(Path(d) / "d.sqlite")), label="argv")
        _check("dqa", argv, run(dqa_main, argv))
