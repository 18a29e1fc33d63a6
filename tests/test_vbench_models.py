"""VBench model dimensions (subject/background consistency, aesthetic, imaging quality) with tiny random models
built here from configs and loaded through the workers' real loaders from local dirs."""
from __future__ import annotations

import gc
import math
import sys
import weakref

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from dqa.vbench import consistency as C  # noqa: E402
from dqa.vbench import quality as Q  # noqa: E402
from dqa.workers import ScoreError, registry  # noqa: E402
from vrthinker_eval.synth import render_scene  # noqa: E402
from vrthinker.errors import ModelLoadError  # noqa: E402
from vrthinker.media.decode import VideoSample  # noqa: E402


def sample(frames: np.ndarray) -> VideoSample:
    t, h, w, _ = frames.shape
    return VideoSample("mem.mp4", frames, tuple(range(t)), 12.0, t, (w, h))


@pytest.fixture(scope="module")
def scenes() -> tuple[np.ndarray, np.ndarray]:
    return render_scene("shapes", 160, 96, 1, seed=1)[0], render_scene("text", 160, 96, 1, seed=2)[0]


def _vit_dir(path, hidden: int = 32, layers: int = 2):
    from make_tiny_dqa_models import vit

    return vit(path, hidden, layers)


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    return _vit_dir(tmp_path_factory.mktemp("dino") / "model")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny full CLIPModel checkpoint (text tower included, as on the hub) with a 16-wide projection."""
    from make_tiny_dqa_models import clip

    return clip(tmp_path_factory.mktemp("clip") / "model")


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory):
    torch.manual_seed(2)
    d = tmp_path_factory.mktemp("aes")
    torch.save(torch.nn.Linear(16, 1).state_dict(), d / Q.AESTHETIC_FILE)
    return d


@pytest.fixture(scope="module")
def dino(dino_dir):
    w = C.DinoConsistencyWorker(models={"dino": str(dino_dir)}, batch_size=4)
    w.load()
    return w


@pytest.fixture(scope="module")
def clipw(clip_dir):
    w = C.ClipConsistencyWorker(models={"clip_b32": str(clip_dir)}, batch_size=4)
    w.load()
    return w


def vbench_loop(feats) -> float:
    """VBench 0.1.5's subject_consistency loop, transcribed (per frame, .item(), max(0, .))."""
    video_sim, first, former = 0.0, None, None
    for i in range(len(feats)):
        f = F.normalize(feats[i].unsqueeze(0), dim=-1, p=2)
        if i == 0:
            first = f
        else:
            sim_pre = max(0.0, F.cosine_similarity(former, f).item())
            sim_fir = max(0.0, F.cosine_similarity(first, f).item())
            video_sim += (sim_pre + sim_fir) / 2
        former = f
    return video_sim / (len(feats) - 1)


def test_registered():
    reg = registry()
    for name, comp in [("vbench.dino", "subject_consistency"), ("vbench.clip", "background_consistency"),
                       ("vbench.aesthetic", "aesthetic_quality"), ("vbench.musiq", "imaging_quality")]:
        assert reg[name].components == (comp,)


def test_formula_by_hand_and_vbench_loop():
    f = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [-1.0, 0.0]])
    # pairs: t1 (cos45 + cos45)/2, t2 (cos45 + 0)/2, t3 (0 + max(0, -1))/2
    r = 1 / math.sqrt(2)
    assert C.consistency(f)["value"] == pytest.approx((r + r / 2 + 0) / 3, abs=1e-7)
    torch.manual_seed(3)
    g = torch.randn(9, 5)
    c = C.consistency(g)
    assert c["value"] == pytest.approx(vbench_loop(g), abs=1e-6)
    assert c["value"] == pytest.approx((c["sim_prev"] + c["sim_first"]) / 2, abs=1e-9)


def test_dino_transform_keeps_aspect_without_crop():
    x = C.dino_transform(224)(C.frames_tensor(np.zeros((2, 96, 160, 3), np.uint8)))
    assert tuple(x.shape) == (2, 3, 224, 373)  # int(224 * 160 / 96), as torchvision sizes the long side
    y = C.clip_transform(224)(C.frames_tensor(np.zeros((1, 96, 160, 3), np.uint8)))
    assert tuple(y.shape) == (1, 3, 224, 224)


def test_dino_position_interpolation_is_dinos(dino):
    """DINO's +0.1 scale-factor bicubic, not transformers' size= version (they differ slightly)."""
    emb = dino.model.embeddings
    pos = emb.position_embeddings
    tokens = torch.zeros(1, 1 + 14 * 23, pos.shape[-1])
    got = emb.interpolate_pos_encoding(tokens, 224, 373)
    n = pos.shape[1] - 1
    grid = pos[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    want = F.interpolate(grid, scale_factor=((14 + 0.1) / math.sqrt(n), (23 + 0.1) / math.sqrt(n)), mode="bicubic")
    want = torch.cat((pos[:, :1], want.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])), dim=1)
    assert torch.allclose(got, want)
    assert emb.interpolate_pos_encoding(torch.zeros(1, 197, pos.shape[-1]), 224, 224) is pos


@pytest.mark.parametrize("fixture", ["dino", "clipw"])
def test_repeated_frame_is_fully_consistent(request, fixture, scenes):
    w = request.getfixturevalue(fixture)
    (s,) = w.score(sample(np.stack([scenes[0]] * 6)), "")
    assert s.value == pytest.approx(1.0, abs=1e-5) and s.unit == pytest.approx(1.0, abs=1e-5)
    assert s.details["frames"] == 6


@pytest.mark.parametrize("fixture", ["dino", "clipw"])
def test_scene_change_lowers_consistency(request, fixture, scenes):
    w = request.getfixturevalue(fixture)
    a, b = scenes
    (cut,) = w.score(sample(np.stack([a] * 4 + [b] * 4)), "")
    with torch.inference_mode():
        fa, fb = w.encode(w.transform()(C.frames_tensor(np.stack([a, b])))).float()
    c = max(0.0, F.cosine_similarity(fa, fb, dim=0).item())
    assert c < 0.9999  # random weights still tell the two scenes apart
    # pairs 1-3 identical (1), pair 4 is (c + c)/2, pairs 5-7 are (1 + c)/2
    assert cut.value == pytest.approx((3 + c + 3 * (1 + c) / 2) / 7, abs=1e-5)
    assert cut.value < 1.0 - 1e-5


def test_consistency_batching_does_not_change_value(dino_dir, dino):
    frames = render_scene("pan", 160, 96, 7, seed=4)
    one = C.DinoConsistencyWorker(models={"dino": str(dino_dir)}, batch_size=1).score(sample(frames), "")[0]
    assert dino.score(sample(frames), "")[0].value == pytest.approx(one.value, abs=1e-6)


def test_capped_sample_is_read_again_in_full(dino, tmp_path):
    """VBench reads every frame at full size; a capped shared sample makes the worker decode the file again."""
    from dataclasses import replace

    from vrthinker.media.decode import read_sample as decode
    from vrthinker_eval.synth import write_video

    path = write_video(tmp_path / "v.mp4", render_scene("shapes", 480, 272, 6, seed=6), fps=12)
    full = decode(path, max_frames=100, max_side=4096)
    capped = decode(path, max_frames=3, max_side=240)
    assert C.is_capped(capped) and not C.is_capped(full)
    (want,) = dino.score(full, "")
    (got,) = dino.score(capped, "")
    assert got.value == pytest.approx(want.value, abs=1e-6)
    assert got.details["frames"] == 6 and got.details["full_video"] is True
    (shared,) = C.DinoConsistencyWorker(models=dino.models, full_video=False).score(capped, "")
    assert shared.details["frames"] == 3 and shared.details["size"] == [480, 272]
    assert abs(shared.value - want.value) > 1e-6
    # the file gone: the shared sample is used, and the details say so
    (fallback,) = dino.score(replace(capped, path=str(tmp_path / "gone.mp4")), "")
    assert fallback.value == pytest.approx(shared.value, abs=1e-6) and "could not be read" in fallback.details["note"]


def test_too_few_frames(dino, scenes):
    with pytest.raises(ScoreError) as e:
        dino.score(sample(scenes[0][None]), "")
    assert e.value.reason == "too_few_frames"


def test_aesthetic_is_head_on_normalised_embeddings_over_10(clip_dir, head_dir, scenes):
    from transformers import CLIPModel

    w = Q.AestheticWorker(models={"clip_l14": str(clip_dir), "aesthetic_head": str(head_dir)}, batch_size=2)
    frames = np.stack([scenes[0], scenes[1], scenes[0]])
    (s,) = w.score(sample(frames), "")
    # by hand: bicubic shorter side -> 224 (no antialias), centre crop, CLIP normalisation
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(224, 373), mode="bicubic", align_corners=False)[..., (373 - 224) // 2:][..., :224]
    mean = torch.tensor(C.CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(C.CLIP_STD).view(1, 3, 1, 1)
    x = (x / 255 - mean) / std
    model = CLIPModel.from_pretrained(clip_dir).eval()  # the full model's own image path
    head = torch.nn.Linear(16, 1)
    head.load_state_dict(torch.load(head_dir / Q.AESTHETIC_FILE))
    with torch.no_grad():
        e = model.get_image_features(pixel_values=x)
        e = e if torch.is_tensor(e) else e.pooler_output
        per_frame = head(e / e.norm(dim=-1, keepdim=True)).squeeze(-1)
    assert s.value == pytest.approx(per_frame.mean().item() / 10, abs=1e-5)
    assert s.details["raw_mean"] == pytest.approx(per_frame.mean().item(), abs=1e-4)
    assert s.unit == min(1.0, max(0.0, s.value))


def test_aesthetic_head_must_fit_clip(clip_dir, tmp_path):
    torch.save(torch.nn.Linear(8, 1).state_dict(), tmp_path / "head.pth")
    w = Q.AestheticWorker(models={"clip_l14": str(clip_dir), "aesthetic_head": str(tmp_path / "head.pth")})
    with pytest.raises(ModelLoadError, match="does not fit"):
        w.load()


def test_unload_frees_models(clip_dir, head_dir, dino_dir):
    for w in (C.DinoConsistencyWorker(models={"dino": str(dino_dir)}),
              Q.AestheticWorker(models={"clip_l14": str(clip_dir), "aesthetic_head": str(head_dir)})):
        w.load()
        refs = [weakref.ref(w.model)] + ([weakref.ref(w.head)] if hasattr(w, "head") else [])
        w.unload()
        gc.collect()
        assert not w.loaded and all(r() is None for r in refs)


def test_missing_models_raise_model_load_error(tmp_path, clip_dir):
    missing = str(tmp_path / "nope")
    for w in (C.DinoConsistencyWorker(models={"dino": missing}), C.ClipConsistencyWorker(models={"clip_b32": missing}),
              Q.AestheticWorker(models={"clip_l14": str(clip_dir), "aesthetic_head": missing})):
        with pytest.raises(ModelLoadError):
            w.load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="cannot load the dino model"):
        C.DinoConsistencyWorker(models={"dino": str(tmp_path / "empty")}).load()


def test_fetch_file_sources(tmp_path, monkeypatch):
    f = tmp_path / "w.pth"
    f.write_bytes(b"x")
    assert Q.fetch_file(str(f), "other.pth") == str(f)
    assert Q.fetch_file(str(tmp_path), "w.pth") == str(f)
    with pytest.raises(ModelLoadError, match="not found"):
        Q.fetch_file(str(tmp_path), "absent.pth")
    # a URL or hub id is answered from a known cached copy without any network
    assert Q.fetch_file("https://example.invalid/w.pth", "w.pth", (tmp_path / "no.pth", f)) == str(f)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError):
        Q.fetch_file("nobody/no-such-repo", "w.pth")


def test_footprint_positive_and_grows_with_model(tmp_path, dino_dir):
    big = _vit_dir(tmp_path / "big", hidden=64, layers=4)
    small_gb = C.DinoConsistencyWorker(models={"dino": str(dino_dir)}).footprint_gb()
    big_gb = C.DinoConsistencyWorker(models={"dino": str(big)}).footprint_gb()
    assert 0 < small_gb < big_gb
    # hub ids: the declared size of the default model at VBench's precision
    assert C.DinoConsistencyWorker(device="cuda").footprint_gb() == pytest.approx(0.086 * 4 + 0.1 + 0.6)
    assert C.ClipConsistencyWorker(device="cuda").footprint_gb() < C.ClipConsistencyWorker().footprint_gb()
    assert Q.AestheticWorker(device="cuda").footprint_gb() > C.ClipConsistencyWorker(device="cuda").footprint_gb()
    assert Q.MusiqWorker().footprint_gb() > 0


def test_dtype_follows_vbench_on_cuda_and_float32_on_cpu():
    assert C.pick_dtype("cuda:0", "auto", "float16") == torch.float16
    assert C.pick_dtype("cpu", "auto", "float16") == torch.float32
    assert C.pick_dtype("cuda", "bf16", "float16") == torch.bfloat16
    assert C.DinoConsistencyWorker(device="cuda").dtype == torch.float32  # VBench: DINO in float32
    assert C.ClipConsistencyWorker(device="cuda").dtype == torch.float16  # openai clip.load: float16 on cuda


def test_musiq_without_pyiqa_says_how_to_install(monkeypatch, tmp_path):
    for mod in ("pyiqa", "pyiqa.archs", "pyiqa.archs.musiq_arch"):
        monkeypatch.setitem(sys.modules, mod, None)
    w = Q.MusiqWorker(models={"musiq": str(tmp_path / "missing.pth")})
    with pytest.raises(ModelLoadError, match=r"imaging_quality needs pyiqa: pip install 'vrthinker\[iqa\]'"):
        w.load()  # the pyiqa message comes first, not "model not found"


def test_musiq_resize_matches_vbench_rule():
    x = torch.zeros(1, 3, 720, 1280)
    assert tuple(Q.musiq_resize(x).shape[-2:]) == (288, 512)  # longer side to 512, int() sizes
    assert tuple(Q.musiq_resize(x, "shorter").shape[-2:]) == (512, 910)
    small = torch.full((1, 3, 96, 160), 255.0)
    assert torch.equal(Q.musiq_resize(small), small / 255)


def test_musiq_tiny_random_matches_vbench_loop(tmp_path, scenes):
    pytest.importorskip("pyiqa")
    from pyiqa.archs.musiq_arch import MUSIQ

    arch = dict(hidden_size=32, mlp_dim=64, num_heads=2, num_layers=1)
    torch.manual_seed(5)
    torch.save(MUSIQ(pretrained=False, **arch).state_dict(), tmp_path / Q.MUSIQ_FILE)
    w = Q.MusiqWorker(models={"musiq": str(tmp_path)}, arch=arch, batch_size=2)
    frames = np.stack([scenes[0], scenes[1], scenes[0]])
    (s,) = w.score(sample(frames), "")
    # VBench: frame by frame, model(frame / 255), mean, / 100
    images = torch.Tensor(frames).permute(0, 3, 1, 2)
    with torch.no_grad():
        want = sum(float(w.model(images[i:i + 1] / 255.0)) for i in range(len(images))) / len(images) / 100
    assert s.value == pytest.approx(want, abs=1e-6)
    w.unload()
    assert w.model is None
