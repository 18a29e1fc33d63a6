"""The transformers backend on a tiny random Qwen2.5-VL with the real processor: cache reuse is exact."""
import pytest
import torch
from transformers import LogitsProcessorList

from vrthinker import loading
from vrthinker.backends.hf import FeatureCache, HFBackend
from vrthinker.errors import ModelLoadError, UsageError
from vrthinker.judge import Judge
from vrthinker.protocol import Conversation, Profile
from vrthinker.testing import ForcedReplies, random_grid

pytestmark = pytest.mark.slow
TOOL = '<Think>look</Think><tool_call>{"name": "select_frames", "arguments": {"frame_indices": %s}}</tool_call>'


def scripted_conversation(backend, replies, calls, new_tokens=6, grids=None):
    """Free (greedy) generation each turn, while the conversation itself follows `replies`/`calls`."""
    conv = Conversation(Profile.load("card"), "a red ball bounces", grids or [random_grid(1), random_grid(2)])
    session = backend.new_session()
    outs = []
    for k in range(len(replies) + 1):
        r = session.generate(conv.messages, conv.pil_images, new_tokens)
        outs.append(r)
        if k < len(replies):
            conv.add_reply(replies[k])
            conv.add_tool_response(calls[k])
    return outs, conv, session


def test_cache_reuse_equals_full_recompute(hf_backend):
    full = HFBackend(hf_backend.model, hf_backend.processor, "tiny", reuse_cache=False)
    replies = [TOOL % [1, 64, 127], "Some text with <b>odd</b> tokens \u2014 " + TOOL % [5]]
    calls = [[1, 64, 127], [5]]
    ours, conv, _ = scripted_conversation(hf_backend, replies, calls)
    theirs, _, _ = scripted_conversation(full, replies, calls)
    assert [r.text for r in ours] == [r.text for r in theirs]
    assert [r.new_tokens for r in ours] == [r.new_tokens for r in theirs]
    # each turn prefills only what is new; the reference re-encodes everything
    assert ours[0].reused_tokens == 0 and all(r.reused_tokens > 0 for r in ours[1:])
    final = theirs[-1].prefill_tokens
    assert sum(r.prefill_tokens for r in ours) <= 1.05 * (final + sum(r.new_tokens for r in ours))
    assert sum(r.prefill_tokens for r in theirs) > 2 * final * 0.9


def test_manual_tokenization_equals_processor(hf_backend):
    _, conv, session = scripted_conversation(hf_backend, [TOOL % [3, 4]], [[3, 4]], new_tokens=2)
    rendered = hf_backend.processor.apply_chat_template(conv.messages, tokenize=False, add_generation_prompt=True)
    expected = hf_backend.processor(text=[rendered], images=conv.pil_images, return_tensors="pt")
    assert session._tokenize(rendered) == expected["input_ids"][0].tolist()
    assert torch.equal(torch.stack(session.grids), expected["image_grid_thw"])


def test_each_image_is_encoded_once(hf_backend, monkeypatch):
    seen = []
    orig = hf_backend.model.model.get_image_features

    def counting(pixel_values, image_grid_thw=None, **kw):
        seen.append(int(image_grid_thw.shape[0]))
        return orig(pixel_values, image_grid_thw, **kw)

    monkeypatch.setattr(hf_backend.model.model, "get_image_features", counting)
    monkeypatch.setattr(hf_backend, "features", FeatureCache(hf_backend))
    scripted_conversation(hf_backend, [TOOL % [8, 12], TOOL % [20]], [[8, 12], [20]], new_tokens=2)
    assert seen == [8, 4, 2]  # grid 8, 12, 20 are real frames 2, 3, 5 of 32
    # the same videos again (another pair, or the other order): nothing is re-encoded
    scripted_conversation(hf_backend, [TOOL % [12]], [[12]], new_tokens=2, grids=[random_grid(2), random_grid(1)])
    # grid 9 shows real frame 2 again, as grid 8 did: same content, not re-encoded either
    scripted_conversation(hf_backend, [TOOL % [9]], [[9]], new_tokens=2)
    assert seen == [8, 4, 2]


def test_interleaved_sessions_do_not_disturb_each_other(hf_backend):
    replies, calls = [TOOL % [7]], [[7]]
    alone, _, _ = scripted_conversation(hf_backend, replies, calls, grids=[random_grid(5), random_grid(6)])
    p = Profile.load("card")
    a = Conversation(p, "a red ball bounces", [random_grid(5), random_grid(6)])
    b = Conversation(p, "another prompt entirely", [random_grid(7), random_grid(8, 3)])
    sa, sb = hf_backend.new_session(), hf_backend.new_session()
    out = [sa.generate(a.messages, a.pil_images, 6)]
    sb.generate(b.messages, b.pil_images, 6)
    a.add_reply(replies[0])
    a.add_tool_response(calls[0])
    b.add_reply("no")
    sb.generate(b.messages, b.pil_images, 6)  # leaves its own rope state in the model
    out.append(sa.generate(a.messages, a.pil_images, 6))
    assert [r.text for r in out] == [r.text for r in alone]


def test_forced_script_end_to_end_on_real_clips(tiny_model_dir, clips):
    backend = HFBackend.from_pretrained(str(tiny_model_dir), device="cpu")
    tok = backend.processor.tokenizer
    script = [TOOL % [0, 127, 64], "<Snapshot>ok</Snapshot><Think>v2 is steadier</Think>"
              "<Answer>TA=1, VQ=2, MQ=2, OA=2</Answer>"]
    forced = ForcedReplies(tok, script, eos_id=tok.convert_tokens_to_ids("<|im_end|>"))
    backend.generate_kwargs = {"logits_processor": LogitsProcessorList([forced])}
    v = Judge(backend, "card").compare(clips["a"], clips["b"], "shapes move")
    assert v.complete and dict(v.labels) == {"TA": 1, "VQ": 2, "MQ": 2, "OA": 2}
    assert v.frames_requested == ((0, 127, 64),) and v.reasoning == "v2 is steadier"
    t0, t1 = v.turns
    assert t0.reused_tokens == 0 and t1.reused_tokens > 0.9 * t0.prefill_tokens
    assert t1.rendered.count("<|image_pad|>") == 14 and t0.stopped == "eos"
    assert [(f.video, f.grid_index) for f in t1.new_images] == [(1, 0), (2, 0), (1, 127), (2, 127), (1, 64), (2, 64)]


def test_both_orders_batched_equal_one_after_the_other(tiny_model_dir, clips):
    backend = HFBackend.from_pretrained(str(tiny_model_dir), device="cpu")
    judge = Judge(backend, "card", max_new_tokens=8)
    batched = judge.compare(clips["a"], clips["b"], "shapes move", orders="both")
    backend.batch = False
    sequential = judge.compare(clips["a"], clips["b"], "shapes move", orders="both")
    assert [v.turns[0].reply for v in batched.per_order] == [v.turns[0].reply for v in sequential.per_order]
    assert batched.per_order[1].videos == (str(clips["b"]), str(clips["a"]))
    assert dict(batched.labels) == dict(sequential.labels)


def test_generation_settings_come_from_the_checkpoint(hf_backend):
    gc = hf_backend.config_for(5)
    assert gc.do_sample is False and gc.repetition_penalty == 1.05 and gc.max_new_tokens == 5
    assert 151645 in hf_backend.eos_ids


def test_load_errors_are_typed(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        HFBackend.from_pretrained(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="could not load"):
        HFBackend.from_pretrained(str(tmp_path / "empty"), device="cpu")
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        HFBackend.from_pretrained("nobody-here/no-such-model", device="cpu")  # conftest sets HF_HUB_OFFLINE=1
    with pytest.raises(ModelLoadError, match="dtype"):
        HFBackend.from_pretrained(str(tmp_path / "empty"), dtype="float8")


@pytest.mark.parametrize("quantize,layer", [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_quantized_loading(tiny_model_dir, quantize, layer):
    pytest.importorskip("bitsandbytes")
    b = HFBackend.from_pretrained(str(tiny_model_dir), device="cpu", quantize=quantize)
    assert type(b.model.model.language_model.layers[0].self_attn.q_proj).__name__ == layer
    assert type(b.model.model.visual.blocks[0].attn.qkv).__name__ == "Linear"  # vision tower kept as is
    conv = Conversation(Profile.load("card"), "x", [random_grid(1), random_grid(2)])
    r = b.new_session().generate(conv.messages, conv.pil_images, 3)
    assert r.new_tokens == 3 and r.prefill_tokens > 2000


def _common(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _spy_generate(backend, monkeypatch):
    """Record, per generate call: the real key/value cache length handed in, the input ids, the full output
    sequence, the cache length coming out, and the first step's raw logits."""
    calls = []
    orig = backend.model.generate

    def spy(*args, **kw):
        given = kw.get("past_key_values")
        before = 0 if given is None else given.get_seq_length()
        out = orig(*args, **kw)
        calls.append({"before": before, "ids": kw["input_ids"][0].tolist(), "seq": out.sequences[0].tolist(),
                      "after": out.past_key_values.get_seq_length(), "logits": out.logits[0][0].clone()})
        return out

    monkeypatch.setattr(backend.model, "generate", spy)
    return calls


@pytest.mark.parametrize("forced", [True, False], ids=["whole-prefix", "reply-differs"])
def test_real_cache_length_after_every_turn(hf_backend, monkeypatch, forced):
    """The key/value cache itself (not the reported figure) holds what each turn reuses and produces; in the
    normal case (the reply re-tokenizes exactly) the whole cached sequence is still a prefix and is kept."""
    tok = hf_backend.processor.tokenizer
    script = [TOOL % [3, 70], TOOL % [100]]
    backend = HFBackend(hf_backend.model, hf_backend.processor, "tiny")
    gen = {"output_logits": True}
    if forced:
        gen["logits_processor"] = LogitsProcessorList([ForcedReplies(tok, script + ["<Answer>OA=1</Answer>"],
                                                                     eos_id=tok.convert_tokens_to_ids("<|im_end|>"))])
    backend.generate_kwargs = gen
    calls = _spy_generate(backend, monkeypatch)
    conv = Conversation(Profile.load("card"), "a red ball bounces", [random_grid(3), random_grid(4)])
    session = backend.new_session()
    replies = []
    for k in range(3):
        r = session.generate(conv.messages, conv.pil_images, 40)
        replies.append(r)
        c = calls[-1]
        assert session.prefix.cache is not None and session.prefix.length == session.prefix.cache.get_seq_length()
        # what generate was handed: exactly the reused tokens' keys/values (nothing when nothing is reused)
        assert c["before"] == r.reused_tokens and len(c["ids"]) == r.reused_tokens + r.prefill_tokens
        # what it holds afterwards: every token fed or generated but the last generated one
        assert c["after"] == session.prefix.length == len(c["ids"]) + r.new_tokens - 1 == len(c["seq"]) - 1
        assert session.prefix.ids == c["seq"][:c["after"]]
        if k:
            prev = calls[-2]
            expected = min(_common(prev["seq"][:prev["after"]], c["ids"]), len(c["ids"]) - 1)
            assert c["before"] == expected > 0
            if forced:  # the whole cached sequence is a prefix of the next turn: all of it is kept
                assert c["before"] == prev["after"]
        if k < 2:
            conv.add_reply(r.text if forced else script[k])
            conv.add_tool_response([[3, 70], [100]][k])
    if forced:
        assert [r.text for r in replies[:2]] == script
    # the same turns recomputed from scratch give the same first-step logits: the kept cache is right
    full = HFBackend(hf_backend.model, hf_backend.processor, "tiny", reuse_cache=False, generate_kwargs=gen)
    if forced:
        gen["logits_processor"][0].reset()
    conv = Conversation(Profile.load("card"), "a red ball bounces", [random_grid(3), random_grid(4)])
    fs = full.new_session()
    for k in range(3):
        fs.generate(conv.messages, conv.pil_images, 40)
        assert float((calls[-1]["logits"] - calls[k]["logits"]).abs().max()) < 1e-4
        if k < 2:
            conv.add_reply(replies[k].text if forced else script[k])
            conv.add_tool_response([[3, 70], [100]][k])


def test_no_cuda_and_no_device_refuses_before_loading(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """No CUDA device and no --device: one line naming the memory needed and the two ways on; nothing loaded."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    touched = []
    monkeypatch.setattr(loading, "hub_access", lambda *a, **k: touched.append(a) or {})
    monkeypatch.setattr("vrthinker.backends.hf.load_qwen", lambda *a, **k: touched.append(a))
    before = HFBackend.load_count
    with pytest.raises(UsageError) as e:
        HFBackend.from_pretrained("qunwang13/vrthinker")  # the default 7B, not cached: its declared size
    msg = str(e.value)
    # from Python the ways on are named as Python arguments (the CLI's flags below)
    assert "\n" not in msg and "backend='metrics'" in msg and "device='cpu'" in msg
    assert "33 GB" in msg and "float32" in msg and "17 GB in bfloat16" in msg
    with pytest.raises(UsageError, match=r"about 17 GB of memory in bfloat16"):
        HFBackend.from_pretrained("qunwang13/vrthinker", dtype="bfloat16", device="auto")
    with pytest.raises(UsageError, match=r"about 4.6 GB of memory in 4bit"):
        HFBackend.from_pretrained("qunwang13/vrthinker", quantize="4bit")
    # a local checkpoint: its own size (the tiny one fits easily and would run on the CPU unasked: pretend the
    # machine has no memory to spare, so it is refused with its size in its unit)
    monkeypatch.setattr(loading, "small_enough_for_cpu_gb", lambda: 0.0)
    stored = sum(f.stat().st_size for f in tiny_model_dir.glob("*.safetensors")) / 1e9
    with pytest.raises(UsageError, match=f"about {loading.human_size(stored)} of memory in float32"):
        HFBackend.from_pretrained(str(tiny_model_dir))
    assert touched == [] and HFBackend.load_count == before

    # the judge's command line: exit 2, one line, nothing downloaded
    from vrthinker.cli import main

    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    from vrthinker_eval.synth import render_scene, write_video

    write_video(a, render_scene("shapes", 64, 48, 8, seed=1), fps=8)
    write_video(b, render_scene("pan", 64, 48, 8, seed=2), fps=8)
    assert main([str(a), str(b), "--prompt", "a red ball"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("judge: error: no CUDA device") and len(err.splitlines()) == 1 and "--device cpu" in err
    assert touched == []


def test_load_count_counts_real_loads(tiny_model_dir):
    before = HFBackend.load_count
    b = HFBackend.from_pretrained(str(tiny_model_dir), device="cpu")
    HFBackend(b.model, b.processor, "wrapped")  # wrapping a loaded model is not a load
    assert HFBackend.load_count == before + 1
    HFBackend.from_pretrained(str(tiny_model_dir), device="cpu")
    assert HFBackend.load_count == before + 2
