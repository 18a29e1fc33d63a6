"""The `training` profile: the public checkpoint's conversation, checked against the spec's worked example
(protocol_training.md §8) token for token with the real processor files, window memory, tool semantics,
cache reuse equal to a full recompute, and the CLI end to end."""
import json
import subprocess
import sys

import numpy as np
import pytest

from vrthinker.backends.hf import HFBackend
from vrthinker.backends.scripted import ScriptedBackend
from vrthinker.conversation import Dialogue, run_dialogues
from vrthinker.protocol import Clip, Conversation, Profile, resolve
from vrthinker.testing import ArrayGrid

PROMPT = "A red fox runs through fresh snow."
# protocol_training.md §1, byte for byte
SYSTEM = """You are a helpful assistant.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"type": "function", "function": {"name": "select_frames", "description": "Select frames from a video.", "parameters": {"type": "object", "properties": {"target_frames": {"type": "array", "description": "List of frame indices to select from the video (no more than 8 frames in total).", "items": {"type": "integer", "description": "Frame index from 1 to 96."}}}, "required": ["target_frames"]}}}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>"""  # noqa: E501
# §2 with {prompt}, {N} = 96 and the VideoGen-Reward dimensions of P-D filled in
USER_TEXT = """Task Description: Your task is to compare two videos generated based on the same prompt by analyzing their frames in detail and provide an overall judgment along with a judgment for each dimension.
This involves:
- Iterative reasoning,
- Zooming in on details,
- Dynamically selecting frames for further analysis.

The provided frames are downsampled from these videos:
- Video 1: First four input frames.
- Video 2: Next four input frames.

The prompt is: A red fox runs through fresh snow.

Evaluation Dimensions:
1. **Text Alignment (TA)**: Alignment between video content and prompt
2. **Visual Quality (VQ)**: The visual aesthetics of the video
3. **Motion Quality (MQ)**: Level of motion coherence

Frames and Analysis Rules
- 8 sampled frames are provided, evenly downsampled from 96 frames
- Insufficient frames? Request more:
<tool_call>{"target_frames": []}</tool_call>

Format Requirement:

1. Snapshot:
Every time you receive new visual information, summarize any information that might be useful for your final judgment within <Snapshot></Snapshot> tags.

2. Think:
Place all reasoning content within <Think></Think> tags.

3. Answer:
If the final answer can be determined, output the answer within <Answer></Answer> tags. If the answer is still uncertain, output the recommended answer and confidence level within <Recommend Answer></Recommend Answer> tags.
Here, 1 represents Video 1, 2 represents Video 2, and 0 represents Tie. The confidence levels range from high to low as 1, 2, and 3.

Examples:
<Answer>TA=1, VQ=1, MQ=0, OA=1</Answer>, or
<Recommend Answer>TA=0, VQ=1, MQ=0, OA=1, CF=2</Recommend Answer>"""  # noqa: E501
FIRST_TURN = ("<|im_start|>system\n" + SYSTEM + "<|im_end|>\n<|im_start|>user\n"
              "<|vision_start|><|video_pad|><|vision_end|>" + USER_TEXT + "<|im_end|>\n<|im_start|>assistant\n")
CALL = ('<tool_call>\n{"name": "select_frames", "arguments": {"target_frames": [12, 16, 20, 24, 60, 64, 68, 72]}}'
        '\n</tool_call>')
# what the model writes (§3 tags); the history keeps it in process()'s normalized form (§8)
REPLY = ("<synthesis>Video 1 shows a fox … Video 2 …</synthesis>\n<think>Motion between input frames 1-2 is "
         "unclear …</think>\n<recommend answer>TA = 1, MQ = 0, VQ = 0, OA = 1, CF = 2</recommend answer>\n" + CALL)
PAD = "<|vision_start|><|image_pad|><|vision_end|>"
AFTER_TOOL = ("<synthesis>Video 1 shows a fox … Video 2 …</synthesis>\n<think>Motion between input frames 1-2 is "
              "unclear …</think><recommend answer>TA = 1, MQ = 0, VQ = 0, OA = 1, CF = 2</recommend answer>"
              + CALL + "<|im_end|>\n<|im_start|>user\n\nAfter selecting frames: Here are the selected frames"
              + PAD * 8 + "<|im_end|>\n<|im_start|>assistant\n")


def grid(seed, n=60, h=84, w=140):
    """A 48-index grid over random frames (not square: the profile keeps the aspect ratio)."""
    return ArrayGrid(np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8), grid_size=48)


@pytest.fixture(scope="module")
def profile():
    return Profile.load("training")


def render(processor, messages):
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def tool(indices, name="select_frames"):
    call = f'{{"name": "{name}", "arguments": {{"target_frames": {indices}}}}}'
    return f"<think>t</think><tool_call>\n{call}\n</tool_call>"


def test_profile_numbers_and_resolution(profile):
    assert profile.system == SYSTEM and profile.version == "training/1"
    p = profile
    assert (p.list_size, p.index_range, p.max_indices_per_call, p.max_turns) == (96, (1, 96), 8, 4)
    assert profile.locate(1) == [(1, 0)] and profile.locate(48) == [(1, 47)] and profile.locate(49) == [(2, 0)]
    assert profile.generation == {"repetition_penalty": 1.0} and profile.window_memory
    assert profile.frame_options() == {"pixels": (3136, 401408), "sampling": "linspace"}
    assert resolve("qunwang13/vr-thinker") == (profile, "known checkpoint qunwang13/vr-thinker")
    assert resolve("someone/else", "training")[0] == profile


def test_first_turn_is_the_worked_example(processor, profile):
    conv = Conversation(profile, PROMPT, [grid(1), grid(2)])
    messages, media = conv.request()
    assert render(processor, messages) == FIRST_TURN
    assert len(media) == 1 and isinstance(media[0], Clip) and len(media[0].frames) == 8 and media[0].fps == 2.0
    # tool indices 1, 13, 25, 37 (video 1) and 49, 61, 73, 85 (video 2)
    assert [(r.video, r.grid_index) for r in conv.initial_refs] == [(v, i) for v in (1, 2) for i in (0, 12, 24, 36)]


def test_one_tool_round_is_the_worked_example(processor, profile):
    conv = Conversation(profile, PROMPT, [grid(1), grid(2)])
    conv.add_reply(REPLY)
    refs = conv.add_tool_response([12, 16, 20, 24, 60, 64, 68, 72])
    assert render(processor, conv.request()[0]) == FIRST_TURN + AFTER_TOOL
    # list entries 11, 15, 19, 23, 59, 63, 67, 71 (0-based)
    assert [(r.video, r.grid_index) for r in refs] == [(v, i) for v in (1, 2) for i in (11, 15, 19, 23)]


def test_tokens_equal_the_processor_on_the_worked_example(hf_backend, profile):
    """Our tokenization (cached path) against processor(text=the spec's text, images, videos)."""
    proc = hf_backend.processor
    g = [grid(1, h=96, w=160), grid(2, h=72, w=128)]  # two sizes: the video takes the first frame's
    conv = Conversation(profile, PROMPT, g)
    conv.add_reply(REPLY)
    conv.add_tool_response([12, 16, 20, 24, 60, 64, 68, 72])
    messages, media = conv.request()
    clip, images = media[0], media[1:]
    assert {f.size for f in clip.frames} == {clip.frames[0].size} and len(images) == 8
    session = hf_backend.new_session()
    ids = session.prepare(messages, media)["ids"]
    expected = proc(text=[FIRST_TURN + AFTER_TOOL], images=images, return_tensors="pt",
                    **hf_backend.video_inputs([clip]))
    assert ids == expected["input_ids"][0].tolist()
    assert session.token_types(expected["input_ids"]).tolist() == expected["mm_token_type_ids"].tolist()
    assert expected["second_per_grid_ts"].tolist() == [1.0]


def windowed_by_the_spec(full: str) -> str:
    """EM 2632-2636: split on the tool-reply marker; delete vision strings in every segment but the last."""
    parts = full.split("After selecting frames:")
    for k in range(1, len(parts) - 1):
        for s in ("<|image_pad|>", "<|vision_end|>", "<|vision_start|>"):
            parts[k] = parts[k].replace(s, "")
    return "After selecting frames:".join(parts)


def test_window_memory_over_four_turns(processor, profile):
    replies = [tool([12, 16, 20, 24, 60, 64, 68, 72]), tool([1, 96]), tool(list(range(1, 10))),
               "<think>done</think><Answer>TA = 1, MQ = 2, VQ = 0, OA = 1</Answer>"]
    backend = ScriptedBackend(replies)
    d = Dialogue(profile, [grid(3), grid(4)], PROMPT)
    session = backend.new_session()
    run_dialogues(backend, [session], [d])
    v = d.outcome
    assert v.reason is None and v.labels == {"TA": 1, "VQ": 0, "MQ": 2, "OA": 1}
    assert [t.action for t in v.turns] == ["tool_call", "tool_call", "tool_error", "answer"]
    assert session.generation == {"repetition_penalty": 1.0}
    who = {id(im): (r.video, r.grid_index) for r, im in d.conv.images}
    seen = [["video" if isinstance(x, Clip) else who[id(x)] for x in media] for media in session.media]
    assert seen == [["video"],
                    ["video", (1, 11), (1, 15), (1, 19), (1, 23), (2, 11), (2, 15), (2, 19), (2, 23)],
                    ["video", (1, 0), (2, 47)],  # the first call's 8 images left the context
                    ["video"]]  # the latest tool reply is a message: no tool image stays
    for messages, n in session.calls:
        text = render(processor, messages)
        assert text.count("<|image_pad|>") == n - 1 and text.count("<|video_pad|>") == 1
        history = Conversation(profile, PROMPT, d.conv.grids, messages=d.conv.messages[:len(messages)],
                               media=d.conv.media[:len(messages)])
        assert text == windowed_by_the_spec(render(processor, history.messages))
    assert session.calls[3][0][-1]["content"] == [{"type": "text", "text": (
        "After selecting frames:\nYou have selected 9 frames in total. Think again which frames you need to check "
        "in details (no more than 8 frames)")}]


@pytest.mark.parametrize("call,kind,message", [
    (tool([97]), "out_of_range", "There are 96 frames numbered in range [1,96]. Your selection is out of range."),
    (tool([0, 5]), "out_of_range", "There are 96 frames numbered in range [1,96]. Your selection is out of range."),
    (tool([3], name="crop_image"), "unknown_tool", "Incorrect Tool. You can not use crop for video here"),
    ("<tool_call>{'name': 'select_frames'}</tool_call>", "error", "Execution error:\n{error_info}\n"),
    (tool([]), "error", "Execution error:\n{error_info}\n"),
    (tool(["5"]), "error", "Execution error:\n{error_info}\n"),
])
def test_unservable_calls_are_answered_as_training_did(profile, call, kind, message):
    backend = ScriptedBackend([call, "<Answer>TA=1, VQ=1, MQ=1, OA=1</Answer>"])
    d = Dialogue(profile, [grid(5), grid(6)], "p")
    run_dialogues(backend, [backend.new_session()], [d])
    t = d.outcome.turns[0]
    assert t.action == "tool_error" and t.requested == () and t.tool_error
    assert d.conv.messages[-2]["content"] == [{"type": "text", "text": "After selecting frames:\n" + message}]
    assert d.outcome.reason is None and backend.sessions[0].calls[1][1] == 1  # only the video


def test_duplicates_kept_in_order_and_turn_limit(profile):
    backend = ScriptedBackend([tool([50, 2, 50]), tool([3]), tool([4]), tool([5])])
    d = Dialogue(profile, [grid(5), grid(6)], "p")
    run_dialogues(backend, [backend.new_session()], [d])
    assert d.outcome.turns[0].requested == (50, 2, 50)
    assert [(r.video, r.grid_index) for r in d.outcome.turns[1].new_images] == [(2, 1), (1, 1), (2, 1)]
    assert d.outcome.reason == "turn_limit" and len(d.outcome.turns) == 4  # 3 tool executions, 4 generations


def test_recommendation_is_kept(profile):
    rec = "<think>x</think><Recommend Answer>TA=0, VQ=1, MQ=0, OA=1, CF=2</Recommend Answer>"
    backend = ScriptedBackend([rec + tool([1])[len("<think>t</think>"):], rec])
    d = Dialogue(profile, [grid(5), grid(6)], "p")
    run_dialogues(backend, [backend.new_session()], [d])
    o = d.outcome
    assert [t.action for t in o.turns] == ["tool_call", "none"]
    assert o.reason == "no_answer" and all(v is None for v in o.labels.values())
    assert o.recommendation == {"labels": {"TA": 0, "VQ": 1, "MQ": 0, "OA": 1}, "confidence": 2}
    assert o.turns[0].recommendation == o.recommendation and "CF=2" in o.detail


def test_frames_keep_their_aspect_within_the_pixel_bounds(clips, profile):
    from vrthinker.media import frame_grid as frames

    g = frames.load_grid(clips["a"], profile.grid_size, profile.image_side, **profile.frame_options())
    assert g.array(0).shape == (84, 168, 3)  # 96 x 160: sides rounded to multiples of 28, aspect kept
    assert g.real_index(0) == 0 and g.real_index(47) == g.total_frames - 1  # evenly from first to last


@pytest.mark.slow
def test_cache_reuse_with_window_memory_equals_full_recompute(hf_backend, profile):
    full = HFBackend(hf_backend.model, hf_backend.processor, "tiny", reuse_cache=False)
    steps = [([5, 60], REPLY.replace("[12, 16, 20, 24, 60, 64, 68, 72]", "[5, 60]")),
             ([2, 3, 90], tool([2, 3, 90])), (None, tool(list(range(1, 12))))]

    def run(backend):
        conv = Conversation(profile, PROMPT, [grid(7, h=56, w=84), grid(8, h=56, w=84)])
        s = backend.new_session()
        s.set_generation(profile.generation)
        outs = []
        for k in range(len(steps) + 1):
            outs.append(s.generate(*conv.request(), 5))
            if k < len(steps):
                indices, reply = steps[k]
                conv.add_reply(reply)
                if indices:
                    conv.add_tool_response(indices)
                else:
                    conv.add_tool_message("After selecting frames:\nYou have selected 11 frames in total.")
        return outs

    ours, theirs = run(hf_backend), run(full)
    assert [r.text for r in ours] == [r.text for r in theirs]
    assert [r.new_tokens for r in ours] == [r.new_tokens for r in theirs]
    assert ours[0].reused_tokens == 0 and all(r.reused_tokens > 0 for r in ours[1:])
    # turn 3 drops turn 2's images: the cache is reused only up to where they were
    assert ours[2].reused_tokens < ours[1].reused_tokens + ours[1].prefill_tokens
    assert hf_backend.config_for(5, profile.generation).repetition_penalty == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "protocol_file"])
def test_cli_end_to_end(clips, tiny_model_dir, tmp_path, how):
    model = tiny_model_dir
    args = ["--protocol", "training"]
    if how == "protocol_file":  # a judge_protocol.json beside the checkpoint chooses the profile
        model = tmp_path / "ckpt"
        model.mkdir()
        for f in tiny_model_dir.iterdir():
            (model / f.name).symlink_to(f)
        (model / "judge_protocol.json").write_text(json.dumps({"profile": "training"}))
        args = []
    trace = tmp_path / "trace.json"
    cmd = [sys.executable, "-m", "vrthinker.cli", str(clips["a"]), str(clips["b"]), "--prompt", "A robot",
           "--model", str(model), "--max-new-tokens", "8", "--json", "--trace", str(trace), "--device", "cpu", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 3), r.stderr
    v = json.loads(r.stdout)
    assert v["protocol"] == "training/1" and (r.returncode == 0) == v["complete"]
    t = json.loads(trace.read_text())
    first = t["turns"][0]
    assert first["rendered"].startswith("<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n")
    assert first["rendered"].count("<|video_pad|>") == 1 and "<|image_pad|>" not in first["rendered"]
    assert len(first["new_images"]) == 8 and t["extra"]["profile_source"] in ("--protocol", "judge_protocol.json "
                                                                                  "beside the checkpoint")
