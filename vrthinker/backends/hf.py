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
import re
import time
from typing import Any, Sequence

from vrthinker.loading import load_qwen, refuse_cpu_by_default
from vrthinker.lru import ByteLRU
from vrthinker.prefix_cache import PrefixCache
from vrthinker.backends.base import Reply

IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
_PADS = re.compile(re.escape(IMAGE_PAD) + "|" + re.escape(VIDEO_PAD))
# video frames arrive already sized (multiples of 28): bounds wide enough that the processor keeps them
VIDEO_BOUNDS = {"shortest_edge": 3136, "longest_edge": 12845056}


class HFBackend:
    """A loaded Qwen2.5-VL model and processor; `new_session()` starts one conversation."""

    name = "hf"
    load_count = 0  # real model loads (from_pretrained) in this process, over all instances

    def __init__(self, model: Any, processor: Any, model_id: str, reuse_cache: bool = True,
                 generate_kwargs: dict | None = None, revision: str | None = None, adapter: str | None = None):
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.revision = revision
        self.adapter = adapter or ""
        self.reuse_cache = reuse_cache
        self.generate_kwargs = dict(generate_kwargs or {})
        # Benchmarks and tests only: called as generate_hook(sessions, requests) before each `generate`, with
        # the call's sessions (one, or a batch's rows in order) and their (messages, media); it returns more
        # keyword arguments for that call only (e.g. a logits_processor forcing each row's reply: see
        # scripts/bench_serve.py). None: nothing more.
        self.generate_hook = None
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
        # the label tokens whose probabilities a verdict records (Qwen's tokenizer writes every digit alone)
        self.label_ids = {k: processor.tokenizer.convert_tokens_to_ids(k) for k in LabelProbe.KEYS}

    @classmethod
    def from_pretrained(cls, model: str, *, device: str | None = None, dtype: str | None = None,
                        quantize: str | None = None, device_map: str | dict | None = None,
                        attn_implementation: str | None = None, trust_remote_code: bool = False,
                        revision: str | None = None, adapter: str | None = None,
                        reuse_cache: bool = True, **_: Any) -> "HFBackend":
        """Load model + processor from a hub id or a local dir (bf16 on GPU, fp32 on CPU by default).

        With no CUDA device and no `device` asked for, nothing is loaded: a UsageError says what the model
        needs and how to go on (see loading.refuse_cpu_by_default)."""
        refuse_cpu_by_default(model, device, dtype, quantize, revision)
        loaded = load_qwen(model, device=device, dtype=dtype, quantize=quantize, device_map=device_map,
                           attn_implementation=attn_implementation, trust_remote_code=trust_remote_code,
                           revision=revision, adapter=adapter)
        cls.load_count += 1
        return cls(loaded.model, loaded.processor, model_id=model, reuse_cache=reuse_cache, revision=revision,
                   adapter=adapter)

    def config(self) -> dict:
        """What shapes this backend's replies (JSON-able; see vrthinker.identity), read from the loaded model."""
        from vrthinker.identity import adapter_identity, model_identity, plain

        m = self.model
        quant = getattr(getattr(m, "config", None), "quantization_config", None)
        return plain({"backend": self.name,
                      **model_identity(self.model_id, self.revision,
                                       getattr(getattr(m, "config", None), "_commit_hash", None)),
                      "adapter": adapter_identity(self.adapter),
                      "quantization": quant.to_dict() if hasattr(quant, "to_dict") else quant,
                      "dtype": str(getattr(m, "dtype", "")).removeprefix("torch."),
                      "device": getattr(getattr(m, "device", None), "type", "cpu"),
                      "generation": {k: v for k, v in self.generation_config.to_diff_dict().items()
                                     if k != "transformers_version"},
                      "generate_kwargs": self.generate_kwargs})

    def new_session(self) -> "HFSession":
        return HFSession(self)

    def call_kwargs(self, sessions: Sequence["HFSession"], requests: Sequence[tuple[list, list]]) -> dict:
        """`generate_kwargs`, with what `generate_hook` adds for this call."""
        if self.generate_hook is None:
            return self.generate_kwargs
        return {**self.generate_kwargs, **self.generate_hook(list(sessions), list(requests))}

    def generate_many(self, sessions, requests, max_new_tokens) -> list[Reply]:
        return generate_many(self, sessions, requests, max_new_tokens)

    def config_for(self, max_new_tokens: int, overrides: dict | None = None, sampling: Any = None):
        """The checkpoint's greedy settings, with a profile's `overrides` (e.g. repetition_penalty 1.0);
        `sampling` (a base.Sampling) samples at its temperature instead (no top-p/top-k cut)."""
        gc = copy.deepcopy(self.generation_config)
        for k, v in (overrides or {}).items():
            setattr(gc, k, v)
        if sampling is not None:
            gc.do_sample, gc.temperature, gc.top_p, gc.top_k = True, float(sampling.temperature), None, None
        gc.max_new_tokens = max_new_tokens
        gc.return_dict_in_generate = True
        return gc

    def video_inputs(self, clips: Sequence[Any]) -> dict:
        """Processor arguments that take `clips` as given (no frame sampling, no resizing) at their fps."""
        from transformers.video_utils import VideoMetadata

        return {"videos": [list(c.frames) for c in clips], "videos_kwargs": {
            "size": VIDEO_BOUNDS, "do_sample_frames": False, "cap_pixels_per_frame": False,
            "video_metadata": [VideoMetadata(total_num_frames=len(c.frames), fps=c.fps) for c in clips]}}


class FeatureCache:
    """Vision-tower outputs by image content (sha256 of the RGB bytes), least recently used first out.

    Both orders of a pair, and every pair a video appears in, show the same frames: each is encoded once.
    Holds `capacity` images or clips (a count-bounded vrthinker.lru.ByteLRU), and never drops one of the
    images a call asked for.
    """

    def __init__(self, backend: "HFBackend", capacity: int = 256):
        self.b = backend
        self.capacity = capacity
        self.items: ByteLRU[str, tuple] = ByteLRU(capacity, size=lambda v: 1)
        self.encoded = 0  # images run through the vision tower

    @staticmethod
    def _key(im: Any) -> str:
        return hashlib.sha256(im.tobytes()).hexdigest() + f"{im.size}{im.mode}"

    def get_clip(self, clip: Any) -> tuple[Any, Any, float]:
        """(features, video_grid_thw row, seconds per temporal grid step) of one video clip."""
        key = "video:" + "".join(self._key(f) for f in clip.frames) + f"@{clip.fps}"
        return self.items.get_or_load(key, lambda: self._encode_clip(clip))

    def _encode_clip(self, clip: Any) -> tuple[Any, Any, float]:
        m, vp = self.b.model, self.b.processor.video_processor
        kw = self.b.video_inputs([clip])
        out = vp(videos=kw["videos"], return_tensors="pt",
                 **{k: v for k, v in kw["videos_kwargs"].items() if k != "video_metadata"})
        grid = out["video_grid_thw"].to(m.device)
        feats = m.model.get_video_features(out["pixel_values_videos"].to(m.device), grid,
                                           return_dict=True).pooler_output
        self.encoded += len(clip.frames)
        return feats[0], grid[0], vp.temporal_patch_size / clip.fps

    def get(self, images: Sequence[Any]) -> list[tuple[Any, Any]]:
        """(features, grid_thw row) per image; the missing ones go through the vision tower in one batch."""
        keys = [self._key(im) for im in images]
        found = {k: v for k in dict.fromkeys(keys) if (v := self.items.get(k)) is not None}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            m = self.b.model
            first = {k: im for k, im in zip(keys, images) if k in missing}
            out = self.b.processor.image_processor(images=[first[k] for k in missing], return_tensors="pt")
            grid = out["image_grid_thw"].to(m.device)
            feats = m.model.get_image_features(out["pixel_values"].to(m.device), grid,
                                               return_dict=True).pooler_output
            found.update((k, (f, g)) for k, f, g in zip(missing, feats, grid))
            self.encoded += len(missing)
        self.items.keep = len(found)  # this call's images stay, whatever the capacity
        for k in keys:  # most recently used last, in the order asked
            self.items.put(k, found[k])
        self.items.keep = 1
        return [found[k] for k in keys]


class HFSession:
    """One conversation's cache: token ids whose keys/values are held, and per-item vision features."""

    def __init__(self, backend: HFBackend):
        self.b = backend
        self.prefix = PrefixCache()  # the keys/values held and the token ids they are for
        self.media_ids: list[int] = []  # id() of each image / clip whose features are held
        self.vision: list[tuple[str, Any, Any, float]] = []  # (kind, features, grid_thw, s/grid) per item
        self.rope_deltas = None
        self.generation: dict = {}  # a profile's decoding settings over the checkpoint's
        self.sampling = None  # a base.Sampling: sampled turns, seeded per turn (the tuner's samples)
        self.turn = 0

    def set_generation(self, overrides: dict) -> None:
        self.generation = dict(overrides)

    def set_sampling(self, sampling) -> None:
        self.sampling, self.turn = sampling, 0

    def _config(self, max_new_tokens: int):
        """The generation config of this turn; a sampled session seeds torch with the turn's own seed."""
        if self.sampling is not None:
            import torch

            torch.manual_seed(self.sampling.turn_seed(self.turn))
            self.turn += 1
        return self.b.config_for(max_new_tokens, self.generation, self.sampling)

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
        c = self.b.model.config
        vision = {c.image_token_id, c.video_token_id}
        reuse = self.prefix.reusable(ids, atomic=vision)
        n_cached = sum(1 for i in range(reuse) if ids[i] in vision and (i == 0 or ids[i - 1] != ids[i]))
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
        self.prefix.crop(reuse)
        input_ids = torch.tensor([ids], device=m.device)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "mm_token_type_ids": self.token_types(input_ids), "past_key_values": self.prefix.cache,
            "generation_config": self._config(max_new_tokens),
            **vision_kwargs(self.vision, p["n_cached_images"], m.device)}
        # The model keeps rope deltas as state, valid only for the sequence they came from (another
        # session's, or this one before window memory dropped images): generate recomputes them.
        m.model.rope_deltas = None
        probe = LabelProbe(self.b.label_ids)
        out = m.generate(**kwargs, **probe.kwargs(self.b.call_kwargs([self], [(messages, images)])))
        self.rope_deltas = m.model.rope_deltas
        seq = out.sequences[0].tolist()
        self.prefix.hold(out.past_key_values, seq)
        return self._reply(seq[len(ids):], max_new_tokens, p["rendered"], len(ids) - reuse, reuse, t0,
                           probs=probe.row(0))

    def _generate_full(self, messages: list[dict], media: Sequence[Any], max_new_tokens: int) -> Reply:
        """The reference's way: re-render and re-encode everything, images included, every turn."""
        t0 = time.perf_counter()
        proc, m = self.b.processor, self.b.model
        rendered = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images = [x for x in media if not _is_clip(x)]
        clips = [x for x in media if _is_clip(x)]
        inputs = proc(text=[rendered], images=images or None, return_tensors="pt", padding=True,
                      **(self.b.video_inputs(clips) if clips else {})).to(m.device)
        probe = LabelProbe(self.b.label_ids)
        out = m.generate(**inputs, generation_config=self._config(max_new_tokens),
                         **probe.kwargs(self.b.call_kwargs([self], [(messages, media)])))
        n = inputs["input_ids"].shape[1]
        return self._reply(out.sequences[0, n:].tolist(), max_new_tokens, rendered, n, 0, t0, probs=probe.row(0))

    def _reply(self, new: list[int], max_new_tokens: int, rendered: str, prefill: int, reused: int,
               t0: float, seconds: float | None = None, probs: list | None = None) -> Reply:
        eos = next((k for k, t in enumerate(new) if t in self.b.eos_ids), None)
        if eos is not None:
            new = new[: eos + 1]  # a batched row may run on (padding) after its own end
        stopped = "eos" if eos is not None else ("length" if len(new) >= max_new_tokens else "eos")
        text = self.b.processor.tokenizer.decode(new, skip_special_tokens=True)
        return Reply(text=text, new_tokens=len(new), stopped=stopped, rendered=rendered,
                     prefill_tokens=prefill, reused_tokens=reused,
                     seconds=time.perf_counter() - t0 if seconds is None else seconds,
                     digits=None if probs is None else self._digits(new, text, probs))

    def _digits(self, new: list[int], text: str, probs: list) -> dict[int, tuple[dict[str, float], float]]:
        """Offset in `text` of each generated label-token digit -> its {"1", "2", "0"} distribution (from
        LabelProbe: the scores greedy decoding chose from) and the mass those three held."""
        from vrthinker.probabilities import renormalise

        tok, ids = self.b.processor.tokenizer, self.b.label_ids
        digit_of = {i: k for k, i in ids.items()}
        out = {}
        for k, t in enumerate(new[:len(probs)]):
            if t not in digit_of:
                continue
            upto = tok.decode(new[:k + 1], skip_special_tokens=True)
            if not text.startswith(upto) or not upto.endswith(digit_of[t]):
                continue  # a digit whose text is not where the reply's text puts it: no figure, not a wrong one
            out[len(upto) - 1] = renormalise(dict(zip(LabelProbe.KEYS, probs[k])))
        return out


class LabelProbe:
    """A logits processor that changes nothing and records, at every step and for every row, the probability
    the scores it is handed give "1", "2" and "0" (softmax over the whole vocabulary, in fp32).

    It runs after the checkpoint's own processors (repetition penalty: transformers puts the processors a
    call passes after the ones it builds, and sampling's temperature / top-k / top-p after both) and before
    any a call adds (a test's forced replies), so in greedy decoding its argmax is the token chosen.
    """

    KEYS = ("1", "2", "0")

    def __init__(self, label_ids: dict[str, int]):
        self.cols = [label_ids[k] for k in self.KEYS]
        self.steps: list[Any] = []
        self._rows: list | None = None

    def __call__(self, input_ids, scores):
        import torch

        s = scores.float()
        self.steps.append(torch.exp(s[:, self.cols] - torch.logsumexp(s, dim=-1, keepdim=True)))
        return scores

    def kwargs(self, call: dict) -> dict:
        """A call's generate() arguments with this probe first among the logits processors it passes."""
        from transformers import LogitsProcessorList

        return {**call, "logits_processor": LogitsProcessorList([self, *(call.get("logits_processor") or [])])}

    def row(self, b: int) -> list[list[float]]:
        """Row `b`'s [P(1), P(2), P(0)] per generated token (one device-to-host copy for all rows)."""
        if self._rows is None:
            import torch

            self._rows = torch.stack(self.steps, dim=1).tolist() if self.steps else []
        return self._rows[b] if self._rows else []


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
            or any(not s.prefix.empty or s.generation != sessions[0].generation or s.sampling is not None
                   for s in sessions):
        return one_by_one()
    t0 = time.perf_counter()
    preps = [s.prepare(m, im) for s, (m, im) in zip(sessions, requests)]
    if len({len(p["ids"]) for p in preps}) > 1:
        return one_by_one()
    m = backend.model
    input_ids = torch.tensor([p["ids"] for p in preps], device=m.device)
    m.model.rope_deltas = None
    probe = LabelProbe(backend.label_ids)
    out = m.generate(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
        mm_token_type_ids=sessions[0].token_types(input_ids),
        **vision_kwargs([v for s in sessions for v in s.vision], 0, m.device),
        generation_config=backend.config_for(max_new_tokens[0], sessions[0].generation),
        **probe.kwargs(backend.call_kwargs(sessions, requests)))
    seconds = (time.perf_counter() - t0) / len(sessions)
    n = input_ids.shape[1]
    replies = []
    seqs = [out.sequences[b].tolist() for b in range(len(sessions))]
    rows = PrefixCache.split(out.past_key_values, seqs, m.device)
    for b, (s, p, seq) in enumerate(zip(sessions, preps, seqs)):
        s.prefix = rows[b]
        s.rope_deltas = m.model.rope_deltas[b:b + 1]
        replies.append(s._reply(seq[n:], max_new_tokens[0], p["rendered"], n, 0, t0, seconds, probe.row(b)))
    return replies
