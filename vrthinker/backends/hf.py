"""Qwen2.5-VL through transformers, loaded once and reused, with key/value-cache reuse across turns.

Each turn the whole conversation is rendered and tokenized exactly as the reference does (so the
assistant's earlier replies are re-tokenized from their text), then only the tokens after the longest
prefix shared with the cached sequence are run through the model, with vision features computed once
per image or video. Media come as PIL images (`<|image_pad|>`) and protocol.Clip videos (`<|video_pad|>`)
in placeholder order; when earlier images leave the conversation (window memory) the cache is reused up
to the first changed token.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import re
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

from ..errors import ModelLoadError
from .base import Reply

IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
_PADS = re.compile(re.escape(IMAGE_PAD) + "|" + re.escape(VIDEO_PAD))
# video frames arrive already sized (multiples of 28): bounds wide enough that the processor keeps them
VIDEO_BOUNDS = {"shortest_edge": 3136, "longest_edge": 12845056}


def pick_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device}: CUDA is not available on this machine")
    return device


def pick_dtype(dtype: str | None, device: str):
    import torch

    if dtype in (None, "", "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}[dtype]
    except KeyError:
        raise ModelLoadError(f"--dtype {dtype}: use auto, bfloat16, float16 or float32") from None


def pick_attention(device: str) -> str:
    """flash_attention_2 when the package is importable and we are on CUDA, else PyTorch's sdpa."""
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _hub_access(model: str, revision: str | None) -> dict:
    """Decide before loading whether the hub can be used, so an offline machine fails at once, clearly.

    huggingface_hub retries unreachable hosts for minutes; one quick connection test avoids that.
    """
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(model, "config.json", revision=revision), str)
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        if cached:
            return {"local_files_only": True}
        raise ModelLoadError(f"{model} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
                             "download it first (hf download ID) or pass --model DIR")
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
        return {}
    except OSError:
        if cached:
            return {"local_files_only": True}
        raise ModelLoadError(f"{model} is not in the local Hugging Face cache and {host} cannot be reached: "
                             "download it where there is network (hf download ID) or pass --model DIR") from None


def _looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or Path(model).exists() or model.count("/") != 1


class HFBackend:
    """A loaded Qwen2.5-VL model and processor; `new_session()` starts one conversation."""

    name = "hf"

    def __init__(self, model: Any, processor: Any, model_id: str, reuse_cache: bool = True,
                 generate_kwargs: dict | None = None, revision: str | None = None):
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.revision = revision
        self.reuse_cache = reuse_cache
        self.generate_kwargs = dict(generate_kwargs or {})
        self.loads = 1
        self.batch = True  # run fresh conversations of equal length (both orders) as one batch
        self.features = FeatureCache(self)
        gen = model.generation_config
        # Greedy, as the reference (`do_sample=False`); every other setting (repetition_penalty,
        # eos ids) stays the checkpoint's own.
        self.generation_config = gen.__class__.from_dict(gen.to_dict())
        self.generation_config.do_sample = False
        for k in ("temperature", "top_p", "top_k"):
            setattr(self.generation_config, k, None)
        eos = self.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        if self.generation_config.pad_token_id is None:
            self.generation_config.pad_token_id = processor.tokenizer.pad_token_id

    @classmethod
    def from_pretrained(cls, model: str, *, device: str | None = None, dtype: str | None = None,
                        quantize: str | None = None, device_map: str | dict | None = None,
                        attn_implementation: str | None = None, trust_remote_code: bool = False,
                        revision: str | None = None, adapter: str | None = None,
                        reuse_cache: bool = True, **_: Any) -> "HFBackend":
        """Load model + processor from a hub id or a local dir (bf16 on GPU, fp32 on CPU by default)."""
        if _looks_local(model) and not Path(model).expanduser().is_dir():
            raise ModelLoadError(f"model directory not found: {model}")
        try:
            import torch
            from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
        except ImportError as e:  # pragma: no cover - a broken install
            raise ModelLoadError(f"transformers/torch are not importable: {e}") from None
        dev = pick_device(device)
        kw: dict[str, Any] = dict(dtype=pick_dtype(dtype, dev), revision=revision,
                                  trust_remote_code=trust_remote_code,
                                  attn_implementation=attn_implementation or pick_attention(dev))
        if quantize:
            kw["quantization_config"] = _quant_config(quantize, kw["dtype"])
            device_map = device_map or ("auto" if dev.startswith("cuda") else {"": dev})
        elif dev.startswith("cuda") and device_map is None:
            device_map = "auto" if dev == "cuda" else {"": dev}
        if device_map is not None:
            kw["device_map"] = device_map
        local = _looks_local(model)
        path = str(Path(model).expanduser()) if local else model
        if not local:
            kw.update(_hub_access(model, revision))
        try:
            processor = AutoProcessor.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code,
                                                      local_files_only=kw.get("local_files_only", False))
            net = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, **kw)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"could not load model {model!r}: {first}") from None
        if device_map is None:
            net = net.to(dev)
        if adapter:
            try:
                from peft import PeftModel
            except ImportError:
                raise ModelLoadError("--adapter needs peft: pip install peft") from None
            net = PeftModel.from_pretrained(net, adapter)
        net.eval()
        torch.set_grad_enabled(False)
        return cls(net, processor, model_id=model, reuse_cache=reuse_cache, revision=revision)

    def new_session(self) -> "HFSession":
        return HFSession(self)

    def generate_many(self, sessions, requests, max_new_tokens) -> list[Reply]:
        return generate_many(self, sessions, requests, max_new_tokens)

    def config_for(self, max_new_tokens: int, overrides: dict | None = None):
        """The checkpoint's greedy settings, with a profile's `overrides` (e.g. repetition_penalty 1.0)."""
        gc = copy.deepcopy(self.generation_config)
        for k, v in (overrides or {}).items():
            setattr(gc, k, v)
        gc.max_new_tokens = max_new_tokens
        gc.return_dict_in_generate = True
        return gc

    def video_inputs(self, clips: Sequence[Any]) -> dict:
        """Processor arguments that take `clips` as given (no frame sampling, no resizing) at their fps."""
        from transformers.video_utils import VideoMetadata

        return {"videos": [list(c.frames) for c in clips], "videos_kwargs": {
            "size": VIDEO_BOUNDS, "do_sample_frames": False, "cap_pixels_per_frame": False,
            "video_metadata": [VideoMetadata(total_num_frames=len(c.frames), fps=c.fps) for c in clips]}}


def _quant_config(quantize: str, compute_dtype):
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(f"--quantize {quantize} needs bitsandbytes: pip install 'vrthinker[quant]'")
    from transformers import BitsAndBytesConfig

    # The vision tower (~0.7B of 8.3B) and the output head stay unquantized: they are small, and
    # quantizing the vision tower costs visual fidelity, which is what a video judge needs.
    skip = ["model.visual", "visual", "lm_head"]  # matched from the start of module names
    if quantize == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", llm_int8_skip_modules=skip,
                                  bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_use_double_quant=True)
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    raise ModelLoadError(f"--quantize {quantize}: use 4bit or 8bit")


class FeatureCache:
    """Vision-tower outputs by image content (sha256 of the RGB bytes), least recently used first out.

    Both orders of a pair, and every pair a video appears in, show the same frames: each is encoded once.
    """

    def __init__(self, backend: "HFBackend", capacity: int = 256):
        self.b = backend
        self.capacity = capacity
        self.items: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self.encoded = 0  # images run through the vision tower

    @staticmethod
    def _key(im: Any) -> str:
        return hashlib.sha256(im.tobytes()).hexdigest() + f"{im.size}{im.mode}"

    def get_clip(self, clip: Any) -> tuple[Any, Any, float]:
        """(features, video_grid_thw row, seconds per temporal grid step) of one video clip."""
        key = "video:" + "".join(self._key(f) for f in clip.frames) + f"@{clip.fps}"
        if key not in self.items:
            m, vp = self.b.model, self.b.processor.video_processor
            kw = self.b.video_inputs([clip])
            out = vp(videos=kw["videos"], return_tensors="pt",
                     **{k: v for k, v in kw["videos_kwargs"].items() if k != "video_metadata"})
            grid = out["video_grid_thw"].to(m.device)
            feats = m.model.get_video_features(out["pixel_values_videos"].to(m.device), grid,
                                               return_dict=True).pooler_output
            self.items[key] = (feats[0], grid[0], vp.temporal_patch_size / clip.fps)
            self.encoded += len(clip.frames)
        self.items.move_to_end(key)
        return self.items[key]

    def get(self, images: Sequence[Any]) -> list[tuple[Any, Any]]:
        """(features, grid_thw row) per image; the missing ones go through the vision tower in one batch."""
        keys = [self._key(im) for im in images]
        missing = list(dict.fromkeys(k for k in keys if k not in self.items))
        if missing:
            m = self.b.model
            first = {k: im for k, im in zip(keys, images) if k in missing}
            out = self.b.processor.image_processor(images=[first[k] for k in missing], return_tensors="pt")
            grid = out["image_grid_thw"].to(m.device)
            feats = m.model.get_image_features(out["pixel_values"].to(m.device), grid,
                                               return_dict=True).pooler_output
            for k, f, g in zip(missing, feats, grid):
                self.items[k] = (f, g)
            self.encoded += len(missing)
        result = []
        for k in keys:
            self.items.move_to_end(k)
            result.append(self.items[k])
        while len(self.items) > max(self.capacity, len(set(keys))):
            self.items.popitem(last=False)
        return result


class HFSession:
    """One conversation's cache: token ids whose keys/values are held, and per-item vision features."""

    def __init__(self, backend: HFBackend):
        self.b = backend
        self.cache = None  # transformers DynamicCache
        self.cached_ids: list[int] = []  # token ids whose keys/values are in self.cache
        self.media_ids: list[int] = []  # id() of each image / clip whose features are held
        self.vision: list[tuple[str, Any, Any, float]] = []  # (kind, features, grid_thw, s/grid) per item
        self.rope_deltas = None
        self.generation: dict = {}  # a profile's decoding settings over the checkpoint's

    def set_generation(self, overrides: dict) -> None:
        self.generation = dict(overrides)

    @property
    def grids(self) -> list[Any]:
        """image_grid_thw rows of the images held, in order."""
        return [g for kind, _, g, _ in self.vision if kind == "image"]

    def _encode_media(self, media: Sequence[Any]) -> None:
        """Vision features for the items after the unchanged prefix (from the backend's feature cache)."""
        keep = 0
        while keep < min(len(media), len(self.media_ids)) and id(media[keep]) == self.media_ids[keep]:
            keep += 1
        del self.media_ids[keep:], self.vision[keep:]
        new = list(media[keep:])
        images = iter(self.b.features.get([x for x in new if not _is_clip(x)]))
        for x in new:
            if _is_clip(x):
                self.vision.append(("video", *self.b.features.get_clip(x)))
            else:
                self.vision.append(("image", *next(images), 0.0))
        self.media_ids.extend(id(x) for x in new)

    def _tokenize(self, rendered: str) -> list[int]:
        """Expand each image / video placeholder to its vision-token count and tokenize, as the processor does."""
        proc = self.b.processor
        merge = proc.image_processor.merge_size ** 2
        pads = _PADS.findall(rendered)
        kinds = ["image" if p == IMAGE_PAD else "video" for p in pads]
        if kinds != [kind for kind, *_ in self.vision]:
            raise ValueError(f"placeholders {kinds} do not match the media given {[k for k, *_ in self.vision]}")
        parts = _PADS.split(rendered)
        pieces = [parts[0]]
        for pad, (_, _, g, _), rest in zip(pads, self.vision, parts[1:]):
            pieces.append(pad * int(g.prod() // merge))
            pieces.append(rest)
        return proc.tokenizer("".join(pieces), add_special_tokens=False)["input_ids"]

    def prepare(self, messages: list[dict], media: Sequence[Any]) -> dict:
        """Render, tokenize and find how much of the cache still holds: everything `generate` needs."""
        rendered = self.b.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        self._encode_media(media)
        ids = self._tokenize(rendered)
        # longest common prefix with what the cache holds, never cutting into an image's or video's tokens
        reuse = 0
        limit = min(len(ids), len(self.cached_ids))
        while reuse < limit and ids[reuse] == self.cached_ids[reuse]:
            reuse += 1
        reuse = min(reuse, len(ids) - 1)  # at least one token must be fed to get logits
        c = self.b.model.config
        vision = {c.image_token_id, c.video_token_id}
        while reuse > 0 and ids[reuse] in vision and ids[reuse - 1] == ids[reuse]:
            reuse -= 1
        n_cached = sum(1 for i in range(reuse) if ids[i] in vision and (i == 0 or ids[i - 1] != ids[i]))
        if reuse == 0 or self.cache is None:
            reuse, n_cached = 0, 0
        return {"rendered": rendered, "ids": ids, "reuse": reuse, "n_cached_images": n_cached}

    def token_types(self, input_ids):
        """mm_token_type_ids: 1 for image tokens, 2 for video tokens, 0 for text."""
        c = self.b.model.config
        return (input_ids == c.image_token_id).int() + 2 * (input_ids == c.video_token_id).int()

    def generate(self, messages: list[dict], images: Sequence[Any], max_new_tokens: int) -> Reply:
        if not self.b.reuse_cache:
            return self._generate_full(messages, images, max_new_tokens)
        import torch

        t0 = time.perf_counter()
        m = self.b.model
        p = self.prepare(messages, images)
        ids, reuse = p["ids"], p["reuse"]
        if reuse == 0:
            self.cache = None
        else:
            self.cache.crop(reuse - self.cache.get_seq_length())
        input_ids = torch.tensor([ids], device=m.device)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "mm_token_type_ids": self.token_types(input_ids), "past_key_values": self.cache,
            "generation_config": self.b.config_for(max_new_tokens, self.generation),
            **vision_kwargs(self.vision, p["n_cached_images"], m.device)}
        # The model keeps rope deltas as state, valid only for the sequence they came from (another
        # session's, or this one before window memory dropped images): generate recomputes them.
        m.model.rope_deltas = None
        out = m.generate(**kwargs, **self.b.generate_kwargs)
        self.rope_deltas = m.model.rope_deltas
        seq = out.sequences[0].tolist()
        self.cache = out.past_key_values
        self.cached_ids = seq[: self.cache.get_seq_length()]
        return self._reply(seq[len(ids):], max_new_tokens, p["rendered"], len(ids) - reuse, reuse, t0)

    def _generate_full(self, messages: list[dict], media: Sequence[Any], max_new_tokens: int) -> Reply:
        """The reference's way: re-render and re-encode everything, images included, every turn."""
        t0 = time.perf_counter()
        proc, m = self.b.processor, self.b.model
        rendered = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images = [x for x in media if not _is_clip(x)]
        clips = [x for x in media if _is_clip(x)]
        inputs = proc(text=[rendered], images=images or None, return_tensors="pt", padding=True,
                      **(self.b.video_inputs(clips) if clips else {})).to(m.device)
        out = m.generate(**inputs, generation_config=self.b.config_for(max_new_tokens, self.generation),
                         **self.b.generate_kwargs)
        n = inputs["input_ids"].shape[1]
        return self._reply(out.sequences[0, n:].tolist(), max_new_tokens, rendered, n, 0, t0)

    def _reply(self, new: list[int], max_new_tokens: int, rendered: str, prefill: int, reused: int,
               t0: float, seconds: float | None = None) -> Reply:
        eos = next((k for k, t in enumerate(new) if t in self.b.eos_ids), None)
        if eos is not None:
            new = new[: eos + 1]  # a batched row may run on (padding) after its own end
        stopped = "eos" if eos is not None else ("length" if len(new) >= max_new_tokens else "eos")
        text = self.b.processor.tokenizer.decode(new, skip_special_tokens=True)
        return Reply(text=text, new_tokens=len(new), stopped=stopped, rendered=rendered,
                     prefill_tokens=prefill, reused_tokens=reused,
                     seconds=time.perf_counter() - t0 if seconds is None else seconds)


def _is_clip(x: Any) -> bool:
    """A video item (protocol.Clip: frames shown as one `<|video_pad|>`), as opposed to a PIL image."""
    return hasattr(x, "frames")


def vision_kwargs(vision: Sequence[tuple[str, Any, Any, float]], n_cached: int, device) -> dict:
    """generate() arguments for a sequence's media: the grids of all, the encoder outputs of the uncached."""
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    kw: dict[str, Any] = {}
    images = [v for v in vision if v[0] == "image"]
    videos = [v for v in vision if v[0] == "video"]
    if images:
        kw["image_grid_thw"] = torch.stack([g for _, _, g, _ in images])
    if videos:
        kw["video_grid_thw"] = torch.stack([g for _, _, g, _ in videos])
        kw["second_per_grid_ts"] = torch.tensor([s for *_, s in videos], device=device)
    encoded = {}
    for kind in ("image", "video"):
        feats = tuple(f for k, f, _, _ in vision[n_cached:] if k == kind)
        if feats:
            encoded[kind] = BaseModelOutputWithPooling(pooler_output=feats)
    if encoded:
        kw["mm_encoder_outputs"] = encoded
    return kw


def generate_many(backend: HFBackend, sessions: Sequence[HFSession], requests: Sequence[tuple[list, list]],
                  max_new_tokens: Sequence[int]) -> list[Reply]:
    """One batched `generate` for fresh conversations of equal token length (e.g. both orders of a
    pair: same text, same image sizes); otherwise one conversation after the other."""
    import torch

    def one_by_one() -> list[Reply]:
        return [s.generate(m, im, n) for s, (m, im), n in zip(sessions, requests, max_new_tokens)]

    if not backend.batch or len(sessions) < 2 or not backend.reuse_cache or len(set(max_new_tokens)) > 1 \
            or any(s.cache is not None or s.generation != sessions[0].generation for s in sessions):
        return one_by_one()
    t0 = time.perf_counter()
    preps = [s.prepare(m, im) for s, (m, im) in zip(sessions, requests)]
    if len({len(p["ids"]) for p in preps}) > 1:
        return one_by_one()
    m = backend.model
    input_ids = torch.tensor([p["ids"] for p in preps], device=m.device)
    m.model.rope_deltas = None
    out = m.generate(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
        mm_token_type_ids=sessions[0].token_types(input_ids),
        **vision_kwargs([v for s in sessions for v in s.vision], 0, m.device),
        generation_config=backend.config_for(max_new_tokens[0], sessions[0].generation),
        **backend.generate_kwargs)
    seconds = (time.perf_counter() - t0) / len(sessions)
    n = input_ids.shape[1]
    replies = []
    for b, (s, p) in enumerate(zip(sessions, preps)):
        cache = out.past_key_values if b == len(sessions) - 1 else copy.deepcopy(out.past_key_values)
        cache.batch_select_indices(torch.tensor([b], device=m.device))
        seq = out.sequences[b].tolist()
        s.cache, s.cached_ids = cache, seq[: cache.get_seq_length()]
        s.rope_deltas = m.model.rope_deltas[b:b + 1]
        replies.append(s._reply(seq[n:], max_new_tokens[0], p["rendered"], n, 0, t0, seconds))
    return replies
