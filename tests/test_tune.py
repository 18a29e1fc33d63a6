"""The tuner: selections, DPO rows from scripted judge replies, two real DPO steps on a tiny model, sleeptime."""
import json
import shutil

import pytest

from dqa import dataset as ds
from dqa.cli import main
from dqa.selections import add, all_selections, normalize, open_store, usable
from vrthinker.judge import Judge, load_videos
from vrthinker.protocol import Profile

AGREE_A = "<Think>v1 is steadier</Think><Answer>TA=1, VQ=1, MQ=2, OA=1</Answer>"
TOOL = '<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [3]}}</tool_call>'


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "db.sqlite")


def _sel(clips, chosen="a", dim="OA", prompt="A robot", user=""):
    return normalize(prompt, str(clips["a"]), str(clips["b"]), chosen, dim, user)


def test_select_duplicates_and_contradictions(clips, db, tmp_path, capsys):
    argv = ["select", "--db", db, "--prompt", "A robot", "--a", str(clips["a"]), "--b", str(clips["b"]), "--chosen"]
    assert main(argv + ["a"]) == 0
    # the same question asked the other way round, same video preferred: a duplicate, not recorded
    swapped = ["select", "--db", db, "--prompt", "A robot", "--a", str(clips["b"]), "--b", str(clips["a"]),
               "--chosen", "b"]
    assert main(swapped) == 3 and "duplicate of selection #1" in capsys.readouterr().out
    assert main(argv + ["b"]) == 0 and "contradicts #1" in capsys.readouterr().out
    f = tmp_path / "s.jsonl"
    f.write_text(json.dumps({"prompt": "A cat", "a": str(clips["a"]), "b": str(clips["b"]), "chosen": "b",
                             "dimension": "mq"}) + "\n")
    assert main(["import-selections", str(f), "--db", db]) == 0
    with open_store(db) as store:
        ok, bad = usable(store)
        assert bad == {1, 2} and [s.id for s in ok] == [3] and ok[0].dimension == "MQ" and ok[0].label == 2
    f.write_text('{"prompt": "x", "a": "missing.mp4", "b": "b.mp4", "chosen": "a"}\nnot json\n')
    assert main(["import-selections", str(f), "--db", db]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dqa: error:") and "line 1" in err and "line 2" in err and "\n" not in err
    assert main(argv + ["c"]) == 2 and capsys.readouterr().err.startswith("dqa: error:")


def test_dataset_from_scripted_replies_matches_judge_render(clips, db, processor):
    from vrthinker.backends.scripted import ScriptedBackend

    with open_store(db) as store:
        add(store, [_sel(clips, "a", "OA"), _sel(clips, "b", "VQ", prompt="A dog"), _sel(clips, "a", "TA", "A cow")])
        s1, s2, s3 = all_selections(store)
        ds.save_reply(store, s3.id, "scripted|card/1|", TOOL)  # reused from the store: no answer -> skipped
        judge = Judge(ScriptedBackend([AGREE_A]), "card")  # generates the two missing replies
        built = ds.build(store, judge.profile, [s1, s2, s3], judge=judge)
        assert set(ds.stored_replies(store, "scripted|card/1|")) == {1, 2, 3}
    assert [m["selection_id"] for m in built.meta] == [1, 2] and built.skipped[0][0] == 3
    agree, disagree = built.rows
    # agreed (OA=1, person chose a): chosen is the reply, rejected flips only OA
    assert agree["chosen"][0]["content"] == AGREE_A
    assert agree["rejected"][0]["content"] == AGREE_A.replace("OA=1", "OA=2")
    # disagreed (VQ=1, person chose b): rejected is the reply, chosen has VQ=2
    assert disagree["rejected"][0]["content"] == AGREE_A
    assert disagree["chosen"][0]["content"] == AGREE_A.replace("VQ=1", "VQ=2")
    assert built.agreement == 0.5 and len(agree["images"]) == 8
    assert ds.set_label("<Answer>TA=1</Answer>", "OA", 2) == "<Answer>TA=1, OA=2</Answer>"

    # the row loads with datasets and TRL renders exactly the judge's first turn
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    row = dict(ds.to_dataset(built.rows)[0])
    profile = Profile.load("card")
    messages, _ = ds.first_turn(profile, s1, load_videos(profile, s1.video_a, s1.video_b))
    judge_text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    row["prompt"] = prepare_multimodal_messages(row["prompt"], images=row["images"])
    row["chosen"] = prepare_multimodal_messages(row["chosen"])
    row["rejected"] = prepare_multimodal_messages(row["rejected"])
    rendered = apply_chat_template(row, processor)
    assert rendered["prompt"] == judge_text
    assert rendered["prompt"].count("<|image_pad|>") == 8 and rendered["prompt"].startswith("<|im_start|>system")
    assert rendered["chosen"] == AGREE_A + "<|im_end|>\n"


@pytest.fixture
def small_model(tiny_model_dir, tmp_path):
    """The tiny model with a copy of the card profile at 56-pixel frames, so a DPO step takes seconds."""
    from vrthinker.protocol import _prompts_root

    prof = tmp_path / "card-small"
    shutil.copytree(_prompts_root() / "card", prof)
    data = json.loads((prof / "profile.json").read_text())
    data.update(name="card-small", version="card-small/1", image_side=56)
    (prof / "profile.json").write_text(json.dumps(data))
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "judge_protocol.json").write_text(json.dumps({"profile": str(prof)}))
    return model


def _logits(judge, clips):
    import torch

    b = judge.backend
    grids = judge.load_videos(clips["a"], clips["b"])
    from vrthinker.protocol import Conversation

    messages, images = Conversation(judge.profile, "A robot", grids).request()
    text = b.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = b.processor(text=[text], images=images, return_tensors="pt")
    with torch.no_grad():
        return b.model(**inputs).logits[0, -1]


@pytest.mark.slow
def test_two_dpo_steps_sleeptime_and_reload(small_model, clips, db, tmp_path, capsys):
    import math

    import torch
    from safetensors.torch import load_file

    from dqa.tune import TuneSettings, runs, tune

    with open_store(db) as store:
        add(store, [_sel(clips, "ab"[k % 2], ("OA", "TA")[k % 2], prompt=f"prompt {k}") for k in range(4)])
        for s in all_selections(store):  # scripted first replies, reused instead of generated
            ds.save_reply(store, s.id, f"{small_model}|card-small/1|", AGREE_A)
    out = tmp_path / "adapter"
    settings = TuneSettings(max_steps=2, learning_rate=1e-3, batch_size=1, lora_r=4, eval_steps=2)
    r = tune(db, str(small_model), out, settings=settings, min_new=3, device="cpu", max_new_tokens=4)
    assert r.status == "done" and r.steps == 2 and (r.n_train, r.n_val) == (3, 1)
    assert math.isfinite(r.train_loss) and math.isfinite(r.val_loss)
    assert r.agreement_before is not None and r.agreement_after is not None
    weights = load_file(out / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())  # B starts at zero
    cfg = json.loads((out / "tune_config.json").read_text())
    assert cfg["base_model"] == str(small_model) and cfg["profile_version"] == "card-small/1"
    assert sorted(cfg["data"]["train"] + cfg["data"]["val"]) == [1, 2, 3, 4]
    seen = [json.loads(x) for x in (out / "data.jsonl").read_text().splitlines()]
    assert {x["split"] for x in seen} == {"train", "val"} and "images" not in seen[0]
    [run] = runs(open_store(db))
    assert run["status"] == "done" and (run["first_id"], run["last_id"]) == (1, 4) and json.loads(run["losses"])

    # sleeptime: nothing new -> nothing happens; one new selection is below --min-new 3
    assert tune(db, str(small_model), out, settings=settings, min_new=3).status == "skipped"
    with open_store(db) as store:
        add(store, [_sel(clips, "b", prompt="prompt new")])
    assert main(["tune", "--db", db, "--model", str(small_model), "--out", str(out), "--min-new", "3"]) == 0
    assert "nothing to do: 1 new selection" in capsys.readouterr().out
    assert len(runs(open_store(db))) == 1

    # the saved adapter reloads through the judge and changes its logits
    base = Judge.from_pretrained(str(small_model), device="cpu")
    tuned = Judge.from_pretrained(str(small_model), device="cpu", adapter=str(out))
    assert not torch.allclose(_logits(base, clips), _logits(tuned, clips))


def test_agreement_per_dimension_with_scripted_judge(clips, db):
    from dqa.agreement import compare_with_adapter, held_out
    from vrthinker.backends.scripted import ScriptedBackend

    with open_store(db) as store:
        add(store, [_sel(clips, "a", "OA"), _sel(clips, "b", "MQ", prompt="A dog"), _sel(clips, "a", "VQ", "A cow")])
        sels = held_out(store)
    replies = {None: [AGREE_A], "x": ["<Answer>TA=2, VQ=2, MQ=2, OA=2</Answer>"]}
    res = compare_with_adapter(lambda a: Judge(ScriptedBackend(replies[a]), "card"), sels, "x")
    assert res["base"]["all"] == {"n": 3, "agree": 3, "missing": 0}
    assert res["adapter"]["OA"]["agree"] == 0 and res["adapter"]["MQ"]["agree"] == 1


def test_tune_refuses_max_turns_and_bad_flags(clips, db, tmp_path, capsys):
    """`dqa tune` takes --quantize and --adapter (honoured) and refuses --max-turns: it has no turns to limit."""
    with open_store(db) as store:
        add(store, [_sel(clips)])
    base = ["tune", "--db", db, "--model", str(tmp_path / "m"), "--out", str(tmp_path / "out")]
    assert main(base + ["--max-turns", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dqa: error: --max-turns") and "\n" not in err
    assert main(base + ["--adapter", str(tmp_path / "no-adapter")]) == 2
    assert "adapter directory not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft on transformers 5
def test_tune_starts_from_an_adapter_and_loads_quantized(small_model, clips, db, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    from dqa.tune import TuneSettings, load_for_training, tune

    torch.manual_seed(0)
    net = get_peft_model(Qwen2_5_VLForConditionalGeneration.from_pretrained(small_model),
                         LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                    init_lora_weights=False))
    start = tmp_path / "start"
    net.save_pretrained(start)
    del net
    with open_store(db) as store:
        add(store, [_sel(clips, "ab"[k % 2], ("OA", "TA")[k % 2], prompt=f"prompt {k}") for k in range(3)])
        for s in all_selections(store):  # the replies of the model the run starts from: base + adapter
            ds.save_reply(store, s.id, f"{small_model}|card-small/1|{start.resolve()}", AGREE_A)
    out = tmp_path / "adapter"
    settings = TuneSettings(max_steps=1, learning_rate=1e-4, lora_r=4, val_fraction=0)
    r = tune(db, str(small_model), out, settings=settings, device="cpu", adapter=str(start), max_new_tokens=4)
    assert r.status == "done" and r.steps == 1
    before, after = load_file(start / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    b_keys = [k for k in before if "lora_B" in k]
    # trained on from the start adapter (a fresh one would begin with lora_B = 0), and moved by the step
    assert all(torch.allclose(before[k], after[k], atol=1e-2) for k in b_keys)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert json.loads((out / "tune_config.json").read_text())["start_adapter"] == str(start.resolve())

    pytest.importorskip("bitsandbytes")
    model, _, dev, quantized = load_for_training(str(small_model), "cpu", None, quantize="4bit", adapter=str(start))
    layer = model.base_model.model.model.language_model.layers[0].self_attn.q_proj
    assert quantized and dev == "cpu" and type(layer.base_layer).__name__ == "Linear4bit"
    assert any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
