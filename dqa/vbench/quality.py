"""VBench's per-frame quality dimensions: aesthetic (LAION linear head on CLIP ViT-L/14) and imaging quality
(pyiqa MUSIQ, SPAQ checkpoint), reimplemented with VBench 0.1.5's transforms and scales.

Both score every frame and average: aesthetic = mean(head(normalised CLIP embedding)) / 10, imaging quality =
mean(MUSIQ MOS) / 100. pyiqa is optional (`vrthinker[iqa]`); without it only imaging quality is unavailable.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable

from vrthinker.errors import ModelLoadError
from vrthinker.loading import reachable
from vrthinker.media.decode import VideoSample

from dqa.workers.base import Score, ScoreError, Worker, source_kwargs
from dqa.vbench.consistency import clip_transform, footprint, load_clip_vision, load_error, pick_dtype, video_features

AESTHETIC_FILE = "sa_0_4_vit_l_14_linear.pth"
AESTHETIC_URL = f"https://github.com/LAION-AI/aesthetic-predictor/blob/main/{AESTHETIC_FILE}?raw=true"
MUSIQ_FILE = "musiq_spaq_ckpt-358bb6af.pth"
MUSIQ_REPO = "chaofengc/IQA-PyTorch-Weights"  # where pyiqa itself downloads its checkpoints from


def vbench_cache() -> Path:
    """VBench's cache folder (VBENCH_CACHE_DIR or ~/.cache/vbench): files a VBench install fetched are reused."""
    return Path(os.environ.get("VBENCH_CACHE_DIR") or Path.home() / ".cache" / "vbench")


def fetch_file(source: str, filename: str, known: tuple[Path, ...] = ()) -> str:
    """Local path of a single-file checkpoint named by `source`: a file, a folder holding `filename`, an
    http(s) URL (downloaded once to `known[0]`), or a hub repo id holding `filename`. For URL and hub
    sources the `known` copies (VBench's and pyiqa's caches) are used first. ModelLoadError otherwise."""
    path = Path(source).expanduser()
    if path.is_file():
        return str(path)
    if path.is_dir():
        if (path / filename).is_file():
            return str(path / filename)
        raise ModelLoadError(f"{filename} not found in {source}")
    for k in known:
        if k.is_file():
            return str(k)
    if source.startswith(("http://", "https://")):
        return _download(source, known[0] if known else Path.home() / ".cache" / "dqa" / filename)
    source, kw = source_kwargs(source)  # "model not found" for a missing local path; fails fast offline
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(source, filename, local_files_only=kw.get("local_files_only", False))
    except Exception as e:  # hub errors come in many types (HTTP, cache, repo); each becomes one line
        raise load_error(filename, source, e) from None


def _download(url: str, dest: Path) -> str:
    """Download `url` to `dest` after a 5 s reachability check, so an offline machine fails at once."""
    from urllib.parse import urlparse

    import torch

    host = urlparse(url).hostname or ""
    if not reachable(host, timeout=5.0):
        raise ModelLoadError(f"cannot download {url} ({host} cannot be reached); put the file at {dest} "
                             "or pass its path")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(dest), progress=False)
    except OSError as e:
        raise ModelLoadError(f"cannot download {url} ({e}); put the file at {dest} or pass its path") from None
    return str(dest)


class AestheticWorker(Worker):
    """VBench `aesthetic_quality`: LAION's linear aesthetic head on l2-normalised CLIP ViT-L/14 image
    embeddings (clip_transform 224), per frame, /10, averaged over frames."""

    name = "vbench.aesthetic"
    components = ("aesthetic_quality",)
    default_models = {"clip_l14": "openai/clip-vit-large-patch14", "aesthetic_head": AESTHETIC_URL}

    def __init__(self, device: str = "cpu", models=None, **options: Any):
        super().__init__(device, models, **options)
        self.batch_size = int(options.get("batch_size", 32))  # VBench's own batch size here
        self.dtype = pick_dtype(device, str(options.get("dtype", "auto")), "float16")
        self.model = self.head = None

    def footprint_gb(self) -> float:
        # 304 M params for the ViT-L/14 tower + projection; 257 tokens x 1024 per frame.
        return footprint(self.models["clip_l14"], 0.304, self.dtype, 0.5, self.batch_size)

    def _load(self) -> None:
        import torch

        source, kw = source_kwargs(self.models["clip_l14"])
        head_src = self.models["aesthetic_head"]
        head_path = fetch_file(head_src, AESTHETIC_FILE, (vbench_cache() / "aesthetic_model" / "emb_reader"
                                                          / AESTHETIC_FILE,))
        try:
            state = torch.load(head_path, map_location="cpu", weights_only=True)
            w = state["weight"]
            head = torch.nn.Linear(w.shape[1], w.shape[0])
            head.load_state_dict(state)
        except (OSError, ValueError, RuntimeError, KeyError, AttributeError, IndexError) as e:
            raise load_error("aesthetic head", head_src, e) from None
        model = load_clip_vision(source, kw, self.dtype, "clip_l14")
        if model.config.projection_dim != head.in_features or head.out_features != 1:
            raise ModelLoadError(f"the aesthetic head ({head.in_features} -> {head.out_features}) does not fit "
                                 f"the CLIP embedding size {model.config.projection_dim} of {source}")
        self.model = model.to(self.device).eval()
        self.head = head.to(self.device).eval()  # float32, as VBench (it casts the embeddings to float32)

    def unload(self) -> None:
        self.model = self.head = None
        super().unload()

    def embed(self, x):
        """l2-normalised float32 CLIP image embeddings, as VBench feeds the head."""
        import torch.nn.functional as F

        return F.normalize(self.model(pixel_values=x).image_embeds.float(), dim=-1, p=2)

    def score(self, video: VideoSample, prompt: str) -> list[Score]:
        if len(video.frames) < 1:
            raise ScoreError("too_few_frames", "no frames to score")
        self.load()
        import torch

        feats, details = video_features(self, video, self.embed, clip_transform(224))
        with torch.inference_mode():
            raw = self.head(feats.to(self.device)).squeeze(-1).double().cpu()
        value = float(raw.mean()) / 10
        return [Score("aesthetic_quality", value, min(1.0, max(0.0, value)),
                      {**details, "raw_mean": float(raw.mean()), "raw_min": float(raw.min()),
                       "raw_max": float(raw.max())})]


def musiq_class():
    """pyiqa's MUSIQ architecture, or ModelLoadError naming the extra to install."""
    try:
        from pyiqa.archs.musiq_arch import MUSIQ
    except ImportError:
        raise ModelLoadError("imaging_quality needs pyiqa: pip install 'vrthinker[iqa]'") from None
    return MUSIQ


def musiq_resize(images, mode: str = "longer"):
    """VBench's imaging-quality `transform`: frames [T, 3, H, W] in 0..255 resized (bilinear, no antialias)
    so the longer side (or shorter, by `mode`) is at most 512, then scaled to 0..1."""
    from torchvision import transforms as T

    _, _, h, w = images.shape
    if mode.startswith("shorter") and min(h, w) > 512:
        s = 512.0 / min(h, w)
        images = T.Resize(size=(int(s * h), int(s * w)), antialias=False)(images)
        if mode == "shorter_centercrop":
            images = T.CenterCrop(512)(images)
    elif mode == "longer" and max(h, w) > 512:
        s = 512.0 / max(h, w)
        images = T.Resize(size=(int(s * h), int(s * w)), antialias=False)(images)
    elif mode not in ("longer", "shorter", "shorter_centercrop", "None"):
        raise ValueError(f"unknown imaging-quality preprocessing mode {mode!r}")
    return images / 255.0


class MusiqWorker(Worker):
    """VBench `imaging_quality`: pyiqa MUSIQ with the SPAQ checkpoint on each frame (its own multi-scale patch
    preprocessing), MOS averaged over frames, /100. Needs pyiqa (optional extra `iqa`)."""

    name = "vbench.musiq"
    components = ("imaging_quality",)
    default_models = {"musiq": MUSIQ_REPO}

    def __init__(self, device: str = "cpu", models=None, **options: Any):
        super().__init__(device, models, **options)
        self.batch_size = int(options.get("batch_size", 16))
        self.mode = str(options.get("preprocess", "longer"))  # VBench's default imaging_quality_preprocessing_mode
        self.arch: dict = dict(options.get("arch") or {})  # MUSIQ constructor overrides (tests, custom ckpts)
        self.dtype = pick_dtype(device, str(options.get("dtype", "auto")), "float32")  # VBench: float32
        self.model = None

    def footprint_gb(self) -> float:
        # ~27 M params; a 512 px frame is ~340 32-px patches, each through a ResNet stem (~22 MB per frame).
        return footprint(self.models["musiq"], 0.027, self.dtype, 1.0, self.batch_size)

    def _load(self) -> None:
        MUSIQ = musiq_class()  # before anything else: no pyiqa, no download
        import torch

        path = fetch_file(self.models["musiq"], MUSIQ_FILE, (
            vbench_cache() / "pyiqa_model" / MUSIQ_FILE, Path(torch.hub.get_dir()) / "pyiqa" / MUSIQ_FILE))
        try:
            with contextlib.redirect_stdout(sys.stderr):  # pyiqa prints "Loading pretrained model ..."
                model = MUSIQ(pretrained=False, pretrained_model_path=path, **self.arch)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise load_error("musiq", path, e) from None
        self.model = model.to(device=self.device, dtype=self.dtype).eval()

    def unload(self) -> None:
        self.model = None
        super().unload()

    def score(self, video: VideoSample, prompt: str) -> list[Score]:
        if len(video.frames) < 1:
            raise ScoreError("too_few_frames", "no frames to score")
        self.load()
        mos, details = video_features(self, video, self._mos, self._transform())
        mos = mos.reshape(-1).double()
        value = float(mos.mean()) / 100
        return [Score("imaging_quality", value, min(1.0, max(0.0, value)),
                      {**details, "mos_mean": float(mos.mean()), "mos_min": float(mos.min()),
                       "mos_max": float(mos.max())})]

    def _transform(self) -> Callable:
        return lambda x: musiq_resize(x, self.mode)

    def _mos(self, x):
        return self.model(x).reshape(-1, 1)

