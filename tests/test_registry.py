"""The lazy "module:Class" registry: nothing imported until chosen, duplicates refused, "did you mean"."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vrthinker.errors import UsageError
from vrthinker.registry import Registry, import_spec

ROOT = Path(__file__).resolve().parents[1]


def test_an_entry_is_imported_only_when_loaded():
    reg = Registry("thing", {"here": "json:JSONDecoder"})
    reg.register("later", "no_such_module_anywhere:Thing")  # a string until chosen: registering imports nothing
    assert list(reg) == ["here", "later"] and reg["later"] == "no_such_module_anywhere:Thing"
    assert reg.load("here") is json.JSONDecoder
    with pytest.raises(ModuleNotFoundError):
        reg.load("later")


def test_a_taken_name_is_refused():
    reg = Registry("backend", {"hf": "json:JSONDecoder"})
    with pytest.raises(ValueError, match="already registered"):
        reg.register("hf", "json:JSONEncoder")
    with pytest.raises(ValueError, match="already registered"):
        reg["hf"] = "json:JSONEncoder"
    assert reg.load("hf") is json.JSONDecoder  # the first entry stands


@pytest.mark.parametrize("spec", ["json", "json:", ":JSONDecoder", ""])
def test_a_spec_must_be_module_colon_name(spec):
    with pytest.raises(ValueError, match="module:Class"):
        Registry("thing").register("x", spec)


def test_an_unknown_name_says_what_is_close_and_lists_all():
    reg = Registry("backend", {"hf": "json:JSONDecoder", "scripted": "json:JSONEncoder", "metrics": "json:dumps"})
    with pytest.raises(UsageError) as e:
        reg.load("scriptd")
    msg = str(e.value)
    assert "unknown backend 'scriptd'" in msg and "did you mean 'scripted'?" in msg
    assert msg.endswith("choose from hf, metrics, scripted")
    with pytest.raises(UsageError) as e:
        reg.info("zzz")
    assert "did you mean" not in str(e.value) and "choose from hf, metrics, scripted" in str(e.value)


def test_base_class_is_checked_on_load():
    reg = Registry("worker", {"ok": "json:JSONDecoder", "bad": "json:dumps"}, base=json.JSONDecoder)
    assert reg.load("ok") is json.JSONDecoder
    with pytest.raises(TypeError, match="not a JSONDecoder"):
        reg.load("bad")


def test_import_spec_reaches_nested_names():
    assert import_spec("json:JSONDecoder.decode") is json.JSONDecoder.decode


def test_judge_backends_are_registries():
    from vrthinker import judge

    assert isinstance(judge.BACKENDS, Registry) and isinstance(judge.JUDGES, Registry)
    assert judge.backend_names() == ["hf", "metrics", "openai", "scripted"]
    with pytest.raises(ValueError, match="already registered"):
        judge.BACKENDS["hf"] = "vrthinker.backends.scripted:ScriptedBackend"
    with pytest.raises(UsageError, match="did you mean 'metrics'"):
        judge.Judge.from_pretrained(backend="metric")


def test_the_worker_table_matches_the_worker_classes():
    from dqa.workers import WORKERS, registry

    classes = registry()
    assert list(classes) == list(WORKERS)
    for name, cls in classes.items():
        assert cls.name == name
        assert tuple(WORKERS.info(name)["components"]) == tuple(cls.components)


def test_an_unknown_worker_gets_did_you_mean():
    from dqa.workers import WORKERS

    with pytest.raises(UsageError, match="did you mean 'vbench.raft'"):
        WORKERS.load("vbench.raf")


HEAVY = ("dqa.vbench", "dqa.grounding", "dqa.workers.vlm", "dqa.workers.proxyclip")


def test_choosing_measures_imports_no_heavy_scorer(clips, tmp_path):
    """`dqa score --components measures` in a fresh interpreter: no VBench, ProxyCLIP or checklist module."""
    argv = ["score", str(clips["a"]), "--prompt", "p", "--components", "measures", "--json", "--quiet"]
    code = (
        "import json, sys\n"
        "from dqa.cli import main\n"
        f"rc = main({argv!r})\n"
        f"heavy = sorted(m for m in sys.modules if m.startswith({HEAVY!r}))\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}), file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    report = json.loads(r.stderr.strip().splitlines()[-1])
    assert report["rc"] == 0, r.stderr
    assert set(json.loads(r.stdout)["videos"][0]["components"]) == {"vq", "mq"}
    assert report["heavy"] == []


def test_choosing_flicker_imports_its_module_only(clips, tmp_path):
    """The control: a chosen VBench worker is imported, the others stay unloaded."""
    code = (
        "import sys\n"
        "from dqa.score.scoring import build_workers, resolve_components\n"
        "print([w.name for w in build_workers(resolve_components(['temporal_flickering']))])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('dqa.vbench.', 'dqa.workers.'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    names, modules = r.stdout.strip().splitlines()
    assert names == "['vbench.flicker']", r.stderr
    assert "dqa.vbench.flicker" in modules and "dqa.vbench.raft" not in modules and "dqa.workers.vlm" not in modules
