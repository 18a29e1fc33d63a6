"""Our own token count of a conversation, as the checkpoint's processor makes it, without torch.

Only the tokenizer (transformers' AutoTokenizer: the `client` extra, no torch), the chat template and the
image processor's few sizes (preprocessor_config.json, read as JSON) are needed: each image or clip becomes a
known number of pad tokens, computed here with the processor's own sizing rule.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vrthinker.backends.openai.cache import Budget

IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
_PADS = re.compile(re.escape(IMAGE_PAD) + "|" + re.escape(VIDEO_PAD))
# video frames arrive already sized (multiples of 28): bounds wide enough that they pass unchanged (as hf.py)
VIDEO_BOUNDS = (3136, 12845056)
SETTINGS = ("repetition_penalty", "top_k", "min_p")  # greedy-relevant settings beyond temperature/top_p
# Qwen2-VL's image processor when its config names no size
DEFAULT_IMAGE_BOUNDS = (56 * 56, 28 * 28 * 1280)
PIECES_BYTES = 8 * 2**20  # a renderer's own budget for its pieces when it shares none (a backend's is shared)


def processor_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """transformers' Qwen2-VL image processor's smart_resize, line for line (a test compares the two): the size
    the server's processor gives an image. It differs from qwen_vl_utils' (vrthinker.media.frame_grid) only for
    images thinner than the factor, which it may size to other multiples."""
    ratio = max(height, width) / min(height, width)
    if ratio > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {ratio}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class Vision:
    """The image processor's sizes that decide how many pad tokens an image or clip becomes."""

    patch: int = 14
    merge: int = 2
    temporal: int = 2
    image_bounds: tuple[int, int] = DEFAULT_IMAGE_BOUNDS

    @classmethod
    def from_config(cls, image: dict, video: dict | None = None) -> "Vision":
        """From preprocessor_config.json (and video_preprocessor_config.json where there is one), read as the
        image processor reads them: `min_pixels` / `max_pixels` override `size`'s shortest / longest edge."""
        size = dict(image.get("size") or {})
        lo = image.get("min_pixels", size.get("shortest_edge", DEFAULT_IMAGE_BOUNDS[0]))
        hi = image.get("max_pixels", size.get("longest_edge", DEFAULT_IMAGE_BOUNDS[1]))
        temporal = (video or {}).get("temporal_patch_size", image.get("temporal_patch_size", 2))
        return cls(patch=int(image.get("patch_size", 14)), merge=int(image.get("merge_size", 2)),
                   temporal=int(temporal), image_bounds=(int(lo), int(hi)))

    @classmethod
    def from_processor(cls, processor: Any) -> "Vision":
        """From a loaded transformers processor (the in-process path; needs torchvision for Qwen2.5-VL)."""
        ip = processor.image_processor
        size = getattr(ip, "size", None) or {}
        return cls(patch=ip.patch_size, merge=ip.merge_size,
                   temporal=getattr(getattr(processor, "video_processor", None), "temporal_patch_size", 2),
                   image_bounds=(size.get("shortest_edge", getattr(ip, "min_pixels", 3136)),
                                 size.get("longest_edge", getattr(ip, "max_pixels", 12845056))))

    def grid(self, w: int, h: int, bounds: tuple[int, int]) -> int:
        rh, rw = processor_resize(h, w, self.patch * self.merge, bounds[0], bounds[1])
        return (rh // self.patch) * (rw // self.patch)


def is_clip(x: Any) -> bool:
    return hasattr(x, "frames")


class Renderer:
    """Our own rendering of a conversation into token ids, as the checkpoint's processor makes them."""

    def __init__(self, tokenizer: Any, vision: Vision, chat_template: str | None = None, cache: Budget | None = None):
        self.tokenizer = tokenizer
        self.cache = cache if cache is not None else Budget(PIECES_BYTES)  # the text's pieces' ids, by text
        self.vision = vision
        self.chat_template = chat_template  # None: the tokenizer's own
        tok = tokenizer
        self.pad_ids = {p: tok.convert_tokens_to_ids(p) for p in (IMAGE_PAD, VIDEO_PAD)}
        added = {t.content: t for t in getattr(tok, "added_tokens_decoder", {}).values()}
        # piece by piece only where that gives the same ids: each pad one special token that keeps the
        # whitespace beside it (an lstrip/rstrip token would take it from the text around it)
        self._piecewise = all(p in added and added[p].special and not added[p].lstrip and not added[p].rstrip
                              and tok.convert_ids_to_tokens(self.pad_ids[p]) == p for p in self.pad_ids)

    @classmethod
    def from_processor(cls, processor: Any) -> "Renderer":
        return cls(processor.tokenizer, Vision.from_processor(processor), getattr(processor, "chat_template", None))

    def pads(self, item: Any) -> int:
        """How many `<|image_pad|>` / `<|video_pad|>` tokens one image or clip becomes."""
        v = self.vision
        m2 = v.merge ** 2
        if is_clip(item):
            w, h = item.frames[0].size
            return math.ceil(len(item.frames) / v.temporal) * v.grid(w, h, VIDEO_BOUNDS) // m2
        w, h = item.size
        return v.grid(w, h, v.image_bounds) // m2

    def ids(self, messages: list[dict], media: Sequence[Any]) -> list[int]:
        return self.render(messages, media)[1]

    def count(self, text: str) -> int:
        """Tokens in a reply's text."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, messages: list[dict], media: Sequence[Any]) -> tuple[str, list[int]]:
        """(the rendered conversation, its token ids with each placeholder expanded to its pad tokens).

        The text between placeholders is tokenized piece by piece, each piece once per renderer (a later
        turn re-tokenizes only what it added): the pads are special tokens, which the tokenizer splits off
        before tokenizing the text around them, so the ids are those of tokenizing the whole expanded text at
        once (`whole_ids`, still used for a tokenizer whose pad tokens would strip the whitespace beside them)."""
        rendered = self.rendered(messages)
        parts = _PADS.split(rendered)
        pads = _PADS.findall(rendered)
        if len(pads) != len(media):
            raise ValueError(f"{len(pads)} placeholders for {len(media)} media")
        if not self._piecewise:
            return rendered, self.whole_ids(parts, pads, media)
        ids = list(self._piece(parts[0]))
        for pad, item, rest in zip(pads, media, parts[1:]):
            ids += [self.pad_ids[pad]] * self.pads(item)
            ids += self._piece(rest)
        return rendered, ids

    def whole_ids(self, parts: list[str], pads: list[str], media: Sequence[Any]) -> list[int]:
        pieces = [parts[0]]
        for pad, item, rest in zip(pads, media, parts[1:]):
            pieces += [pad * self.pads(item), rest]
        return self.tokenizer("".join(pieces), add_special_tokens=False)["input_ids"]

    def _piece(self, text: str) -> tuple[int, ...]:
        key = ("piece", id(self), text)
        ids = self.cache.get(key)
        if ids is None:
            ids = tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            self.cache.put(key, ids, 40 * len(ids) + 64 + len(text))  # a tuple of int objects, and its text
        return ids

    def rendered(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=True)


def source_file(src: str, name: str) -> Path | None:
    """`name` from a checkpoint: a local dir, else the hub's cache (or the hub itself unless offline)."""
    local = Path(src)
    if local.is_dir():
        return local / name if (local / name).is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(src, name))
    except Exception:  # noqa: BLE001 - any failure means: this source has no such file
        return None


def _json(src: str, name: str) -> dict | None:
    path = source_file(src, name)
    if path is None:
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def processor_chat_template(src: str) -> str | None:
    """The processor's own chat template (chat_template.jinja, else chat_template.json), which the processor
    prefers to the tokenizer's; None where the checkpoint has neither."""
    path = source_file(src, "chat_template.jinja")
    if path is not None:
        return path.read_text(encoding="utf-8")
    data = _json(src, "chat_template.json")
    return data.get("chat_template") if data else None


def processor_vision(src: str) -> Vision | None:
    """The image (and video) processor's sizes: preprocessor_config.json (and video_preprocessor_config.json),
    else the nested processor_config.json that transformers 5 saves; None where the checkpoint has neither."""
    image = _json(src, "preprocessor_config.json")
    video = _json(src, "video_preprocessor_config.json")
    if image is None:
        nested = _json(src, "processor_config.json") or {}
        image = nested.get("image_processor")
        video = video or nested.get("video_processor")
    return Vision.from_config(image, video) if isinstance(image, dict) else None


def load_renderer(sources: Sequence[str], cache: Budget | None = None) -> tuple[Renderer | None, dict, str]:
    """(renderer, the checkpoint's generation settings, where they came from) from the first source whose
    tokenizer and image-processor config load (a local dir, or a hub id already cached / reachable);
    (None, {}, "") if none does. Needs transformers' tokenizer only: no torch, no torchvision."""
    for src in dict.fromkeys(s for s in sources if s):
        try:
            vision = processor_vision(src)
            if vision is None:  # no checkpoint files here: transformers is not even imported
                continue
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(src)
            template = processor_chat_template(src) or getattr(tok, "chat_template", None)
            if not template:
                continue
            renderer = Renderer(tok, vision, template, cache)
            gen = _json(src, "generation_config.json") or {}
            return renderer, {k: gen[k] for k in SETTINGS if gen.get(k) is not None}, src
        except Exception:  # noqa: BLE001 - any failure means: this source has no usable tokenizer
            continue
    return None, {}, ""
