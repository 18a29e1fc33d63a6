"""ProxyCLIP spatial grounding: prompt parsing, proxy attention against the official formula, relation rules
on drawn masks, and the `proxyclip` worker end to end on tiny random CLIP and DINOv2 models."""
from __future__ import annotations

import gc
import math
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dqa.grounding.prompt import parse_prompt, singular
from dqa.grounding.proxyclip import BETA, GAMMA, ProxyCLIP, load_proxyclip, proxy_attention, proxy_weights
from dqa.grounding.spatial import MIN_AREA, evaluate, holds
from dqa.workers import ScoreError, registry
from vrthinker.errors import ModelLoadError

# ---------------------------------------------------------------------------------------------------------
# prompt parsing


def _parse(prompt: str):
    p = parse_prompt(prompt)
    names = [e.query for e in p.entities]
    return names, [(names[r.subject], r.relation, names[r.object]) for r in p.relations]


@pytest.mark.parametrize("prompt, entities, relations", [
    ("a red car to the left of a blue bus", ["red car", "blue bus"], [("red car", "left_of", "blue bus")]),
    ("A cat and a dog", ["cat", "dog"], []),
    ("Two dogs running on the beach", ["dog", "beach"], []),
    ("A man walks his dog in a park at sunset", ["man", "dog", "park"], []),
    ("a black and white cat sleeping on top of a wooden table", ["black and white cat", "wooden table"],
     [("black and white cat", "on_top_of", "wooden table")]),
    ("A bird flying above the ocean.", ["bird", "ocean"], [("bird", "above", "ocean")]),
    ("a small boat under a bridge", ["small boat", "bridge"], [("small boat", "below", "bridge")]),
    ("A cinematic shot of a woman standing in front of a building", ["woman", "building"],
     [("woman", "in_front_of", "building")]),
    ("a horse behind a fence", ["horse", "fence"], [("horse", "behind", "fence")]),
    ("Three puppies playing with a ball beside their mother", ["puppy", "ball", "mother"],
     [("puppy", "next_to", "mother")]),  # the clause subject, not the object of "with"
    ("a cat and a dog sitting next to each other", ["cat", "dog"], [("cat", "next_to", "dog")]),
    ("A cat and a dog next to a tree", ["cat", "dog", "tree"],
     [("cat", "next_to", "tree"), ("dog", "next_to", "tree")]),
    ("A person is riding a horse on the beach", ["person", "horse", "beach"], []),
    ("A close-up of a chef chopping vegetables in a kitchen", ["chef", "vegetable", "kitchen"], []),
    ("a cup of coffee on a wooden desk, 4k, cinematic lighting", ["cup", "coffee", "wooden desk"], []),
    ("a swimming pool behind a house", ["swimming pool", "house"], [("swimming pool", "behind", "house")]),
    ("Several boxes stacked under a table", ["box", "table"], [("box", "below", "table")]),
    ("A man with a hat stands to the right of a woman", ["man", "hat", "woman"], [("man", "right_of", "woman")]),
    ("Children are flying kites", ["child", "kite"], []),
    ("The sky is blue", ["sky"], []),
])
def test_parse_prompt(prompt, entities, relations):
    assert _parse(prompt) == (entities, relations)


def test_parse_keeps_written_text_and_plural():
    e = parse_prompt("two red cars").entities[0]
    assert (e.text, e.query, e.head, e.plural) == ("red cars", "red car", "car", True)
    assert [singular(w) for w in ("glasses", "boxes", "puppies", "people", "bus", "horses", "shoes")] == \
        ["glasses", "box", "puppy", "person", "bus", "horse", "shoe"]


@pytest.mark.parametrize("prompt, reason", [("", "empty_prompt"), ("   ", "empty_prompt"),
                                            ("very quickly and beautifully", "no_entities"),
                                            ("a cinematic shot, in slow motion, 4k", "no_entities")])
def test_parse_errors(prompt, reason):
    with pytest.raises(ScoreError) as e:
        parse_prompt(prompt)
    assert e.value.reason == reason


# ---------------------------------------------------------------------------------------------------------
# proxy attention


def test_proxy_weights_by_hand():
    """Three patches: two alike, one opposite. Cosine sims, shifted by beta*mean, scaled by gamma, negatives
    masked, softmax: computed in numpy from the paper's formula."""
    f = np.array([[1.0, 0.0], [0.8, 0.6], [-1.0, 0.0]])  # rows are patches (already unit length)
    sim = f @ f.T
    s = (sim - sim.mean() * BETA) * GAMMA
    e = np.where(s < 0, 0.0, np.exp(s - s.max(1, keepdims=True)))
    expect = e / e.sum(1, keepdims=True)
    feats = torch.tensor(f.T, dtype=torch.float32).reshape(1, 2, 1, 3) * 5  # scale must not matter
    got = proxy_weights(feats).numpy()[0]
    np.testing.assert_allclose(got, expect, atol=1e-6)
    assert got[0, 2] == 0 and got[2, 0] == 0  # opposite patches never attend to each other


def _official_custom_attn(x_lnd, v_proj, out_proj, num_heads, ex_feats, token_size, beta, gamma):
    """open_clip/transformer.py `custom_attn` of the official repo, transcribed (LND layout, per-head)."""
    _, bsz, embed_dim = x_lnd.size()
    head_dim = embed_dim // num_heads
    v = v_proj(x_lnd)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    _, _, hh, ww = ex_feats.shape
    q_k = F.normalize(ex_feats.flatten(2, 3), dim=1)
    similarity = torch.einsum("b c m, b c n -> b m n", q_k, q_k)
    similarity = (similarity - torch.mean(similarity) * beta) * gamma
    similarity[similarity < 0.0] = float("-inf")
    mask = similarity.unsqueeze(1).repeat(1, num_heads, 1, 1).reshape(bsz * num_heads, hh * ww, hh * ww)
    attn_weights = F.softmax(mask, dim=-1)
    v = v[:, 1:, :].reshape(bsz * num_heads, token_size[0], token_size[1], head_dim).permute(0, 3, 1, 2)
    v = F.interpolate(v, size=(hh, ww), mode="bilinear", align_corners=False)
    v = v.permute(0, 2, 3, 1).reshape(bsz * num_heads, hh * ww, head_dim)
    out = torch.bmm(attn_weights, v).transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return out_proj(out)


@pytest.mark.parametrize("clip_grid, vfm_grid", [((3, 5), (3, 5)), ((3, 5), (4, 6))])
def test_proxy_attention_matches_official(clip_grid, vfm_grid):
    torch.manual_seed(0)
    d, heads = 8, 2
    v_proj, out_proj = torch.nn.Linear(d, d), torch.nn.Linear(d, d)
    x = torch.randn(1, 1 + clip_grid[0] * clip_grid[1], d)  # one image: CLS + patches (batch first)
    ex = torch.randn(1, 6, *vfm_grid)
    ref = _official_custom_attn(x.transpose(0, 1), v_proj, out_proj, heads, ex, clip_grid, BETA, GAMMA)
    with torch.no_grad():
        got = out_proj(proxy_attention(v_proj(x)[:, 1:], clip_grid, proxy_weights(ex), vfm_grid))
        ref = ref.transpose(0, 1)
    assert got.shape == (1, vfm_grid[0] * vfm_grid[1], d)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_identical_vfm_features_average_the_values():
    """All patches alike: the official mask would leave every row empty (NaN); here every patch attends to
    all equally, so each output is the mean of the values."""
    ex = torch.ones(2, 4, 3, 3)
    values = torch.randn(2, 9, 5)
    out = proxy_attention(values, (3, 3), proxy_weights(ex), (3, 3))
    torch.testing.assert_close(out, values.mean(1, keepdim=True).expand_as(out))


# ---------------------------------------------------------------------------------------------------------
# relations and the score, on drawn masks


def _box(h=100, w=200, x0=0, y0=0, x1=0, y1=0):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_relation_rules():
    left, right = _box(x0=10, y0=40, x1=50, y1=80), _box(x0=120, y0=40, x1=170, y1=80)
    assert holds("left_of", left, right) and not holds("left_of", right, left)
    assert holds("right_of", right, left) and not holds("right_of", left, right)
    top, bottom = _box(x0=80, y0=0, x1=120, y1=30), _box(x0=60, y0=50, x1=140, y1=100)
    assert holds("above", top, bottom) and not holds("above", bottom, top)
    assert holds("below", bottom, top) and holds("on_top_of", top, bottom)
    assert not holds("on_top_of", _box(x0=0, y0=0, x1=20, y1=20), bottom)  # above, but not over it
    # a person (tall, feet low in the frame) covering part of a house further back
    house, person = _box(x0=60, y0=10, x1=160, y1=70), _box(x0=90, y0=40, x1=110, y1=95)
    house &= ~person  # one label per pixel: the person occludes the house
    assert holds("in_front_of", person, house) and not holds("in_front_of", house, person)
    assert holds("behind", house, person) and not holds("behind", person, house)
    assert not holds("in_front_of", right, left)  # no overlap with the other's box
    near, far = _box(x0=55, y0=40, x1=95, y1=80), _box(x0=190, y0=0, x1=200, y1=10)
    assert holds("next_to", left, near) and not holds("next_to", left, far)
    assert not holds("left_of", left, np.zeros_like(left))  # an absent object: nothing holds


def test_evaluate_presence_and_score():
    from dqa.grounding.prompt import Relation

    t, h, w = 8, 100, 200
    labels = np.zeros((t, h, w), np.int64)
    labels[:, 40:80, 10:50] = 1  # "car" on the left in every frame
    labels[:6, 40:80, 120:170] = 2  # "bus" on the right in 6 of 8 frames
    tiny = int(math.ceil(MIN_AREA * h * w)) - 1  # one pixel short of the visibility threshold
    labels[:, 0, :tiny] = 3  # "dog": always there but too small to count
    labels[:3, 90:100, 0:100] = 4  # "cat": visible, but in 3 of 8 frames only (< half)
    names = ["car", "bus", "dog", "cat"]
    score, d = evaluate(labels, names, [Relation(0, "left_of", 1), Relation(1, "left_of", 0)])
    ents = d["entities"]
    assert [ents[n]["present"] for n in names] == [True, True, False, False]
    assert [ents[n]["frames_present"] for n in names] == [8, 6, 0, 3]
    assert ents["car"]["mean_area"] == pytest.approx(40 * 40 / (h * w), abs=1e-4)
    held = [r["held_fraction"] for r in d["relations"]]
    assert held == [1.0, 0.0] and [r["frames_evaluated"] for r in d["relations"]] == [6, 6]
    assert score == pytest.approx((1 + 1 + 0 + 0 + 1.0 + 0.0) / 6)
    only_entities, _ = evaluate(labels, names, [])
    assert only_entities == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------------------
# tiny random models, loaded through the real loaders


def _build_tiny(root: Path) -> tuple[Path, Path]:
    """A 2-layer CLIP (16 px patches) with a byte-level CLIP tokenizer of ~500 tokens, and a 2-layer DINOv2."""
    from make_tiny_dqa_models import clip, dinov2

    return clip(root / "clip", patch_size=16, image_size=64, seed=0, tokenizer=True), dinov2(root / "vfm")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _build_tiny(tmp_path_factory.mktemp("proxyclip"))


@pytest.fixture(scope="module")
def seg(tiny) -> ProxyCLIP:
    return load_proxyclip(str(tiny[0]), str(tiny[1]), "cpu", mode="whole", templates="photo")


def test_dense_features_continue_clip_from_its_last_block(seg):
    """The last block gets exactly the hidden state transformers' own vision forward gives it (position
    embeddings interpolated, pre-layernorm, earlier blocks), and features are unit vectors on the VFM grid."""
    img = torch.rand(1, 3, 48, 80)
    seen = {}
    ln1 = seg.clip.vision_model.encoder.layers[-1].layer_norm1
    hook = ln1.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0]))
    try:
        feats = seg.dense_features(img, F.interpolate(img, size=(42, 84), mode="bilinear"))
    finally:
        hook.remove()
    assert feats.shape == (1, 16, 3, 6)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(1, 3, 6))
    x = seg._norm(img, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
    with torch.no_grad():
        ref = seg.clip.vision_model(pixel_values=x, interpolate_pos_encoding=True, output_hidden_states=True)
    torch.testing.assert_close(seen["x"], ref.hidden_states[-2])


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_segment_label_maps(seg, mode):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 40, 70, 3), dtype=np.uint8)
    seg.mode, seg.short_side, seg.crop, seg.stride, seg.prob_thd = mode, 56, 56, 28, 0.0
    try:
        labels = seg.segment(frames, [["sky", "wall"], ["red car"], ["dog"]])
    finally:
        seg.mode, seg.short_side, seg.crop, seg.stride, seg.prob_thd = "whole", 336, 336, 112, 0.25
    assert labels.shape == (3, 40, 70) and labels.dtype == np.int64
    onehot = np.stack([labels == k for k in range(3)])
    assert (onehot.sum(0) == 1).all()  # every pixel has exactly one of the three labels
    assert len(np.unique(labels)) >= 2  # with no probability floor, more than one class wins somewhere


def test_text_features_average_templates(seg):
    seg._text.clear()
    seg.templates = ("a photo of a {}.", "a {}.")
    try:
        both = seg.text_features(["dog"])[0]
        seg._text.clear()
        seg.templates = ("a photo of a {}.",)
        one = seg.text_features(["dog"])[0]
        seg._text.clear()
        seg.templates = ("a {}.",)
        other = seg.text_features(["dog"])[0]
    finally:
        seg._text.clear()
        seg.templates = ("a photo of a {}.",)
    torch.testing.assert_close(both, F.normalize(one + other, dim=0))


def test_missing_model_dir_is_a_load_error(tmp_path, tiny):
    w = registry()["proxyclip"](models={"proxy_clip": str(tmp_path / "nope"), "vfm": str(tiny[1])})
    with pytest.raises(ModelLoadError):
        w.load()
    with pytest.raises(ModelLoadError):
        load_proxyclip(str(tiny[0]), str(tmp_path))  # a dir without a model


def _clip(tmp_path: Path) -> Path:
    """A red square on the left and a blue disc on the right of a textured background, drifting right."""
    import cv2

    from vrthinker_eval.synth import write_video

    rng = np.random.default_rng(1)
    frames = []
    for i in range(12):
        f = (rng.random((96, 160, 3)) * 60 + 80).astype(np.uint8)
        cv2.rectangle(f, (15 + i, 30), (55 + i, 70), (220, 30, 30), -1)
        cv2.circle(f, (115 + i, 50), 20, (30, 30, 220), -1)
        frames.append(f)
    return Path(write_video(tmp_path / "shapes.mp4", np.stack(frames), fps=12))


def test_worker_end_to_end(tmp_path, tiny):
    from dqa.score.scheduler import MAX_FRAMES, MAX_SIDE
    from vrthinker.media.decode import read_sample

    cls = registry()["proxyclip"]
    assert cls.needs_prompt and cls.components == ("spatial",)
    w = cls(models={"proxy_clip": str(tiny[0]), "vfm": str(tiny[1])}, short_side=112, crop=112, stride=56)
    assert 0.75 < w.footprint_gb() < 1.0  # the allowance plus two tiny checkpoints
    video = read_sample(_clip(tmp_path), MAX_FRAMES, MAX_SIDE)
    with pytest.raises(ScoreError) as e:
        w.score(video, "very quickly and beautifully")
    assert e.value.reason == "no_entities" and not w.loaded  # no model load for a prompt without objects
    w.load()
    ref = weakref.ref(w._seg.clip)
    (s,) = w.score(video, "a red square to the left of a blue circle")
    assert s.name == "spatial" and 0.0 <= s.value <= 1.0 and s.unit == s.value and math.isfinite(s.value)
    assert set(s.details["entities"]) == {"red square", "blue circle"}
    assert set(s.details["entities"]["red square"]) == {"present", "frames_present", "mean_area"}
    (rel,) = s.details["relations"]
    assert (rel["subject"], rel["relation"], rel["object"]) == ("red square", "left_of", "blue circle")
    assert 0.0 <= rel["held_fraction"] <= 1.0 and s.details["frames"] == 8
    w.unload()
    gc.collect()
    assert ref() is None and not w.loaded


def test_worker_scores_known_masks(tmp_path, tiny):
    """The worker's plumbing from prompt to score, with the segmenter replaced by known label maps."""
    from vrthinker.media.decode import VideoSample

    class Known:
        def segment(self, frames, classes):
            assert classes[1:] == [["red car"], ["blue bus"]] and "sky" in classes[0]
            labels = np.zeros(frames.shape[:3], np.int64)
            labels[:, 20:60, 10:50], labels[:, 20:60, 100:150] = 1, 2
            return labels

    frames = np.zeros((20, 80, 160, 3), np.uint8)
    video = VideoSample("x.mp4", frames, tuple(range(20)), 10.0, 20, (160, 80))
    w = registry()["proxyclip"](models={"proxy_clip": str(tiny[0]), "vfm": str(tiny[1])})
    w._seg, w.loaded = Known(), True
    assert w.score(video, "a red car to the left of a blue bus")[0].value == 1.0
    (s,) = w.score(video, "a red car to the right of a blue bus")
    assert s.value == pytest.approx(2 / 3) and s.details["relations"][0]["held_fraction"] == 0.0
