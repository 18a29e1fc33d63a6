"""ProxyCLIP (Lan et al., ECCV 2024, arXiv 2408.04883): training-free open-vocabulary segmentation.

CLIP knows what things are but localises them poorly; a vision foundation model (here DINOv2) has
spatially coherent patch features but no text. ProxyCLIP keeps CLIP's last vision block but replaces its
attention weights with "proxy attention" computed from the VFM's patch-feature similarities, applied to
CLIP's own values; the resulting per-patch CLIP embeddings are compared with text embeddings of the
class names. Follows the official code (github.com/mc-lan/ProxyCLIP, proxyclip_segmentor.py and
open_clip/transformer.py `custom_attn`): constants, templates, background names and sliding windows.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# Official defaults (ProxyCLIPSegmentation.__init__): proxy-attention shift and scale, the logit scale
# applied before the softmax over classes, and the sliding window (336 crops, stride 112) on images
# resized to a 336 px short side (the configs' `Resize scale=(2048, 336)`).
BETA, GAMMA, LOGIT_SCALE = 1.2, 3.0, 40.0
PROB_THD = 0.25  # cfg_coco_object.py: object classes + background names, the setting closest to ours
SHORT_SIDE, CROP, STRIDE = 336, 336, 112

# configs/cls_coco_object.txt, first line: the names that together make class 0 (background).
BACKGROUND = ("sky", "wall", "tree", "wood", "grass", "road", "sea", "river", "mountain", "sands", "desk", "bed",
              "building", "cloud", "floor", "hill", "rail")

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the VFM's normalisation

# prompts/imagenet_template.py: openai_imagenet_template (the one the segmentor uses) and the 7-template
# subset (sub_imagenet_template, 11x fewer text passes).
_IMAGENET80 = """a bad photo of a {}.|a photo of many {}.|a sculpture of a {}.|a photo of the hard to see {}.|
a low resolution photo of the {}.|a rendering of a {}.|graffiti of a {}.|a bad photo of the {}.|
a cropped photo of the {}.|a tattoo of a {}.|the embroidered {}.|a photo of a hard to see {}.|
a bright photo of a {}.|a photo of a clean {}.|a photo of a dirty {}.|a dark photo of the {}.|a drawing of a {}.|
a photo of my {}.|the plastic {}.|a photo of the cool {}.|a close-up photo of a {}.|
a black and white photo of the {}.|a painting of the {}.|a painting of a {}.|a pixelated photo of the {}.|
a sculpture of the {}.|a bright photo of the {}.|a cropped photo of a {}.|a plastic {}.|a photo of the dirty {}.|
a jpeg corrupted photo of a {}.|a blurry photo of the {}.|a photo of the {}.|a good photo of the {}.|
a rendering of the {}.|a {} in a video game.|a photo of one {}.|a doodle of a {}.|a close-up photo of the {}.|
a photo of a {}.|the origami {}.|the {} in a video game.|a sketch of a {}.|a doodle of the {}.|a origami {}.|
a low resolution photo of a {}.|the toy {}.|a rendition of the {}.|a photo of the clean {}.|
a photo of a large {}.|a rendition of a {}.|a photo of a nice {}.|a photo of a weird {}.|a blurry photo of a {}.|
a cartoon {}.|art of a {}.|a sketch of the {}.|a embroidered {}.|a pixelated photo of a {}.|itap of the {}.|
a jpeg corrupted photo of the {}.|a good photo of a {}.|a plushie {}.|a photo of the nice {}.|
a photo of the small {}.|a photo of the weird {}.|the cartoon {}.|art of the {}.|a drawing of the {}.|
a photo of the large {}.|a black and white photo of a {}.|the plushie {}.|a dark photo of a {}.|itap of a {}.|
graffiti of the {}.|a toy {}.|itap of my {}.|a photo of a cool {}.|a photo of a small {}.|a tattoo of the {}."""
TEMPLATES = {
    "imagenet80": tuple(t.strip() for t in _IMAGENET80.replace("\n", "").split("|")),
    "imagenet7": ("itap of a {}.", "a bad photo of a {}.", "a origami {}.", "a photo of the large {}.",
                  "a {} in a video game.", "art of the {}.", "a photo of the small {}."),
    "photo": ("a photo of a {}.",),
}


def proxy_weights(vfm_feats: torch.Tensor, beta: float = BETA, gamma: float = GAMMA) -> torch.Tensor:
    """Proxy attention [B, N, N] from VFM patch features [B, C, H, W] (N = H*W), as `custom_attn`:
    cosine similarity, shifted by beta x its mean and scaled by gamma, negatives masked, softmax per row.

    The official code takes the mean over its whole batch, which is one crop; here it is per image, the
    same thing. A row left with nothing (only when nearly all features are identical, e.g. a black frame)
    would be NaN there; here such a row keeps its unmasked scaled similarities instead.
    """
    f = F.normalize(vfm_feats.float().flatten(2), dim=1)  # [B, C, N]
    sim = torch.einsum("bcm,bcn->bmn", f, f)
    sim = (sim - sim.mean(dim=(1, 2), keepdim=True) * beta) * gamma
    masked = sim < 0
    masked &= ~masked.all(dim=-1, keepdim=True)
    return sim.masked_fill(masked, float("-inf")).softmax(dim=-1)


def proxy_attention(values: torch.Tensor, clip_grid: tuple[int, int], weights: torch.Tensor,
                    vfm_grid: tuple[int, int]) -> torch.Tensor:
    """Attention output [B, H*W, D]: CLIP's patch values [B, h*w, D] resized (bilinear) to the VFM grid
    (H, W), then mixed by the proxy weights [B, H*W, H*W]. Every head shares the weights, so the head
    split of the official code does not change the result and is skipped."""
    b, _, d = values.shape
    (h, w), (hh, ww) = clip_grid, vfm_grid
    v = values.transpose(1, 2).reshape(b, d, h, w)
    if (h, w) != (hh, ww):
        v = F.interpolate(v, size=(hh, ww), mode="bilinear", align_corners=False)
    return torch.bmm(weights.to(v.dtype), v.flatten(2).transpose(1, 2))


class ProxyCLIP:
    """A CLIP model (transformers CLIPModel) and a VFM (Dinov2Model or Dinov2WithRegistersModel) used as
    ProxyCLIP; `segment` turns frames and class names into label maps.

    mode "slide": the official inference (short side resized to 336, 336x336 windows at stride 112,
    logits averaged where windows overlap). mode "whole": one pass over the resized frame, each model's
    input rounded to its patch size (a few pixels of aspect change), the CLIP values resized to the VFM
    grid as in the official code. Both return label maps at the frame's own size.
    """

    def __init__(self, clip, vfm, tokenizer, *, beta: float = BETA, gamma: float = GAMMA,
                 logit_scale: float = LOGIT_SCALE, prob_thd: float = PROB_THD, templates: str = "imagenet80",
                 mode: str = "slide", short_side: int = SHORT_SIDE, crop: int = CROP, stride: int = STRIDE):
        if mode not in ("slide", "whole"):
            raise ValueError(f"mode must be 'slide' or 'whole', not {mode!r}")
        if templates not in TEMPLATES:
            raise ValueError(f"templates must be one of {sorted(TEMPLATES)}, not {templates!r}")
        self.clip, self.vfm, self.tokenizer = clip.eval(), vfm.eval(), tokenizer
        self.beta, self.gamma, self.logit_scale, self.prob_thd = beta, gamma, logit_scale, prob_thd
        self.templates = TEMPLATES[templates]
        self.mode, self.short_side, self.crop, self.stride = mode, short_side, crop, stride
        p = next(clip.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.clip_patch = clip.config.vision_config.patch_size
        self.vfm_patch = vfm.config.patch_size
        self.vfm_skip = 1 + int(getattr(vfm.config, "num_register_tokens", 0) or 0)  # CLS (+ registers)
        self._text: dict[str, torch.Tensor] = {}

    # ---- text ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def text_features(self, names: Sequence[str]) -> torch.Tensor:
        """Unit text embeddings [len(names), D]: each name through every template, the unit embeddings
        averaged and renormalised (as the official code). Cached per name."""
        todo = [n for n in dict.fromkeys(names) if n not in self._text]
        if todo:
            texts = [t.format(n) for n in todo for t in self.templates]
            max_len = self.clip.config.text_config.max_position_embeddings
            feats = []
            for i in range(0, len(texts), 256):
                tok = self.tokenizer(texts[i:i + 256], padding=True, truncation=True, max_length=max_len,
                                     return_tensors="pt").to(self.device)
                out = self.clip.text_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
                feats.append(F.normalize(self.clip.text_projection(out.pooler_output).float(), dim=-1))
            per_name = torch.cat(feats).view(len(todo), len(self.templates), -1)
            for n, f in zip(todo, F.normalize(per_name.mean(1), dim=-1)):
                self._text[n] = f
        return torch.stack([self._text[n] for n in names])

    # ---- image ---------------------------------------------------------------------------------------
    def _resize(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        # plain bilinear, no antialiasing: what mmseg's Resize (cv2 INTER_LINEAR) gives the official code
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def _fit(self, x: torch.Tensor, patch: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self._resize(x, (max(patch, round(h / patch) * patch), max(patch, round(w / patch) * patch)))

    @staticmethod
    def _norm(x: torch.Tensor, mean, std) -> torch.Tensor:
        m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - m) / s

    @torch.inference_mode()
    def vfm_features(self, images: torch.Tensor) -> torch.Tensor:
        """VFM patch features [B, C, H, W] of RGB images in [0, 1] [B, 3, h, w] (sides multiples of its
        patch): the final-layernorm patch tokens, as DINOv2's get_intermediate_layers(norm=True)."""
        x = self._norm(images, IMAGENET_MEAN, IMAGENET_STD).to(self.dtype)
        tokens = self.vfm(pixel_values=x).last_hidden_state[:, self.vfm_skip:]
        hh, ww = images.shape[-2] // self.vfm_patch, images.shape[-1] // self.vfm_patch
        return tokens.transpose(1, 2).reshape(len(x), -1, hh, ww)

    @torch.inference_mode()
    def dense_features(self, clip_images: torch.Tensor, vfm_images: torch.Tensor) -> torch.Tensor:
        """Unit per-patch CLIP embeddings [B, D, H, W] on the VFM grid.

        CLIP runs normally up to its last block; there, the layer-normed input goes through the value
        projection only, proxy attention mixes the values, then the output projection. The residual and
        the MLP of that block are skipped (as `custom_attn`), then post-layernorm and visual projection.
        """
        vm = self.clip.vision_model
        x = self._norm(clip_images, CLIP_MEAN, CLIP_STD).to(self.dtype)
        h, w = x.shape[-2] // self.clip_patch, x.shape[-1] // self.clip_patch
        hidden = vm.pre_layrnorm(vm.embeddings(x, interpolate_pos_encoding=True))
        for layer in vm.encoder.layers[:-1]:
            hidden = layer(hidden, None)
        last = vm.encoder.layers[-1]
        values = last.self_attn.v_proj(last.layer_norm1(hidden))[:, 1:]  # patch tokens, CLS dropped
        ex = self.vfm_features(vfm_images)
        weights = proxy_weights(ex, self.beta, self.gamma)
        out = proxy_attention(values, (h, w), weights, tuple(ex.shape[-2:]))
        out = self.clip.visual_projection(vm.post_layernorm(last.self_attn.out_proj(out)))
        out = F.normalize(out.float(), dim=-1)
        return out.transpose(1, 2).reshape(len(x), -1, *ex.shape[-2:])

    def _logits(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Cosine logits [B, Q, h, w] at the size of `images` [B, 3, h, w] (one window or whole frame)."""
        feats = self.dense_features(self._fit(images, self.clip_patch), self._fit(images, self.vfm_patch))
        logits = torch.einsum("bdhw,qd->bqhw", feats, text)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def _slide(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """forward_slide of the official code: overlapping windows, logits averaged over the overlaps."""
        _, _, h, w = images.shape
        crop, stride = self.crop, self.stride
        preds = images.new_zeros((len(images), len(text), h, w), dtype=torch.float32)
        count = images.new_zeros((1, 1, h, w), dtype=torch.float32)
        for hi in range(max(h - crop + stride - 1, 0) // stride + 1):
            for wi in range(max(w - crop + stride - 1, 0) // stride + 1):
                y2, x2 = min(hi * stride + crop, h), min(wi * stride + crop, w)
                y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
                preds[:, :, y1:y2, x1:x2] += self._logits(images[:, :, y1:y2, x1:x2], text)
                count[:, :, y1:y2, x1:x2] += 1
        return preds / count

    @torch.inference_mode()
    def segment(self, frames: np.ndarray, classes: Sequence[Sequence[str]]) -> np.ndarray:
        """Label maps [T, H, W] (int64) for RGB uint8 frames [T, H, W, 3]: the class (index into `classes`,
        each a list of names, as a line of the official class files) with the highest probability; class 0
        also where no class reaches `prob_thd` (so class 0 should be the background)."""
        names = [n for group in classes for n in group]
        group = torch.tensor([k for k, g in enumerate(classes) for _ in g], device=self.device)
        text = self.text_features(names)
        t, fh, fw = frames.shape[:3]
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float() / 255
        scale = self.short_side / min(fh, fw)
        x = self._resize(x, (max(1, round(fh * scale)), max(1, round(fw * scale))))
        logits = self._slide(x, text) if self.mode == "slide" else self._logits(x, text)
        labels = np.empty((t, fh, fw), np.int64)
        for i in range(t):  # one frame at a time at full size: [Q, H, W] floats, not [T, Q, H, W]
            lg = F.interpolate(logits[i:i + 1], size=(fh, fw), mode="bilinear", align_corners=False)[0]
            prob = (lg * self.logit_scale).softmax(0)
            per_class = torch.stack([prob[group == k].amax(0) for k in range(len(classes))])  # max over names
            best, label = per_class.max(0)
            label[best < self.prob_thd] = 0
            labels[i] = label.cpu().numpy()
        return labels


def load_proxyclip(clip_source: str, vfm_source: str, device: str = "cpu", dtype: torch.dtype | None = None,
                   **options) -> ProxyCLIP:
    """Load CLIP (CLIPModel + its tokenizer) and the VFM (AutoModel: DINOv2, with or without registers)
    from hub ids or local dirs; ModelLoadError with one line when either cannot be had."""
    from transformers import AutoModel, AutoTokenizer, CLIPModel

    from vrthinker.errors import ModelLoadError

    from dqa.workers.base import source_kwargs

    dtype = dtype or (torch.float16 if str(device).startswith("cuda") else torch.float32)
    clip_path, clip_kw = source_kwargs(clip_source)
    vfm_path, vfm_kw = source_kwargs(vfm_source)
    try:
        clip = CLIPModel.from_pretrained(clip_path, dtype=dtype, **clip_kw).to(device)
        tokenizer = AutoTokenizer.from_pretrained(clip_path, **clip_kw)
        vfm = AutoModel.from_pretrained(vfm_path, dtype=dtype, **vfm_kw).to(device)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"ProxyCLIP models could not be loaded ({clip_source}, {vfm_source}): "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not hasattr(vfm.config, "patch_size") or "dinov2" not in vfm.config.model_type:
        raise ModelLoadError(f"{vfm_source} is a {vfm.config.model_type} model; ProxyCLIP here takes DINOv2")
    return ProxyCLIP(clip, vfm, tokenizer, **options)
