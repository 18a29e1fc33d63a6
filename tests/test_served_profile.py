"""A served model: its profile comes from its name or root by the same rule as a local checkpoint, and a prompt
the server refuses as past --max-model-len ends the conversation as token_limit, which `judge eval` counts."""
from __future__ import annotations

import json

import pytest
from fake_openai import reply_json as _reply

from vrthinker.cli import main
from vrthinker.errors import UsageError

ANSWER = "<Answer>TA=1, VQ=1, MQ=1, OA=1</Answer>"
# vLLM 0.x's reply to a prompt past --max-model-len (HTTP 400)
TOO_LONG = json.dumps({"object": "error", "type": "BadRequestError", "param": None, "code": 400,
                       "message": "This model's maximum context length is 32768 tokens. However, you requested "
                                  "34520 tokens (32472 in the messages, 2048 in the completion). Please reduce "
                                  "the length of the messages or completion."})


def _backend(url, **kw):
    from vrthinker.backends.openai import OpenAIBackend

    return OpenAIBackend([url], backoff_s=0.01, **kw)


@pytest.mark.parametrize("served, profile", [
    ({"id": "judge", "root": "qunwang13/vr-thinker"}, "training"),  # vllm serve ... --served-model-name judge
    ({"id": "judge", "root": "/root/.cache/huggingface/hub/models--qunwang13--vr-thinker/snapshots/9f1c"},
     "training"),
    ({"id": "judge", "root": "/models/vr-thinker"}, "training"),  # hf download --local-dir /models/vr-thinker
    ({"id": "QunWang13/VRThinker", "root": "QunWang13/VRThinker"}, "card"),
])
def test_a_served_checkpoint_is_recognised_by_its_name_or_root(fake, served, profile):
    b = _backend(fake([], model={**served, "owned_by": "vllm"}).url)
    got, source = b.resolve_profile(None)
    assert got.name == profile and "qunwang13/" in source and source.endswith("(served)")


def test_an_unknown_served_model_is_refused_in_one_line_unless_told(fake):
    b = _backend(fake([], model={"id": "judge", "root": "/srv/ckpt", "owned_by": "vllm"}).url)
    with pytest.raises(UsageError) as e:
        b.resolve_profile(None)
    assert "\n" not in str(e.value) and "--protocol card or --protocol training" in str(e.value)
    assert b.resolve_profile("training") == (b.resolve_profile("training")[0], "--protocol")


def test_a_prompt_past_max_model_len_ends_as_token_limit_not_server_error(fake, clips):
    from vrthinker.judge import Judge

    f = fake([(400, TOO_LONG)], model={"id": "judge", "root": "qunwang13/vrthinker", "owned_by": "vllm"})
    b = _backend(f.url)
    v = Judge(b, b.resolve_profile(None)[0], max_turns=2, max_new_tokens=16).compare(clips["a"], clips["b"], "p")
    assert v.reason == "token_limit" and "maximum context length is 32768" in v.detail and len(f.calls) == 1
    assert v.labels == dict.fromkeys(("TA", "VQ", "MQ", "OA"))
    g = fake([(400, '{"object": "error", "message": "temperature must be positive", "code": 400}')])
    v = Judge(_backend(g.url), "card", max_turns=1, max_new_tokens=16).compare(clips["a"], clips["b"], "p")
    assert v.reason == "server_error" and "HTTP 400" in v.detail  # any other 400 is still the request's fault


def test_eval_counts_a_prompt_the_server_refused_as_wrong(fake, clips, tmp_path, capsys):
    """The issue's run: three pairs, the third refused as too long. Before: 'evaluated 2', OA 0.50, exit 0."""
    data = tmp_path / "mj"
    data.mkdir()
    prefs = ["Video 1 better", "Video 2 better", "Video 1 better"]
    (data / "test.json").write_text(json.dumps([
        {"caption": f"prompt {k}", "video_0_path": str(clips["a"]), "video_1_path": str(clips["b"]),
         "overall_preference": pref} for k, pref in enumerate(prefs)]))
    f = fake([(200, _reply(ANSWER)), (200, _reply(ANSWER)), (400, TOO_LONG)],
             model={"id": "judge", "root": "qunwang13/vrthinker", "owned_by": "vllm"})
    args = ["eval", "--benchmark", "mjbench-video", "--data", str(data), "--backend", "openai", "--server", f.url,
            "--concurrency", "1", "--bootstrap", "0", "--db", str(tmp_path / "j.sqlite")]
    assert main([*args, "--json"]) == 3
    r = json.loads(capsys.readouterr().out)
    assert (r["given"], r["judged"], r["failed"]) == (3, 2, {"token_limit": 1})
    oa = r["metrics"]["dimensions"]["OA"]["without_ties"]
    assert (oa["correct"], oa["n"], oa["missing"]) == (1, 3, 1) and oa["value"] == pytest.approx(1 / 3)
    assert r["metrics_judged_only"]["dimensions"]["OA"]["without_ties"]["value"] == 0.5
    assert r["model"]["profile_source"] == "known checkpoint qunwang13/vrthinker (served)"
    # a re-run judges the failed pair again (nothing stored for it) and the table shows both rows
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[0] == "coverage: 3 of 3 pairs judged (100.0%)"
