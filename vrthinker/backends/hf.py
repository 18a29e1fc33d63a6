"""Qwen2.5-VL through transformers, loaded once and reused, with key/value-cache reuse across turns.

Each turn the whole conversation is rendered and tokenized exactly as the reference does (so the
assistant's earlier replies are re-tokenized from their text), then only the tokens after the longest
prefix shared with the cached sequence are run through the model, with vision features computed once
per image.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

from ..errors import ModelLoadError
from .base import Reply

IMAGE_PAD = "<|image_pad|>"


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

    def config_for(self, max_new_tokens: int):
        gc = copy.deepcopy(self.generation_config)
        gc.max_new_tokens = max_new_tokens
        gc.return_dict_in_generate = True
        return gc


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

    def get(self, images: Sequence[Any]) -> list[tuple[Any, Any]]:
        """(features, grid_thw row) per image; the missing ones go through the vision tower in one batch."""
        keys = [hashlib.sha256(im.tobytes()).hexdigest() + f"{im.size}{im.mode}" for im in images]
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
    """One conversation's cache: token ids whose keys/values are held, and per-image vision features."""

    def __init__(self, backend: HFBackend):
        self.b = backend
        self.cache = None  # transformers DynamicCache
        self.cached_ids: list[int] = []  # token ids whose keys/values are in self.cache
        self.image_ids: list[int] = []  # id() of each image whose features are held
        self.features: list[Any] = []  # vision-tower output per image
        self.grids: list[Any] = []  # image_grid_thw row per image
        self.rope_deltas = None

    def _encode_images(self, images: Sequence[Any]) -> None:
        """Vision features for the images after the unchanged prefix (from the backend's feature cache)."""
        keep = 0
        while keep < min(len(images), len(self.image_ids)) and id(images[keep]) == self.image_ids[keep]:
            keep += 1
        del self.image_ids[keep:], self.features[keep:], self.grids[keep:]
        new = list(images[keep:])
        if not new:
            return
        for f, g in self.b.features.get(new):
            self.features.append(f)
            self.grids.append(g)
        self.image_ids.extend(id(im) for im in new)

    def _tokenize(self, rendered: str) -> list[int]:
        """Expand each image placeholder to its vision-token count and tokenize, as the processor does."""
        proc = self.b.processor
        merge = proc.image_processor.merge_size ** 2
        parts = rendered.split(IMAGE_PAD)
        if len(parts) - 1 != len(self.grids):
            raise ValueError(f"{len(parts) - 1} image placeholders for {len(self.grids)} images")
        pieces = [parts[0]]
        for g, rest in zip(self.grids, parts[1:]):
            pieces.append(IMAGE_PAD * int(g.prod() // merge))
            pieces.append(rest)
        return proc.tokenizer("".join(pieces), add_special_tokens=False)["input_ids"]

    def prepare(self, messages: list[dict], images: Sequence[Any]) -> dict:
        """Render, tokenize and find how much of the cache still holds: everything `generate` needs."""
        m = self.b.model
        rendered = self.b.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        self._encode_images(images)
        ids = self._tokenize(rendered)
        # longest common prefix with what the cache holds, never cutting into an image's tokens
        reuse = 0
        limit = min(len(ids), len(self.cached_ids))
        while reuse < limit and ids[reuse] == self.cached_ids[reuse]:
            reuse += 1
        reuse = min(reuse, len(ids) - 1)  # at least one token must be fed to get logits
        image_token = m.config.image_token_id
        while reuse > 0 and ids[reuse] == image_token and ids[reuse - 1] == image_token:
            reuse -= 1
        n_cached_images = sum(1 for i in range(reuse) if ids[i] == image_token and
                              (i == 0 or ids[i - 1] != image_token))
        if reuse == 0 or self.cache is None:
            reuse, n_cached_images = 0, 0
        return {"rendered": rendered, "ids": ids, "reuse": reuse, "n_cached_images": n_cached_images}

    def generate(self, messages: list[dict], images: Sequence[Any], max_new_tokens: int) -> Reply:
        if not self.b.reuse_cache:
            return self._generate_full(messages, images, max_new_tokens)
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

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
            "mm_token_type_ids": (input_ids == m.config.image_token_id).int(),
            "past_key_values": self.cache, "generation_config": self.b.config_for(max_new_tokens)}
        if self.grids:
            kwargs["image_grid_thw"] = torch.stack(self.grids)
        if self.features[p["n_cached_images"]:]:
            kwargs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(
                pooler_output=tuple(self.features[p["n_cached_images"]:]))}
        if self.cache is not None and self.rope_deltas is not None:
            # the model keeps rope deltas as state; restore this conversation's own
            m.model.rope_deltas = self.rope_deltas
        out = m.generate(**kwargs, **self.b.generate_kwargs)
        self.rope_deltas = m.model.rope_deltas
        seq = out.sequences[0].tolist()
        self.cache = out.past_key_values
        self.cached_ids = seq[: self.cache.get_seq_length()]
        return self._reply(seq[len(ids):], max_new_tokens, p["rendered"], len(ids) - reuse, reuse, t0)

    def _generate_full(self, messages: list[dict], images: Sequence[Any], max_new_tokens: int) -> Reply:
        """The reference's way: re-render and re-encode everything, images included, every turn."""
        t0 = time.perf_counter()
        proc, m = self.b.processor, self.b.model
        rendered = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = proc(text=[rendered], images=list(images) or None, return_tensors="pt",
                      padding=True).to(m.device)
        out = m.generate(**inputs, generation_config=self.b.config_for(max_new_tokens),
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


def generate_many(backend: HFBackend, sessions: Sequence[HFSession], requests: Sequence[tuple[list, list]],
                  max_new_tokens: Sequence[int]) -> list[Reply]:
    """One batched `generate` for fresh conversations of equal token length (e.g. both orders of a
    pair: same text, same image sizes); otherwise one conversation after the other."""
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    if not backend.batch or len(sessions) < 2 or not backend.reuse_cache or len(set(max_new_tokens)) > 1 \
            or any(s.cache is not None for s in sessions):
        return [s.generate(m, im, n) for s, (m, im), n in zip(sessions, requests, max_new_tokens)]
    t0 = time.perf_counter()
    backend.features.get([im for _, ims in requests for im in ims])  # one vision batch for all
    preps = [s.prepare(m, im) for s, (m, im) in zip(sessions, requests)]
    if len({len(p["ids"]) for p in preps}) > 1:
        return [s.generate(m, im, n) for s, (m, im), n in zip(sessions, requests, max_new_tokens)]
    m = backend.model
    input_ids = torch.tensor([p["ids"] for p in preps], device=m.device)
    out = m.generate(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
        mm_token_type_ids=(input_ids == m.config.image_token_id).int(),
        image_grid_thw=torch.stack([g for s in sessions for g in s.grids]),
        mm_encoder_outputs={"image": BaseModelOutputWithPooling(
            pooler_output=tuple(f for s in sessions for f in s.features))},
        generation_config=backend.config_for(max_new_tokens[0]), **backend.generate_kwargs)
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
