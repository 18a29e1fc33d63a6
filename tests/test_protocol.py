"""The card profile renders exactly what the reference infer.py builds, through the real chat template."""
import json

import pytest
import reference_infer as ref

from vrthinker.errors import UsageError
from vrthinker.protocol import Conversation, Profile, available, fill, resolve
from vrthinker.testing import random_grid


@pytest.fixture(scope="module")
def conv():
    return Conversation(Profile.load("card"), "A robot rides a unicorn across a rainbow bridge.",
                        [random_grid(1), random_grid(2)])


def render(processor, messages):
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def reference_messages(prompt):
    return [{"role": "system", "content": [{"type": "text", "text": ref.SYSTEM_PROMPT}]},
            {"role": "user", "content": [{"type": "image"}] * 8 + [{"type": "text", "text": ref.user_text(prompt)}]}]


def test_first_turn_matches_reference(processor, conv):
    ours = render(processor, conv.messages)
    assert ours == render(processor, reference_messages(conv.prompt))
    assert ours.startswith("<|im_start|>system\nTask Description:\n")
    assert ours.count("<|vision_start|><|image_pad|><|vision_end|>") == 8
    assert "Prompt: A robot rides a unicorn across a rainbow bridge.\n\n" in ours
    assert ours.endswith("if needed.<|im_end|>\n<|im_start|>assistant\n")


def test_system_text_states_the_protocol():
    s = Profile.load("card").system
    for needle in ("Text Alignment (TA)", "Visual Quality (VQ)", "Motion Quality (MQ)", "Overall Assessment (OA)",
                   "indices 0-127", "at most 12 indices", "<Snapshot></Snapshot> \u2014", "1 = Video 1 better",
                   '{"frame_indices": [10, 30, 60, 90]}'):
        assert needle in s
    assert s == ref.SYSTEM_PROMPT


def test_initial_images_are_video1_then_video2_at_16_48_80_112(conv):
    refs = conv.initial_refs
    assert [(r.video, r.grid_index) for r in refs] == [(v, i) for v in (1, 2) for i in (16, 48, 80, 112)]
    assert refs[0].real_index == 4  # 16/128 * 32 frames


def test_tool_round_matches_reference(processor):
    c = Conversation(Profile.load("card"), "p", [random_grid(3), random_grid(4)])
    reply = '<Think>x</Think><tool_call>{"name": "select_frames", "arguments": {"frame_indices": [90, 10]}}</tool_call>'
    c.add_reply(reply)
    new = c.add_tool_response([90, 10])
    assert [(r.video, r.grid_index) for r in new] == [(1, 90), (2, 90), (1, 10), (2, 10)]
    msgs = reference_messages("p")
    msgs.append({"role": "assistant", "content": [{"type": "text", "text": reply}]})
    msgs.append({"role": "user", "content": [{"type": "image"}] * 4
                 + [{"type": "text", "text": ref.tool_response_text([90, 10])}]})
    assert render(processor, c.messages) == render(processor, msgs)
    assert render(processor, c.messages).endswith(
        "<|vision_start|><|image_pad|><|vision_end|><tool_response>Retrieved 2 frame pairs ([90, 10]) "
        "symmetrically from both videos.</tool_response><|im_end|>\n<|im_start|>assistant\n")
    assert len(c.pil_images) == 12 and c.images[8][1] is c.grids[0].image(90)


def test_fill_leaves_unknown_braces():
    assert fill('{"a": [1]} {prompt} {x}', prompt="P") == '{"a": [1]} P {x}'
    assert fill("{prompt}", prompt="{n} {prompt}") == "{n} {prompt}"  # the prompt is not re-scanned


def test_profile_resolution(tmp_path):
    assert "card" in available()
    assert resolve(None)[0].name == "card"
    assert resolve("qunwang13/vrthinker")[1] == "known checkpoint qunwang13/vrthinker"
    assert resolve("someone/else", "card") == (Profile.load("card"), "--protocol")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "judge_protocol.json").write_text(json.dumps({"profile": "card"}))
    prof, source = resolve(str(ckpt), None)
    assert prof.name == "card" and "beside the checkpoint" in source
    with pytest.raises(UsageError, match="unknown protocol profile"):
        resolve("x/y", "nonexistent")
    (ckpt / "judge_protocol.json").write_text("{broken")
    with pytest.raises(UsageError, match="not a protocol file"):
        resolve(str(ckpt), None)


def test_profile_from_a_folder(tmp_path):
    import shutil

    from judge_prompts import __file__ as jp

    src = __import__("pathlib").Path(jp).parent / "card"
    shutil.copytree(src, tmp_path / "mine")
    data = json.loads((tmp_path / "mine" / "profile.json").read_text())
    data.update(name="mine", max_indices_per_call=4, initial_indices=[0, 127])
    (tmp_path / "mine" / "profile.json").write_text(json.dumps(data))
    p = Profile.load(tmp_path / "mine")
    assert p.max_indices_per_call == 4 and p.initial_indices == (0, 127)
    data["initial_indices"] = [128]
    (tmp_path / "mine" / "profile.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match="inconsistent"):
        Profile.load(tmp_path / "mine")
