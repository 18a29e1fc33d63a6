"""`dqa score --backend openai` takes the OpenAI client's flags as `judge` does and hands them to the backend."""
from __future__ import annotations

import argparse

import pytest

FLAGS = ("--timeout", "--turn-deadline", "--connect-timeout", "--client-cache-mb")


def _actions(p: argparse.ArgumentParser) -> dict:
    return {o: a for a in p._actions for o in a.option_strings}


def _score_parser() -> argparse.ArgumentParser:
    from dqa.cli import parser

    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["score"]


def test_score_has_judges_client_flags_with_the_same_defaults_and_help():
    from vrthinker.cli import compare_parser

    score = _actions(_score_parser())
    judge = _actions(compare_parser())
    for flag in FLAGS:
        assert flag in score, flag
        s, j = score[flag], judge[flag]
        assert (s.dest, s.default, s.type, s.metavar, s.help) == (j.dest, j.default, j.type, j.metavar, j.help)


def _run_score(monkeypatch, clip, extra):
    """dqa score's run() up to the scheduler: the options it gives the workers."""
    import dqa.score.scoring as scoring
    from dqa.score.cli import run

    seen = {}

    class Stop(Exception):
        pass

    def fake_score(items, **kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(scoring, "score", fake_score)
    a = _score_parser().parse_args([str(clip), "--prompt", "p", "--components", "visionreward", "--quiet", *extra])
    with pytest.raises(Stop):
        run(a)
    return seen


def test_the_flags_reach_the_openai_backend(monkeypatch, clips, fake):
    from vrthinker.backends.openai import OpenAIBackend

    from dqa.workers.vlm import VLMWorker

    server = fake([])
    options = _run_score(monkeypatch, clips["a"], ["--backend", "openai", "--server", server.url,
                                                   "--timeout", "30", "--turn-deadline", "7",
                                                   "--connect-timeout", "1.5", "--client-cache-mb", "16"])
    served = options["served"]
    assert (served["timeout"], served["turn_deadline"], served["connect_timeout"], served["client_cache_mb"]) == \
        (30.0, 7.0, 1.5, 16.0)
    got = {}
    real = OpenAIBackend.from_pretrained.__func__

    def spy(cls, *args, **kw):
        got.update(kw)
        return real(cls, *args, **kw)

    monkeypatch.setattr(OpenAIBackend, "from_pretrained", classmethod(spy))
    worker = VLMWorker(device="cpu", served=served)
    b = worker._served()
    assert {k: got[k] for k in ("timeout", "turn_deadline", "connect_timeout", "client_cache_mb")} == \
        {"timeout": 30.0, "turn_deadline": 7.0, "connect_timeout": 1.5, "client_cache_mb": 16.0}
    assert (b.timeout, b.turn_deadline, b.connect_timeout) == (30.0, 7.0, 1.5)
    assert b.media.max_bytes == 16 * 2**20
    # not given: the backend's own defaults, as for `judge`
    defaults = VLMWorker(device="cpu", served=_run_score(monkeypatch, clips["a"], [
        "--backend", "openai", "--server", server.url])["served"])
    monkeypatch.undo()
    d = defaults._served()
    assert d.turn_deadline == 2 * d.timeout and d.connect_timeout == min(5.0, d.timeout)


def test_a_client_flag_without_the_openai_backend_is_a_usage_error(monkeypatch, clips):
    from vrthinker.errors import UsageError

    with pytest.raises(UsageError, match="--turn-deadline.*--backend openai"):
        _run_score(monkeypatch, clips["a"], ["--turn-deadline", "5"])


def test_a_bad_value_is_named(monkeypatch, clips, fake):
    from vrthinker.errors import UsageError

    from dqa.workers.vlm import VLMWorker

    server = fake([])
    served = _run_score(monkeypatch, clips["a"], ["--backend", "openai", "--server", server.url,
                                                  "--connect-timeout", "-1"])["served"]
    with pytest.raises(UsageError, match="connect"):
        VLMWorker(device="cpu", served=served)._served()
