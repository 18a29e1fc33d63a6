"""Shared fixtures: the real Qwen2.5-VL processor files, a tiny random model built from them, clips."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "qwen2_5_vl"  # vendored: a clone anywhere runs every test


FIXTURE_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "chat_template.json",
                 "preprocessor_config.json", "config.json", "generation_config.json")


@pytest.fixture(autouse=True)
def _own_default_store(tmp_path, monkeypatch):
    """A command run without --db writes the default store ($VRTHINKER_DB): each test its own, never ./ here."""
    monkeypatch.setenv("VRTHINKER_DB", str(tmp_path / "judgments.sqlite"))


@pytest.fixture
def fake():
    """Starts fake OpenAI-compatible servers (fake_openai.Fake: error paths only) and closes them after the test."""
    from fake_openai import Fake

    made = []

    def make(script, **kw):
        made.append(Fake(script, **kw))
        return made[-1]

    yield make
    for f in made:
        f.close()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    missing = [n for n in FIXTURE_FILES if not (FIXTURES / n).is_file()]
    if missing:  # a missing fixture fails the run: skipping would let every model test "pass" unseen
        pytest.fail(f"the vendored Qwen2.5-VL processor fixtures are missing at {FIXTURES}: {', '.join(missing)}")
    return FIXTURES


@pytest.fixture(scope="session")
def processor(fixtures_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(fixtures_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, fixtures_dir) -> Path:
    from make_tiny_model import build

    return build(tmp_path_factory.mktemp("tiny-qwen") / "model", fixtures_dir)


@pytest.fixture(scope="session")
def hf_backend(tiny_model_dir):
    from vrthinker.backends.hf import HFBackend

    return HFBackend.from_pretrained(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Two small real H.264 clips of different scenes, and a corrupt file."""
    from vrthinker_eval.synth import render_scene, write_corrupt, write_video

    d = tmp_path_factory.mktemp("clips")
    out = {
        "a": write_video(d / "a.mp4", render_scene("shapes", 160, 96, 36, seed=1), fps=12),
        "b": write_video(d / "b.mp4", render_scene("pan", 160, 96, 30, seed=2), fps=12),
    }
    out["a"], out["b"] = Path(out["a"]), Path(out["b"])
    corrupt = d / "corrupt.mp4"
    write_corrupt(corrupt)
    out["corrupt"] = corrupt
    return out
