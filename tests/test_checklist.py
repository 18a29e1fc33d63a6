"""The VisionReward-style checklist (dqa.score.checklist) and the `vlm` worker that asks it on the tiny Qwen2.5-VL."""
from __future__ import annotations

import copy
import gc
import json
import sys
import types
import weakref

import numpy as np
import pytest

from dqa.score.checklist import (ChecklistError, aggregate, default_path, load_checklist, p_yes, parse_checklist,
                           question_score, semantic_questions, yes_no_ids)
from vrthinker.errors import ModelLoadError
from vrthinker.media.decode import VideoSample

SIDE = 224  # small frames keep the tiny model's runs short; the arithmetic is the same at 448


def _video(n: int = 12, seed: int = 0) -> VideoSample:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (n, 96, 160, 3), dtype=np.uint8)
    return VideoSample("synthetic.mp4", frames, tuple(range(n)), 12.0, n, (160, 96))


def _raw() -> dict:
    return json.loads(default_path().read_text())


# --- the checklist file -----------------------------------------------------------------------------------

def test_packaged_checklist_is_valid():
    cl = load_checklist()
    assert cl.axis_weights == {"aesthetic": 0.30, "motion": 0.25, "coherence": 0.25, "fidelity": 0.20}
    assert abs(sum(cl.axis_weights.values()) - 1) < 1e-9
    ids = [q.id for q in cl.questions]
    assert len(ids) == len(set(ids))
    for axis in cl.axis_weights:
        assert 4 <= sum(q.axis == axis for q in cl.questions) <= 6, axis
    assert {q.polarity for q in cl.questions} == {1, -1}
    assert all(q.axis in ("coherence", "fidelity") for q in cl.questions if q.needs_prompt)
    assert any(q.needs_prompt for q in cl.questions)
    assert "0.30" in _raw()["description"] and "equal" in _raw()["description"]
    assert len(cl.digest) == 12


@pytest.mark.parametrize("mutate, says", [
    (lambda d: d["axis_weights"].update(aesthetic=0.5), "sum to 1"),
    (lambda d: d["questions"][1].update(id=d["questions"][0]["id"]), "unique"),
    (lambda d: d["questions"][0].update(polarity=0), "polarity"),
    (lambda d: d["questions"][0].update(axis="colour"), "not in axis_weights"),
    (lambda d: d["questions"][0].update(weight=-1), "weight"),
    (lambda d: d["questions"][0].pop("text"), "missing text"),
    (lambda d: d.__setitem__("questions", [q for q in d["questions"] if q["axis"] != "motion"]), "no questions"),
    (lambda d: d.pop("axis_weights"), "missing 'axis_weights'"),
    (lambda d: d["semantic"].update(prompt_question="Does it?"), "{prompt}"),
])
def test_malformed_checklist_is_a_clear_error(mutate, says):
    data = copy.deepcopy(_raw())
    mutate(data)
    with pytest.raises(ChecklistError) as e:
        parse_checklist(data, "bad.json")
    assert says in str(e.value) and str(e.value).startswith("bad.json:")


def test_unreadable_checklist_files(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ChecklistError, match="not valid JSON"):
        load_checklist(tmp_path / "x.json")
    with pytest.raises(ChecklistError, match="cannot be read"):
        load_checklist(tmp_path / "missing.json")


# --- P(yes) and the arithmetic ------------------------------------------------------------------------------

def test_yes_no_ids_in_the_real_tokenizer(processor):
    tok = processor.tokenizer
    yes, no = yes_no_ids(tok)
    for word in ("yes", "Yes", " yes", " Yes"):
        assert tok.encode(word, add_special_tokens=False)[0] in yes
    for word in ("no", "No", " no", " No"):
        assert tok.encode(word, add_special_tokens=False)[0] in no
    assert {tok.decode([i]).strip().lower() for i in yes} == {"yes"}
    assert {tok.decode([i]).strip().lower() for i in no} == {"no"}
    assert not set(yes) & set(no)


def test_p_yes_sums_the_variants():
    import torch

    logits = torch.full((50,), -1e9)
    logits[[1, 2]] = 0.0  # two "yes" variants, equally likely
    logits[3] = 0.0  # one "no"
    logits[4] = np.log(5.0)  # something else, 5x as likely as each answer word
    p, mass = p_yes(logits, [1, 2], [3, 9])
    assert p == pytest.approx(2 / 3, abs=1e-6)
    assert mass == pytest.approx(3 / 8, abs=1e-6)


def _two_axis_checklist():
    return parse_checklist({
        "axis_weights": {"a": 0.75, "b": 0.25}, "intro": "", "answer": "Answer yes or no.",
        "semantic": {"prompt_question": "{prompt}?", "entity_question": "{entity}?"},
        "preference": {"question": "{prompt}?"},
        "questions": [{"id": "a1", "axis": "a", "text": "good?", "polarity": 1},
                      {"id": "a2", "axis": "a", "text": "bad?", "polarity": -1, "weight": 3},
                      {"id": "b1", "axis": "b", "text": "fine {prompt}?", "polarity": 1}]})


def test_polarity_and_axis_weighting_by_hand():
    cl = _two_axis_checklist()
    assert question_score(0.9, -1) == pytest.approx(0.1)
    total, axes = aggregate(cl, {"a1": 0.6, "a2": 0.9, "b1": 0.2})
    a = (1 * 0.6 + 3 * 0.1) / 4  # a2 is negative: its p=0.9 counts as 0.1
    assert axes == pytest.approx({"a": a, "b": 0.2})
    assert total == pytest.approx(0.75 * a + 0.25 * 0.2)
    # an axis with no answered question drops out and the others are renormalized
    total, axes = aggregate(cl, {"a1": 0.6, "a2": 0.9})
    assert set(axes) == {"a"} and total == pytest.approx(a)


def test_semantic_questions():
    cl = load_checklist()
    qs = semantic_questions(cl, " a cat {x} ", ["a cat", "", "a cat", "a hat"])
    assert qs[0] == cl.semantic_prompt.replace("{prompt}", "a cat {x}")
    assert qs[1:] == [cl.semantic_entity.replace("{entity}", e) for e in ("a cat", "a hat")]


# --- the worker with an injected P(yes) ---------------------------------------------------------------------

class FakeAsker:
    """Answers by question text: P(yes) looked up by a substring, default 0.5; records what was asked."""

    model = None

    def __init__(self, table):
        self.table, self.asked = table, []

    def probs(self, images, texts):
        self.asked.append(list(texts))
        return [(next((p for k, p in self.table.items() if k in t), 0.5), 1.0) for t in texts]


def _fake_worker(table, **options):
    from dqa.workers.vlm import VLMWorker

    w = VLMWorker(models={"vlm": "/nonexistent"}, image_side=SIDE, **options)
    w.asker, w.loaded = FakeAsker(table), True
    return w


def test_worker_scores_from_injected_probabilities(monkeypatch):
    from dqa.workers import vlm

    monkeypatch.setattr(vlm, "prompt_entities", lambda prompt: (["a red ball", "a table"], "test"))
    cl = load_checklist()
    table = {cl.questions[0].text: 0.8, "jitter": 0.9, "a red ball?": 0.3, "a table?": 0.6}
    w = _fake_worker(table)
    assert w.components == ("visionreward", "semantic")
    got = {s.name: s for s in w.score(_video(), "a red ball on a table")}
    assert set(got) == {"visionreward", "semantic"}
    probs = {q.id: 0.8 if q is cl.questions[0] else 0.9 if q.id == "mot_jitter" else 0.5 for q in cl.questions}
    by_axis = {a: [question_score(probs[q.id], q.polarity) for q in cl.questions if q.axis == a]
               for a in cl.axis_weights}
    axes = {a: sum(v) / len(v) for a, v in by_axis.items()}
    assert 0.1 in [round(x, 9) for x in by_axis["motion"]]  # the negative jitter question, p=0.9
    vr = got["visionreward"]
    assert vr.details["axes"] == pytest.approx({a: round(s, 4) for a, s in axes.items()})
    assert vr.value == vr.unit == pytest.approx(sum(cl.axis_weights[a] * s for a, s in axes.items()))
    sem = got["semantic"]
    assert sem.value == pytest.approx((0.5 + 0.3 + 0.6) / 3)
    assert sem.details["entities"] == {"a red ball": 0.3, "a table": 0.6}
    asked = w.asker.asked[0]
    assert len(asked) == len(cl.questions) + 3 and all(t.endswith("Answer yes or no.") for t in asked)
    assert all("{prompt}" not in t and "a red ball on a table" in t for t, q in zip(asked, cl.questions)
               if q.needs_prompt)


def test_empty_prompt_scores_what_it_can():
    cl = load_checklist()
    w = _fake_worker({}, adapter="/some/adapter")
    assert w.components == ("visionreward", "semantic", "preference")
    got = w.score(_video(), "  ")
    assert [s.name for s in got] == ["visionreward"]
    skipped = got[0].details["skipped"]
    assert skipped == {**{q.id: "empty_prompt" for q in cl.questions if q.needs_prompt},
                       "semantic": "empty_prompt", "preference": "empty_prompt"}
    assert len(w.asker.asked[0]) == sum(not q.needs_prompt for q in cl.questions)
    assert got[0].value == pytest.approx(0.5)


def test_prompt_entities_uses_the_grounding_module_when_there(monkeypatch):
    from dqa.workers.vlm import prompt_entities

    mod = types.ModuleType("dqa.grounding.prompt")
    mod.entities = lambda p: ["a dog", {"text": "a ball"}, types.SimpleNamespace(text="grass")]
    pkg = types.ModuleType("dqa.grounding")
    pkg.prompt = mod
    monkeypatch.setitem(sys.modules, "dqa.grounding", pkg)
    monkeypatch.setitem(sys.modules, "dqa.grounding.prompt", mod)
    assert prompt_entities("a dog chases a ball on grass") == (["a dog", "a ball", "grass"],
                                                               "dqa.grounding.prompt.entities")
    mod.entities = lambda p: 1 / 0
    ents, source = prompt_entities("x")
    assert ents == [] and "failed" in source


def test_prompt_entities_from_the_real_grounding_parser():
    pytest.importorskip("dqa.grounding.prompt")
    from dqa.workers.vlm import prompt_entities

    ents, source = prompt_entities("a dog chases a red ball on the grass")
    assert source == "dqa.grounding.prompt.parse_prompt"
    assert any("dog" in e for e in ents) and any("ball" in e for e in ents)


def test_registered_and_footprint(tiny_model_dir):
    from dqa.workers import registry
    from dqa.workers.vlm import VLMWorker
    from vrthinker.judge import DEFAULT_MODEL

    assert registry()["vlm"] is VLMWorker
    assert VLMWorker.default_models == {"vlm": DEFAULT_MODEL} and VLMWorker.needs_prompt
    hub = VLMWorker(device="cuda")
    assert hub.footprint_gb() == pytest.approx(15.5 + 2.0)
    # quantized: the vision tower, embeddings and lm_head stay bf16
    assert VLMWorker(device="cuda", quantize="4bit").footprint_gb() == pytest.approx(7.2 + 2.0)
    assert VLMWorker(device="cuda", quantize="8bit", image_side=224).footprint_gb() == pytest.approx(10.5 + 0.5)
    local = VLMWorker(models={"vlm": str(tiny_model_dir)})
    stored = sum(f.stat().st_size for f in tiny_model_dir.glob("*.safetensors")) / 1e9
    assert local.footprint_gb() == pytest.approx(stored + 2.0)  # fp32 on CPU, stored fp32
    q4 = VLMWorker(models={"vlm": str(tiny_model_dir)}, quantize="4bit").footprint_gb()
    assert q4 == pytest.approx(stored * 0.55 / 4 * 0.77 + stored * 2 / 4 * 0.23 + 2.0)
    assert "checklist" in local.config() and local.config()["checklist"].startswith("visionreward/1@")


# --- the tiny real model --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def worker(tiny_model_dir):
    from dqa.workers.vlm import VLMWorker

    w = VLMWorker(device="cpu", models={"vlm": str(tiny_model_dir)}, image_side=SIDE, entities="none")
    w.load()
    yield w
    w.unload()


@pytest.mark.slow
def test_cached_prefix_equals_full_forward(worker):
    from dqa.workers.vlm import frames_as_images

    cl = worker.checklist
    images = frames_as_images(_video(), 8, SIDE)
    texts = [cl.text(q.render("a red ball"), len(images)) for q in cl.questions]
    texts.append(cl.text(cl.preference.replace("{prompt}", "a red ball"), len(images)))
    cached = worker.asker.cached_logits(images, texts)
    full = worker.asker.full_logits(images, texts)
    assert cached.shape == full.shape == (len(texts), full.shape[1])
    assert float((cached - full).abs().max()) < 1e-4
    a = worker.asker
    for c, f in zip(cached, full):
        assert p_yes(c, a.yes, a.no)[0] == pytest.approx(p_yes(f, a.yes, a.no)[0], abs=1e-4)
    # one question alone: the shared prefix is all but its last token
    one = worker.asker.cached_logits(images, texts[:1])
    assert float((one[0] - full[0]).abs().max()) < 1e-4


@pytest.mark.slow
def test_one_prefix_pass_then_one_pass_per_question(worker):
    from dqa.workers.vlm import _core

    model = worker.asker.model
    counts = {"model": 0, "language": 0, "vision": 0}

    def counter(key):
        return lambda module, args: counts.__setitem__(key, counts[key] + 1)

    core = _core(model)
    hooks = [model.register_forward_pre_hook(counter("model")),
             core.language_model.register_forward_pre_hook(counter("language")),
             core.visual.register_forward_pre_hook(counter("vision"))]
    try:
        got = {s.name: s for s in worker.score(_video(seed=3), "a red ball on a table")}
    finally:
        for h in hooks:
            h.remove()
    n_questions = len(worker.checklist.questions) + 1  # the checklist + the whole-prompt semantic question
    assert counts == {"model": 1 + n_questions, "language": 1 + n_questions, "vision": 1}
    assert set(got) == {"visionreward", "semantic"}  # no adapter: no preference
    for s in got.values():
        assert 0 < s.value < 1 and s.unit == s.value
    assert all(0 < p < 1 for p in got["visionreward"].details["p_yes"].values())
    assert got["visionreward"].details["frames"] == 8


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft on transformers 5
def test_adapter_adds_preference(tiny_model_dir, tmp_path, worker):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration

    from dqa.workers.vlm import VLMWorker

    torch.manual_seed(0)
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    del base, lora

    video, prompt = _video(seed=5), "a red ball on a table"
    w = VLMWorker(models={"vlm": str(tiny_model_dir)}, image_side=SIDE, entities="none",
                  adapter=str(tmp_path / "adapter"))
    w.load()
    try:
        got = {s.name: s for s in w.score(video, prompt)}
        plain = {s.name: s for s in worker.score(video, prompt)}
        assert set(got) == {"visionreward", "semantic", "preference"}
        # the checklist and semantic questions run with the adapter switched off
        assert got["visionreward"].value == pytest.approx(plain["visionreward"].value, abs=1e-6)
        assert got["semantic"].value == pytest.approx(plain["semantic"].value, abs=1e-6)
        # the preference question runs with it on, and it changes the answer
        cl = w.checklist
        from dqa.workers.vlm import frames_as_images

        text = cl.text(cl.preference.replace("{prompt}", prompt), 8)
        (base_p, _), = worker.asker.probs(frames_as_images(video, 8, SIDE), [text])
        assert 0 < got["preference"].value < 1
        assert abs(got["preference"].value - base_p) > 1e-6
    finally:
        w.unload()


@pytest.mark.slow
def test_unload_frees_the_model(tiny_model_dir):
    from dqa.workers.vlm import VLMWorker

    w = VLMWorker(models={"vlm": str(tiny_model_dir)}, image_side=SIDE)
    w.load()
    ref = weakref.ref(w.backend.model)
    w.unload()
    gc.collect()
    assert ref() is None and not w.loaded


@pytest.mark.slow
def test_bad_model_dirs_are_model_load_errors(tmp_path, tiny_model_dir):
    from dqa.workers.vlm import VLMWorker

    with pytest.raises(ModelLoadError, match="not found"):
        VLMWorker(models={"vlm": str(tmp_path / "missing")}).load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError):
        VLMWorker(models={"vlm": str(tmp_path / "empty")}).load()
    with pytest.raises(ModelLoadError, match="adapter"):
        VLMWorker(models={"vlm": str(tiny_model_dir)}, adapter=str(tmp_path / "no-adapter")).load()
