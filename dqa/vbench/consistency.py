"""VBench's subject and background consistency: DINO ViT-B/16 and CLIP ViT-B/32 frame features compared
with the first and the previous frame, reimplemented on transformers with VBench 0.1.5's exact transforms.

VBench reads every frame of the video (decord, full resolution), transforms them as float tensors on the CPU,
and averages, over frames 1..T-1, (max(0, cos(f_t, f_{t-1})) + max(0, cos(f_t, f_0))) / 2.
"""
from __future__ import annotations

import math
import types
from typing import Any, Callable, Iterable

import numpy as np

from vrthinker.errors import ModelLoadError, VideoError
from vrthinker import loading
from vrthinker.media.decode import VideoSample

from dqa.workers.base import Score, ScoreError, Worker, source_kwargs
from dqa.vbench.frames import frame_batches, is_capped

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def frames_tensor(frames: np.ndarray):
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W] in 0..255, as VBench's load_video (`torch.Tensor(buffer)`)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def dino_transform(n_px: int = 224) -> Callable:
    """VBench's `dino_transform`: shorter side to n_px (bilinear, no antialias, aspect kept, no crop), ImageNet norm."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(size=n_px, antialias=False), T.Lambda(lambda x: x.float().div(255.0)),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def clip_transform(n_px: int = 224) -> Callable:
    """VBench's `clip_transform`: shorter side to n_px (bicubic, no antialias), centre crop, CLIP norm."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(n_px, interpolation=T.InterpolationMode.BICUBIC, antialias=False),
                      T.CenterCrop(n_px), T.Lambda(lambda x: x.float().div(255.0)),
                      T.Normalize(CLIP_MEAN, CLIP_STD)])


def consistency(features) -> dict[str, Any]:
    """VBench's per-video consistency from per-frame features [T, D] (l2-normalised here, as VBench does).

    Returns value = mean over t >= 1 of (max(0, cos(f_t, f_{t-1})) + max(0, cos(f_t, f_0))) / 2, plus the
    two halves and the weakest pair for the details. Needs T >= 2.
    """
    import torch.nn.functional as F

    f = F.normalize(features.float(), dim=-1, p=2)
    sim_prev = F.cosine_similarity(f[:-1], f[1:], dim=-1).clamp(min=0.0).double()
    sim_first = F.cosine_similarity(f[:1], f[1:], dim=-1).clamp(min=0.0).double()
    pair = (sim_prev + sim_first) / 2
    return {"value": float(pair.mean()), "sim_prev": float(sim_prev.mean()), "sim_first": float(sim_first.mean()),
            "min_pair": float(pair.min())}


def pick_dtype(device: str, option: str, cuda_default: str):
    """Torch dtype from the `dtype` option; "auto" is VBench's own precision on cuda, float32 elsewhere.
    Names as the judge's `--dtype` (an unknown one is a ModelLoadError naming the choices)."""
    if option in (None, "", "auto"):
        option = cuda_default if str(device).startswith("cuda") else "float32"
    return loading.pick_dtype(option, str(device))


def load_error(role: str, source: str, e: Exception) -> ModelLoadError:
    """One-line ModelLoadError for a loader's OSError/ValueError/RuntimeError."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return ModelLoadError(f"cannot load the {role} model from {source}: {first[:300]}")


def footprint(source: str, params_b: float, dtype, activation_gb_per_32: float, batch_size: int) -> float:
    """Weights (a local checkpoint's files, else the default model's parameter count) at `dtype`, plus working
    memory scaled to the batch and dtype, plus 0.1 GB of slack for the transform and allocator."""
    bpp = float(dtype.itemsize)
    weights = loading.weights_gb(source, bpp, fallback_gb=params_b * bpp)
    return weights + 0.1 + activation_gb_per_32 * batch_size / 32 * bpp / 4




def batched_features(encode: Callable, batches: Iterable[np.ndarray], transform: Callable, device: str, dtype,
                     chunk: int = 8):
    """Features of all frames, a batch at a time: VBench's transform on the CPU in float32 (`chunk` frames at
    a time to bound memory on full-size frames; it works per frame), then `encode` on `device`.
    Returns float32 [T, D] on the CPU."""
    import torch

    out = []
    with torch.inference_mode():
        for frames in batches:
            x = torch.cat([transform(frames_tensor(frames[i:i + chunk])) for i in range(0, len(frames), chunk)])
            out.append(encode(x.to(device=device, dtype=dtype)).float().cpu())
    return torch.cat(out)


def video_features(worker: Worker, video: VideoSample, encode: Callable, transform: Callable):
    """(features [T, D], details) over the frames VBench reads (see `frame_batches`); falls back to the shared
    sample, saying so in the details, if the file cannot be decoded again."""
    full = bool(worker.options.get("full_video", True))
    bs = int(worker.batch_size)
    dev, dt = worker.device, worker.dtype
    note = None
    try:
        feats = batched_features(encode, frame_batches(video, bs, full), transform, dev, dt)
        redecoded = full and is_capped(video)
    except VideoError as e:
        feats = batched_features(encode, frame_batches(video, bs, False), transform, dev, dt)
        redecoded, note = False, f"the file could not be read again ({e.cause}): used the shared sample"
    details: dict[str, Any] = {"frames": int(len(feats))}
    if redecoded:
        details["full_video"] = True
    elif is_capped(video):  # not what VBench reads: say how it differs
        h, w = video.frames.shape[1:3]
        details.update(frames_of=int(video.total_frames), used_size=[int(w), int(h)], size=list(video.size))
    if note:
        details["note"] = note
    return feats, details


def _dino_pos_encoding(self, embeddings, height: int, width: int):
    """DINO's own `interpolate_pos_encoding` (facebookresearch/dino vision_transformer.py), bound to the HF
    embeddings: bicubic with scale_factor (grid + 0.1) / sqrt(N), which samples slightly differently from
    transformers' size=(h, w) version. VBench feeds non-square frames, so this path is always taken."""
    import torch
    from torch import nn

    pos = self.position_embeddings
    npatch, n = embeddings.shape[1] - 1, pos.shape[1] - 1
    if npatch == n and height == width:
        return pos
    dim, side = embeddings.shape[-1], int(math.sqrt(n))
    h0, w0 = height // self.patch_size + 0.1, width // self.patch_size + 0.1
    grid = pos[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = nn.functional.interpolate(grid, scale_factor=(h0 / math.sqrt(n), w0 / math.sqrt(n)), mode="bicubic")
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((pos[:, :1], grid), dim=1)


class _ConsistencyWorker(Worker):
    """Shared body: encode every frame, then VBench's first/previous-frame formula."""

    role: str = ""
    default_params_b: float = 0.1  # parameters of the default model's loaded part, in billions
    activation_gb_per_32: float = 0.5  # float32 working memory for a batch of 32 frames (estimate)
    cuda_dtype: str = "float32"

    def __init__(self, device: str = "cpu", models=None, **options: Any):
        super().__init__(device, models, **options)
        self.batch_size = int(options.get("batch_size", 32))
        self.dtype = pick_dtype(device, str(options.get("dtype", "auto")), self.cuda_dtype)
        self.model = None

    def footprint_gb(self) -> float:
        return footprint(self.models[self.role], self.default_params_b, self.dtype, self.activation_gb_per_32,
                         self.batch_size)

    def unload(self) -> None:
        self.model = None
        super().unload()

    def encode(self, x):
        raise NotImplementedError

    def transform(self) -> Callable:
        raise NotImplementedError

    def score(self, video: VideoSample, prompt: str) -> list[Score]:
        if len(video.frames) < 2:
            raise ScoreError("too_few_frames", f"{len(video.frames)} frame(s); {self.components[0]} compares "
                                               "frames, so it needs at least 2")
        self.load()
        feats, details = video_features(self, video, self.encode, self.transform())
        if len(feats) < 2:
            raise ScoreError("too_few_frames", f"{len(feats)} frame(s) decodable; at least 2 are needed")
        c = consistency(feats)
        value = c.pop("value")
        return [Score(self.components[0], value, min(1.0, max(0.0, value)), {**details, **c})]


class DinoConsistencyWorker(_ConsistencyWorker):
    """VBench `subject_consistency`: DINO ViT-B/16 [CLS] after the final norm (the hub model's output)."""

    name = "vbench.dino"
    components = ("subject_consistency",)
    default_models = {"dino": "facebook/dino-vitb16"}
    role = "dino"
    default_params_b = 0.086
    activation_gb_per_32 = 0.6  # 224 x ~400 px -> ~350 tokens x 768, 12 heads
    cuda_dtype = "float32"  # VBench runs the torch.hub DINO in float32

    def transform(self) -> Callable:
        return dino_transform(224)

    def _load(self) -> None:
        from transformers import ViTModel

        source, kw = source_kwargs(self.models["dino"])
        try:
            # DINO's LayerNorms use eps 1e-6; no pooler: VBench takes the normed [CLS] token.
            model = ViTModel.from_pretrained(source, add_pooling_layer=False, layer_norm_eps=1e-6,
                                             dtype=self.dtype, **kw)
        except (OSError, ValueError, RuntimeError) as e:
            raise load_error("dino", source, e) from None
        model.embeddings.interpolate_pos_encoding = types.MethodType(_dino_pos_encoding, model.embeddings)
        self.model = model.to(self.device).eval()

    def encode(self, x):
        return self.model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 0]


def load_clip_vision(source: str, kw: dict, dtype, role: str):
    """CLIP image tower + projection from a CLIPModel checkpoint (text tower skipped).

    The projection size lives in the top-level CLIPConfig, so the vision config is taken from it explicitly
    (transformers would otherwise build a 512-wide projection and refuse ViT-L/14's 768)."""
    from transformers import AutoConfig, CLIPConfig, CLIPVisionModelWithProjection

    try:
        config = AutoConfig.from_pretrained(source, **kw)
        if isinstance(config, CLIPConfig):
            projection_dim = config.projection_dim
            config = config.vision_config
            config.projection_dim = projection_dim
        return CLIPVisionModelWithProjection.from_pretrained(source, config=config, dtype=dtype, **kw)
    except (OSError, ValueError, RuntimeError) as e:
        raise load_error(role, source, e) from None


class ClipConsistencyWorker(_ConsistencyWorker):
    """VBench `background_consistency`: CLIP ViT-B/32 `encode_image` (projected [CLS])."""

    name = "vbench.clip"
    components = ("background_consistency",)
    default_models = {"clip_b32": "openai/clip-vit-base-patch32"}
    role = "clip_b32"
    default_params_b = 0.088  # the vision tower and projection (the text tower is not loaded)
    activation_gb_per_32 = 0.15  # 50 tokens x 768 per frame
    cuda_dtype = "float16"  # openai clip.load converts to float16 on cuda

    def transform(self) -> Callable:
        return clip_transform(224)

    def _load(self) -> None:
        source, kw = source_kwargs(self.models["clip_b32"])
        self.model = load_clip_vision(source, kw, self.dtype, "clip_b32").to(self.device).eval()

    def encode(self, x):
        return self.model(pixel_values=x).image_embeds
