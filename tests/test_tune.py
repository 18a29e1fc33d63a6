"""The tuner: selections, DPO rows from scripted judge replies, two real DPO steps on a tiny model, sleeptime."""
import json
import shutil
import time

import pytest

from dqa.tune import dataset as ds
from dqa.cli import main
from dqa.tune.selections import add, all_selections, normalize, open_store, usable
from vrthinker.judge import Judge
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


def test_dataset_from_scripted_conversations(clips, db):
    """Rows from whole conversations: answered after a tool round, reused, regenerated, or no answer."""
    from vrthinker.backends.scripted import ScriptedBackend

    with open_store(db) as store:
        add(store, [_sel(clips, "a", "OA"), _sel(clips, "b", "VQ", prompt="A dog"), _sel(clips, "a", "TA", "A cow")])
        s1, s2, s3 = all_selections(store)
        ds.save_reply(store, s3.id, "scripted|card/1|", TOOL)  # an older tuner's first reply: replayed, runs out
        assert ds.build(store, Profile.load("card"), [s3], identity="scripted|card/1|").skipped[0][0] == 3
        judge = Judge(ScriptedBackend([TOOL, AGREE_A]), "card")  # asks for frame 3, then answers
        built = ds.build(store, judge.profile, [s1, s2, s3], judge=judge)
        stored = ds.stored_replies(store, "scripted|card/1|")
        assert set(stored) == {1, 2, 3} and [t.text for t in ds.decode_turns(stored[3])] == [TOOL, AGREE_A]
        # the stored conversations are replayed, not run again: a judge that would answer otherwise is unused
        again = ds.build(store, judge.profile, [s1, s2, s3], judge=Judge(ScriptedBackend(["x"]), "card"))
        assert [r["chosen"] for r in again.rows] == [r["chosen"] for r in built.rows]
    assert [m["selection_id"] for m in built.meta] == [1, 2, 3] and not built.skipped
    assert built.endings == {"answer@2": 3}
    agree, disagree, _ = built.rows
    # the prompt is the judge's second turn: its tool call and the 2 frames of index 3 (one per video)
    assert len(agree["images"]) == 10 and [m["role"] for m in agree["prompt"]] == ["system", "user", "assistant",
                                                                                     "user"]
    assert agree["prompt"][2]["content"][0]["text"] == TOOL
    # agreed (OA=1, person chose a): chosen is the reply, rejected flips only OA
    assert agree["chosen"][0]["content"] == AGREE_A
    assert agree["rejected"][0]["content"] == AGREE_A.replace("OA=1", "OA=2")
    # disagreed (VQ=1, person chose b): rejected is the reply, chosen has VQ=2
    assert disagree["rejected"][0]["content"] == AGREE_A
    assert disagree["chosen"][0]["content"] == AGREE_A.replace("VQ=1", "VQ=2")
    assert built.agreement == 2 / 3
    assert ds.set_label("<Answer>TA=1</Answer>", "OA", 2) == "<Answer>TA=1, OA=2</Answer>"


def test_rows_when_the_judge_ends_without_an_answer(clips, db):
    """no_answer, turn_limit (--max-turns honoured) and token_limit still give a row: the last reasoning
    followed by an answer block, differing in the selection's dimension only."""
    from vrthinker.backends.scripted import ScriptedBackend

    rec = "<Think>steady</Think><Recommend Answer>TA=2, VQ=1, MQ=1, OA=2, CF=2</Recommend Answer>"
    with open_store(db) as store:
        add(store, [_sel(clips, "b", "MQ")])
        [s] = all_selections(store)
        cases = {"no_answer": (["<Think>hard to say</Think>"], None),
                 "turn_limit": ([rec + TOOL, AGREE_A], 1),
                 "token_limit": (["<Think>" + "word " * 50], None)}
        for k, (ending, (replies, turns)) in enumerate(cases.items()):
            judge = Judge(ScriptedBackend(replies, model_id=f"s{k}"), "card", max_new_tokens=20)
            built = ds.build(store, judge.profile, [s], judge=judge, max_turns=turns)
            assert built.endings == {ending: 1}, ending
            chosen, rejected = built.rows[0]["chosen"][0]["content"], built.rows[0]["rejected"][0]["content"]
            if ending == "no_answer":
                assert chosen == "<Think>hard to say</Think>\n<Answer>TA=0, VQ=0, MQ=2, OA=0</Answer>"
            if ending == "turn_limit":  # the recommendation fills the other dimensions; the tool call is gone
                assert chosen == "<Think>steady</Think>\n<Answer>TA=2, VQ=1, MQ=2, OA=2</Answer>"
                assert len(built.rows[0]["images"]) == 8 and built.meta[0]["judge_label"] == 1
            assert rejected == chosen.replace("MQ=2", "MQ=1") and "<tool_call>" not in chosen
            assert ds.parse_answer(chosen)["MQ"] == 2 and ds.parse_answer(rejected)["MQ"] == 1


def test_truncation_rule_is_the_judges_context_limit(clips, db):
    """A conversation cut at --max-length ends where a judge with that context limit stops serving calls."""
    from vrthinker.backends.base import Reply

    with open_store(db) as store:
        add(store, [_sel(clips)])
        [s] = all_selections(store)
        turns = [Reply(TOOL, new_tokens=10, prefill_tokens=900), Reply(TOOL, new_tokens=10, prefill_tokens=1500),
                 Reply(AGREE_A, new_tokens=10, prefill_tokens=2100)]
        ds.save_conversation(store, s.id, "j", turns)
        profile = Profile.load("card")
        assert ds.build(store, profile, [s], identity="j").endings == {"answer@3": 1}
        cut = ds.build(store, profile, [s], identity="j", max_length=1500)
        assert cut.endings == {"token_limit": 1} and len(cut.rows[0]["images"]) == 10  # turn 2's request
        assert ds.limited(profile, 1500).max_context_tokens == 1500 and profile.max_context_tokens is None
        assert ds.limited(Profile.load("training"), 99999).max_context_tokens == 12088


def _prompt_ids(processor, row):
    return ds.encode_prompt(processor, row)["input_ids"][0].tolist()


@pytest.mark.parametrize("name", ["card", "training"])
def test_row_renders_as_the_judge_renders_that_turn(hf_backend, clips, db, tmp_path, name):
    """For both profiles: the row's prompt is the judge's last request character for character (its
    HFSession renders and tokenizes it the same), window memory included; the collator batches it."""
    import torch

    from vrthinker.backends.scripted import ScriptedBackend
    from vrthinker.protocol import _prompts_root

    prof = tmp_path / name
    shutil.copytree(_prompts_root() / name, prof)
    data = json.loads((prof / "profile.json").read_text())
    data["image_side"] = 56  # card: small squares; training keeps its own pixel bounds (84 x 168 here)
    (prof / "profile.json").write_text(json.dumps(data))
    profile = Profile.load(prof)
    arg, first, second = ("frame_indices", [3], [5, 9]) if name == "card" else ("target_frames", [2, 50], [7])
    call = lambda ix: '<tool_call>\n{"name": "select_frames", "arguments": {"%s": %s}}\n</tool_call>' % (arg, ix)
    answer = "<synthesis>s</synthesis>\n<think>t</think><final answer>TA=1, VQ=1, MQ=0, OA=1</final answer>"
    rec = "<synthesis>s</synthesis>\n<think>t</think><recommend answer>TA=1, CF=2</recommend answer>"
    replies = [rec + call(first), rec + call(second), answer]
    backend = ScriptedBackend(replies)
    judge = Judge(backend, profile)
    with open_store(db) as store:
        add(store, [_sel(clips)])
        built = ds.build(store, profile, all_selections(store), judge=judge)
    assert built.endings == {"answer@3": 1}
    row = built.rows[0]
    live = backend.sessions[0]
    assert row["prompt"] == live.calls[-1][0] and row["images"] == live.media[-1]  # the judge's own last request
    session = hf_backend.new_session()
    prepared = session.prepare(row["prompt"], row["images"])
    assert ds.render_prompt(hf_backend.processor, row) == prepared["rendered"]
    assert _prompt_ids(hf_backend.processor, row) == prepared["ids"]
    text = prepared["rendered"]
    if name == "training":  # one video item; only the latest tool reply keeps its images (window memory)
        assert text.count("<|video_pad|>") == 1 and text.count("<|image_pad|>") == len(second)
        assert text.count("After selecting frames") == 2
    else:
        assert text.count("<|image_pad|>") == 8 + 2 * len(first) + 2 * len(second)
    batch = ds.Collator(hf_backend.processor)([row])
    n = len(prepared["ids"])
    assert batch["input_ids"].shape[0] == 2 and batch["input_ids"][0, :n].tolist() == prepared["ids"]
    assert batch["completion_mask"][:, :n].sum() == 0 and batch["completion_mask"][0].sum() > 0
    with torch.no_grad():
        out = hf_backend.model(**{k: v for k, v in batch.items() if k != "completion_mask"})
    assert torch.isfinite(out.logits).all()


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

    from dqa.tune.train import TuneSettings, runs, tune

    from dqa.tune import split as qs

    with open_store(db) as store:
        add(store, [_sel(clips, "ab"[k % 2], ("OA", "TA")[k % 2], prompt=f"prompt {k}") for k in range(20)])
        # four questions of which the fixed split rule puts exactly one on the validation side
        sels = all_selections(store)
        val = [s for s in sels if qs.is_validation(s, 0.2)][:1]
        keep = {s.id for s in val + [s for s in sels if not qs.is_validation(s, 0.2)][:3]}
        store.db.execute(f"DELETE FROM selections WHERE id NOT IN ({','.join(map(str, keep))})")
        store.db.commit()
        for s in all_selections(store):  # scripted first replies, reused instead of generated
            ds.save_reply(store, s.id, f"{small_model}|card-small/1|", AGREE_A)
    out = tmp_path / "adapter"
    # the greedy conversation only, and rows the old way (the random tiny model rarely reaches a label)
    settings = TuneSettings(max_steps=2, learning_rate=1e-3, batch_size=1, lora_r=4, eval_steps=2, samples=1,
                            allow_label_swap=True)
    r = tune(db, str(small_model), out, settings=settings, min_new=3, device="cpu", max_new_tokens=4)
    assert r.status == "done" and r.steps == 2 and (r.n_train, r.n_val) == (3, 1) and r.val_questions == 1
    assert r.kinds == {"sampled": 0, "label_swap": 4, "none": 0}
    assert r.model_confidence["n"] == 1 and r.agreement_after == r.model_confidence["agreement"]
    assert math.isfinite(r.train_loss) and math.isfinite(r.val_loss)
    assert r.agreement_before is not None and r.agreement_after is not None
    weights = load_file(out / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())  # B starts at zero
    cfg = json.loads((out / "tune_config.json").read_text())
    assert cfg["base_model"] == str(small_model) and cfg["profile_version"] == "card-small/1"
    assert sorted(cfg["data"]["train"] + cfg["data"]["val"]) == sorted(keep) and cfg["data"]["val"] == [val[0].id]
    assert cfg["split"]["val"] == [val[0].id] and cfg["split"]["val_questions"] == 1 and cfg["split"]["fraction"] == 0.2
    assert cfg["split"]["rule"] == qs.RULE and cfg["kinds"]["label_swap"] == 4
    seen = [json.loads(x) for x in (out / "data.jsonl").read_text().splitlines()]
    assert {x["split"] for x in seen} == {"train", "val"} and "images" not in seen[0]
    assert all(x["synthetic"] and x["kind"] == "label_swap" for x in seen)
    [run] = runs(open_store(db))
    assert run["status"] == "done" and (run["first_id"], run["last_id"]) == (min(keep), max(keep))
    assert json.loads(run["losses"])
    capsys.readouterr()  # the trainer's own log lines
    assert main(["tune", "--db", db, "--history"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("run #1 done: steps 2, train loss") and "on 1 validation question(s)" in line
    assert main(["tune", "--db", db, "--history", "--json"]) == 0
    [h] = json.loads(capsys.readouterr().out)
    assert h["steps"] == 2 and h["val_questions"] == 1 and h["kinds"]["label_swap"] == 4
    assert h["agreement_after"] == r.agreement_after and h["new_patterns"] == []

    # sleeptime: nothing new -> nothing happens; one new selection is below --min-new 3
    assert tune(db, str(small_model), out, settings=settings, min_new=3).status == "skipped"
    with open_store(db) as store:
        add(store, [_sel(clips, "b", prompt="prompt new")])
    assert main(["tune", "--db", db, "--model", str(small_model), "--out", str(out), "--min-new", "3"]) == 0
    assert "nothing to do: 1 new selection" in capsys.readouterr().out
    assert len(runs(open_store(db))) == 1
    # the Tuner's document for dqa mcp: a skipped cycle reports the last run's step count, loss, confidence
    from dqa.tune.api import failure_patterns, run_tuner

    doc = run_tuner(3, db=db, model=str(small_model), out=str(out))
    assert doc["status"] == "skipped" and doc["training_step"] == 2 and doc["loss"] == r.val_loss
    assert doc["model_confidence"] == r.model_confidence["agreement"] and doc["new_patterns"] == []
    assert failure_patterns(db) == []  # two videos, five selections: too thin for a pattern

    # the saved adapter reloads through the judge and changes its logits
    base = Judge.from_pretrained(str(small_model), device="cpu")
    tuned = Judge.from_pretrained(str(small_model), device="cpu", adapter=str(out))
    assert not torch.allclose(_logits(base, clips), _logits(tuned, clips))


def test_agreement_per_dimension_with_scripted_judge(clips, db):
    from dqa.tune.agreement import compare_with_adapter, held_out
    from vrthinker.backends.scripted import ScriptedBackend

    with open_store(db) as store:
        add(store, [_sel(clips, "a", "OA"), _sel(clips, "b", "MQ", prompt="A dog"), _sel(clips, "a", "VQ", "A cow")])
        sels = held_out(store)
    replies = {None: [AGREE_A], "x": ["<Answer>TA=2, VQ=2, MQ=2, OA=2</Answer>"]}
    res = compare_with_adapter(lambda a: Judge(ScriptedBackend(replies[a]), "card"), sels, "x")
    assert res["base"]["all"] == {"n": 3, "agree": 3, "missing": 0}
    assert res["adapter"]["OA"]["agree"] == 0 and res["adapter"]["MQ"]["agree"] == 1


def test_tune_bad_flags(clips, db, tmp_path, capsys):
    """`dqa tune` takes --max-turns (limits the conversations), --quantize and --adapter; bad values are refused."""
    with open_store(db) as store:
        add(store, [_sel(clips)])
    base = ["tune", "--db", db, "--model", str(tmp_path / "m"), "--out", str(tmp_path / "out")]
    assert main(base + ["--max-turns", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dqa: error: --max-turns") and "\n" not in err
    assert main(base + ["--max-length", "0"]) == 2 and "--max-length" in capsys.readouterr().err
    assert main(base + ["--adapter", str(tmp_path / "no-adapter")]) == 2
    assert "adapter directory not found" in capsys.readouterr().err
    for flags, said in ((["--samples", "0"], "--samples"), (["--temperature", "0"], "--temperature"),
                        (["--val-fraction", "1"], "--val-fraction"), (["--json"], "--json goes with --history")):
        assert main(base + flags) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("dqa: error:") and said in err and "\n" not in err
    assert main(["tune", "--db", db, "--model", "m"]) == 2 and "--out" in capsys.readouterr().err
    assert main(["tune", "--db", db, "--history"]) == 0 and "no tune runs yet" in capsys.readouterr().out
    assert main(["patterns", "--db", db, "--since", "7"]) == 2 and "no such tune run" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft on transformers 5
def test_tune_starts_from_an_adapter_and_loads_quantized(small_model, clips, db, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    from dqa.tune.train import TuneSettings, load_for_training, tune

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
    settings = TuneSettings(max_steps=1, learning_rate=1e-4, lora_r=4, val_fraction=0, samples=1,
                            allow_label_swap=True)
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


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("protocol", ["card", "training"])
def test_cli_four_selections_to_a_loaded_adapter(tiny_model_dir, clips, tmp_path, capsys, protocol):
    """A fresh database: four `dqa select` lines, `dqa tune --max-steps 2` on the tiny random model (it
    rarely answers: the rows come from conversations that ended without an answer), then `judge --adapter`."""
    from vrthinker.cli import main as judge_main

    db = str(tmp_path / "fresh.sqlite")
    for k in range(4):
        assert main(["select", "--db", db, "--prompt", f"prompt {k}", "--a", str(clips["a"]), "--b",
                     str(clips["b"]), "--chosen", "ab"[k % 2], "--dimension", ("OA", "TA")[k % 2]]) == 0
    out = tmp_path / "adapter"
    # card's 448-pixel frames make ~2,650-token rows: no validation split there, to keep the test short
    val = ["--val-fraction", "0"] if protocol == "card" else []
    # two conversations per selection (the greedy one and one sampled: card's long rows keep the test short);
    # where none reaches a label the row is built the old way (--allow-label-swap)
    t0 = time.perf_counter()
    assert main(["tune", "--db", db, "--model", str(tiny_model_dir), "--out", str(out), "--max-steps", "2",
                 "--device", "cpu", "--protocol", protocol, "--max-new-tokens", "8", "--max-turns", "2",
                 "--samples", "2", "--allow-label-swap", *val]) == 0
    seconds = time.perf_counter() - t0
    captured = capsys.readouterr()
    assert "rows per ending" in captured.out and "longest row" in captured.err
    assert "selections per kind" in captured.out and "selections per kind of row" in captured.err
    cfg = json.loads((out / "tune_config.json").read_text())
    assert cfg["profile"] == protocol and cfg["steps"] == 2 and sum(cfg["endings"].values()) == 4
    assert sum(cfg["kinds"].values()) == 4 and cfg["kinds"]["none"] == 0
    with open_store(db) as store:
        assert store.db.execute("SELECT count(*) FROM tune_samples").fetchone()[0] == 4
    assert cfg["max_turns"] == 2 and cfg["longest_tokens"] > 0 and cfg["seconds_per_step"] > 0
    assert (out / "adapter_model.safetensors").is_file()
    rows = [json.loads(x) for x in (out / "data.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["tokens"] for r in rows)
    code = judge_main([str(clips["a"]), str(clips["b"]), "--prompt", "A robot", "--model", str(tiny_model_dir),
                       "--adapter", str(out), "--device", "cpu", "--protocol", protocol, "--max-new-tokens", "4",
                       "--json"])
    assert code in (0, 3)  # 3: no complete verdict from a random model, but the adapter loaded and judged
    v = json.loads(capsys.readouterr().out)
    assert v["protocol"] == f"{protocol}/1" and v["turns"]
    with capsys.disabled():
        print(f"\nMEASURE {protocol}: endings {cfg['endings']}, kinds {cfg['kinds']}, tokens "
              f"{[r['tokens'] for r in rows]}, {cfg['seconds_per_step']} s/step, estimated peak "
              f"{cfg['estimated_peak_gb']} GB, whole run {seconds:.1f} s")
