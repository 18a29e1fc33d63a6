"""Which conversation a checkpoint gets: a known checkpoint in every form a user names it, a refusal (one line,
both profiles, how to declare one) for a checkpoint no rule knows, and the same rule in judge, eval, tune, serve."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dqa.cli import main as dqa_main
from vrthinker.cli import main
from vrthinker.errors import UsageError
from vrthinker.protocol import recognise, resolve

SNAPSHOT = "models--qunwang13--vr-thinker/snapshots/0123456789abcdef"
ANSWER = "<Answer>TA=1, VQ=2, MQ=1, OA=1</Answer>"


def checkpoint(folder: Path, files: dict[str, str] | None = None) -> str:
    """A folder that looks like a downloaded checkpoint (config.json; weights are not read to pick a profile)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    return str(folder)


@pytest.mark.parametrize("name, profile", [
    ("qunwang13/vr-thinker", "training"), ("QunWang13/VR-Thinker", "training"), ("QUNWANG13/VRTHINKER", "card"),
    (f"/home/u/.cache/huggingface/hub/{SNAPSHOT}", "training"), (f"/hub/{SNAPSHOT}/", "training"),
    ("/hub/models--QunWang13--VRThinker", "card"),
])
def test_a_known_checkpoint_by_hub_id_in_any_case_or_its_cache_path(name, profile):
    got, source = resolve(name)
    assert got.name == profile and "qunwang13/" in source and source != "default"
    # it is the checkpoint's identity: a conflicting --protocol is overridden, and the source says so
    other = "card" if profile == "training" else "training"
    got, source = resolve(name, other)
    assert got.name == profile and source.endswith(f"(overrides --protocol {other})")


def test_a_hub_cache_snapshot_on_disk(tmp_path):
    snap = checkpoint(tmp_path / "hub" / SNAPSHOT)
    assert resolve(snap) == resolve("qunwang13/vr-thinker")[:1] + ("hub cache of known checkpoint "
                                                                   "qunwang13/vr-thinker",)


def test_a_local_copy_named_as_downloaded(tmp_path):
    """`hf download qunwang13/vr-thinker --local-dir ./vr-thinker`: the folder keeps the repository's name."""
    local = checkpoint(tmp_path / "vr-thinker")
    (tmp_path / "vr-thinker" / ".cache" / "huggingface").mkdir(parents=True)
    profile, source = resolve(local)
    assert profile.name == "training" and source == "folder vr-thinker (known checkpoint qunwang13/vr-thinker)"
    assert resolve(checkpoint(tmp_path / "VRThinker"))[0].name == "card"
    # a folder name is a hint, not an identity: --protocol wins over it
    profile, source = resolve(local, "card")
    assert profile.name == "card" and source == "--protocol"


def test_a_local_copy_whose_card_or_config_names_the_checkpoint(tmp_path):
    readme = checkpoint(tmp_path / "ckpt", {"README.md": "---\nlicense: mit\n---\n# VR-Thinker\n"
                        "model = AutoModel.from_pretrained('qunwang13/vr-thinker')\n"})
    assert resolve(readme) == (resolve("qunwang13/vr-thinker")[0], "README.md names qunwang13/vr-thinker")
    both = checkpoint(tmp_path / "both", {"README.md": "see qunwang13/vr-thinker and qunwang13/vrthinker"})
    with pytest.raises(UsageError):  # names both: no guess
        resolve(both)
    saved = tmp_path / "saved"
    checkpoint(saved)
    (saved / "config.json").write_text(json.dumps({"_name_or_path": "QunWang13/VRThinker"}))
    assert resolve(str(saved)) == (resolve("qunwang13/vrthinker")[0], "config.json _name_or_path names "
                                                                       "qunwang13/vrthinker")


def test_a_declaration_beside_the_checkpoint_wins_over_every_name(tmp_path):
    local = checkpoint(tmp_path / "vr-thinker", {"judge_protocol.json": '{"profile": "card"}'})
    assert resolve(local, "training") == (resolve(local)[0], "judge_protocol.json beside the checkpoint "
                                                             "(overrides --protocol training)")
    assert resolve(local)[0].name == "card"


@pytest.mark.parametrize("name", ["someone/else", "qunwang13/vr-thinker-2", "/srv/ckpt", "models--a--b/snapshots/1"])
def test_an_unknown_checkpoint_is_refused_in_one_line(name, tmp_path):
    with pytest.raises(UsageError) as e:
        resolve(name)
    msg = str(e.value)
    assert "\n" not in msg and "--protocol card" in msg and "--protocol training" in msg
    assert "judge_protocol.json" in msg and name in msg
    assert resolve(name, "training") == (resolve("qunwang13/vr-thinker")[0], "--protocol")


def test_a_servers_model_root_is_read_by_its_spelling_only():
    assert recognise("/data/models/vr-thinker", local=False).profile == "training"
    assert recognise(f"/mnt/other-machine/{SNAPSHOT}", local=False).identity
    assert recognise("my-judge", local=False) is None  # a bare --served-model-name names nothing


# ----------------------------------------------------------------------------------------------------------
# every command resolves the same way


def _one_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error:") and "Traceback" not in err, err
    return lines[0]


def test_judge_refuses_an_unknown_local_checkpoint_before_loading(clips, tmp_path, capsys):
    ckpt = checkpoint(tmp_path / "ckpt")  # no weights at all: the refusal comes before any load
    code = main([str(clips["a"]), str(clips["b"]), "--prompt", "p", "--model", ckpt])
    line = _one_line(capsys.readouterr().err, "judge")
    assert code == 2 and "--protocol card or --protocol training" in line and ckpt in line


def test_verdict_header_names_profile_and_source(clips, tmp_path, capsys):
    replies = tmp_path / "r.json"
    replies.write_text(json.dumps([ANSWER]))
    for args, want in (([], "profile: card/1 (default)"), (["--protocol", "training"], "profile: training/1 "
                                                                                       "(--protocol)")):
        code = main([str(clips["a"]), str(clips["b"]), "--prompt", "p", "--backend", "scripted", "--model",
                     str(replies), *args])
        out = capsys.readouterr().out
        assert code in (0, 3) and want in out
        assert out.index(want) < out.index("Text Alignment")  # in the header, above the labels


def test_eval_tune_and_serve_refuse_the_same_checkpoint(clips, tmp_path, capsys):
    ckpt = checkpoint(tmp_path / "ckpt")
    data = tmp_path / "mj"
    data.mkdir()
    (data / "test.json").write_text(json.dumps([{"caption": "c", "video_0_path": str(clips["a"]),
                                                 "video_1_path": str(clips["b"]),
                                                 "overall_preference": "Video 1 better"}]))
    assert main(["eval", "--benchmark", "mjbench-video", "--data", str(data), "--model", ckpt]) == 2
    assert "--protocol training" in _one_line(capsys.readouterr().err, "judge")
    db = str(tmp_path / "sel.sqlite")
    assert dqa_main(["select", "--db", db, "--prompt", "A robot", "--a", str(clips["a"]), "--b", str(clips["b"]),
                     "--chosen", "a", "--dimension", "OA"]) == 0
    capsys.readouterr()
    assert dqa_main(["tune", "--db", db, "--model", ckpt, "--out", str(tmp_path / "out"), "--min-new", "1"]) == 2
    assert "--protocol training" in _one_line(capsys.readouterr().err, "dqa")
    assert dqa_main(["serve", "--media-root", str(tmp_path), "--model", ckpt, "--port", "1"]) == 2
    assert "--protocol training" in _one_line(capsys.readouterr().err, "dqa")
