"""The `spatial` component: are the prompt's objects in the video, laid out as the prompt says (ProxyCLIP)."""
from __future__ import annotations

import gc

from vrthinker.loading import weights_gb
from vrthinker.media.decode import VideoSample

from dqa.grounding.prompt import parse_prompt
from dqa.grounding.spatial import evaluate
from dqa.workers.base import Score, ScoreError, Worker

N_FRAMES = 8  # frames sampled uniformly per video; every one is segmented
ALLOWANCE_GB = 0.75  # activations and label maps of 8 frames (336 px windows), with room to spare
# Declared sizes of the default checkpoints (fp32 files) for planning without downloading them.
_FALLBACK_FP32_GB = {"proxy_clip": 0.60, "vfm": 0.35}
# Options passed on to ProxyCLIP (beta, gamma, mode ...); see dqa.grounding.proxyclip.
_SEG_OPTIONS = ("beta", "gamma", "logit_scale", "prob_thd", "templates", "mode", "short_side", "crop", "stride")


class ProxyCLIPWorker(Worker):
    """Segments the prompt's entities on sampled frames with ProxyCLIP (CLIP + DINOv2 proxy attention) and
    scores entity presence and spatial relations (dqa.grounding.spatial)."""

    name = "proxyclip"
    components = ("spatial",)
    needs_prompt = True
    default_models = {"proxy_clip": "openai/clip-vit-base-patch16", "vfm": "facebook/dinov2-base"}

    def __init__(self, device: str = "cpu", models=None, **options):
        super().__init__(device, models, **options)
        self._seg = None

    def _bytes_per_param(self) -> float:
        return 2.0 if str(self.device).startswith("cuda") else 4.0

    def footprint_gb(self) -> float:
        bpp = self._bytes_per_param()
        return sum(weights_gb(self.models[role], bpp, _FALLBACK_FP32_GB[role] * bpp / 4)
                   for role in ("proxy_clip", "vfm")) + ALLOWANCE_GB

    def _load(self) -> None:
        from dqa.grounding.proxyclip import load_proxyclip

        opts = {k: self.options[k] for k in _SEG_OPTIONS if k in self.options}
        self._seg = load_proxyclip(self.models["proxy_clip"], self.models["vfm"], self.device, **opts)

    def score(self, video: VideoSample, prompt: str) -> list[Score]:
        parsed = parse_prompt(prompt)  # prompt errors first: no model time spent on them
        self.load()
        frames = video.uniform(int(self.options.get("n_frames", N_FRAMES)))
        if len(frames) == 0:
            raise ScoreError("too_few_frames", "the video has no decoded frame")
        from dqa.grounding.proxyclip import BACKGROUND

        names = [e.text for e in parsed.entities]
        # a background name that the prompt asks for ("a cat on a bed") is an entity, not background
        asked = {w for e in parsed.entities for w in (e.query, e.head)}
        background = [b for b in BACKGROUND if b not in asked] or ["background"]
        classes = [background] + [[e.query] for e in parsed.entities]
        labels = self._seg.segment(frames, classes)
        value, details = evaluate(labels, names, parsed.relations)
        return [Score("spatial", value, value, details)]

    def unload(self) -> None:
        self._seg = None
        gc.collect()
        if str(self.device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        super().unload()
