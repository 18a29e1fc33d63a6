"""Worker `vlm`: the judge's Qwen2.5-VL answers yes/no questions about a video's frames.

Components: "visionreward" (the VisionReward-style checklist of dqa.score.checklist, axis-weighted), "semantic"
(does the video show the prompt / each of its entities), and "preference" (one quality-and-match question
under a DPO adapter; only when one is given). Every question shows the same frames, so the frames and the
shared text run through the model once and each question runs only its own tokens on that key/value cache.
"""
from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Any, Sequence

from vrthinker.errors import ModelLoadError
from vrthinker.judge import DEFAULT_MODEL
from vrthinker.loading import weights_gb
from vrthinker.prefix_cache import PrefixCache, common_prefix
from vrthinker.media.decode import VideoSample

from dqa.score.checklist import Checklist, aggregate, load_checklist, p_yes, p_yes_top, semantic_questions, yes_no_ids
from dqa.workers.base import Score, ScoreError, Worker

IMAGE_PAD = "<|image_pad|>"
FRAMES = 8
IMAGE_SIDE = 448  # the judge's own frame side (judge_prompts/card); aspect kept here, long side scaled to it
ACTIVATION_GB = 2.0  # working memory for FRAMES frames at IMAGE_SIDE (prefix keys/values, vision tower, logits)


def _cache_kw() -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); use whichever this version's forward takes."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    params = inspect.signature(Qwen2_5_VLForConditionalGeneration.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _core(model):
    """The inner Qwen2_5_VLModel (get_rope_index, config), also under a PEFT wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model


class Asker:
    """P(yes) of several questions about the same images with one shared prefix pass.

    `probs` renders each question as its own one-turn conversation through the real chat template, then
    runs the longest token prefix all of them share (system turn, frames, intro) once, keeps its
    keys/values (a vrthinker.prefix_cache.PrefixCache), and for each question runs only the remaining
    tokens on that cache (cropped back after each), with the 3D rope positions of the full sequence.
    `full_logits` is the plain uncached way.
    """

    def __init__(self, model: Any, processor: Any, yes: Sequence[int], no: Sequence[int], answer_prefix: str = ""):
        self.model, self.processor, self.answer_prefix = model, processor, answer_prefix
        self.yes, self.no = list(yes), list(no)
        self.cache_kw = _cache_kw()
        self.passes = {"prefix": 0, "suffix": 0, "full": 0}

    @staticmethod
    def messages(n_images: int, text: str) -> list[dict]:
        return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]

    def render(self, n_images: int, text: str) -> str:
        return self.processor.apply_chat_template(self.messages(n_images, text), tokenize=False,
                                                  add_generation_prompt=True) + self.answer_prefix

    def _ids(self, rendered: str, grid) -> list[int]:
        """Token ids with each image placeholder expanded to its vision-token count, as the processor does."""
        merge = self.processor.image_processor.merge_size ** 2
        parts = rendered.split(IMAGE_PAD)
        if len(parts) - 1 != len(grid):
            raise ValueError(f"{len(parts) - 1} image placeholders for {len(grid)} images")
        text = parts[0] + "".join(IMAGE_PAD * int(g.prod() // merge) + rest for g, rest in zip(grid, parts[1:]))
        return self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]

    def probs(self, images: Sequence[Any], texts: Sequence[str]) -> list[tuple[float, float]]:
        """(P(yes), yes+no mass) per question text (see dqa.score.checklist.p_yes)."""
        logits = self.cached_logits(images, texts)
        return [p_yes(row, self.yes, self.no) for row in logits]

    def cached_logits(self, images: Sequence[Any], texts: Sequence[str]):
        """Next-token logits [len(texts), vocab] after each question: prefix once, one pass per question."""
        import torch

        if not texts:
            return torch.empty(0)
        m = self.model
        cfg = _core(m).config
        px = self.processor.image_processor(images=list(images), return_tensors="pt")
        grid = px["image_grid_thw"]
        rows = [self._ids(self.render(len(images), t), grid) for t in texts]
        n = min(common_prefix(rows), min(len(r) for r in rows) - 1)  # every question keeps at least one token to run
        vision = {cfg.image_token_id, cfg.video_token_id}
        if any(t in vision for r in rows for t in r[n:]):
            raise ValueError("the questions differ before the last image: nothing to share")
        dev = m.device
        prefix = torch.tensor([rows[0][:n]], device=dev)
        types = (prefix == cfg.image_token_id).int()
        grid = grid.to(dev)
        pos, delta = _core(m).get_rope_index(prefix, types, image_grid_thw=grid)
        with torch.inference_mode():
            out = m(input_ids=prefix, attention_mask=torch.ones_like(prefix), position_ids=pos,
                    pixel_values=px["pixel_values"].to(dev), image_grid_thw=grid, mm_token_type_ids=types,
                    use_cache=True, logits_to_keep=1)
            self.passes["prefix"] += 1
            kv = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            cache = PrefixCache(kv, rows[0][:n])
            result = []
            for r in rows:
                suffix = torch.tensor([r[n:]], device=dev)
                # text after the last image: positions run on from the prefix's, shifted by its rope delta
                spos = (torch.arange(n, len(r), device=dev) + delta.to(dev)).view(1, 1, -1).expand(3, 1, -1)
                out = m(input_ids=suffix, attention_mask=torch.ones(1, len(r), dtype=torch.long, device=dev),
                        position_ids=spos, use_cache=True, logits_to_keep=1, **{self.cache_kw: cache.cache})
                self.passes["suffix"] += 1
                result.append(out.logits[0, -1].float())
                cache.crop(n)  # back to the shared prefix for the next question
        return torch.stack(result)

    def full_logits(self, images: Sequence[Any], texts: Sequence[str]):
        """The naive way, for checks and timing: each question processed and run whole, frames included."""
        import torch

        result = []
        with torch.inference_mode():
            for t in texts:
                inputs = self.processor(text=[self.render(len(images), t)], images=list(images),
                                        return_tensors="pt").to(self.model.device)
                out = self.model(**inputs, use_cache=False, logits_to_keep=1)
                self.passes["full"] += 1
                result.append(out.logits[0, -1].float())
        return torch.stack(result)


class ServedAsker:
    """P(yes) of several questions about the same images from an OpenAI-compatible server (--backend openai).

    Each question is its own one-turn conversation (the same messages as Asker's, images as PNG data URLs),
    all in flight together; the server's prefix cache shares the frames. P(yes) comes from the top
    log-probabilities of the reply's first token (dqa.score.checklist.p_yes_top), not the whole vocabulary.
    """

    def __init__(self, backend: Any, answer_prefix: str = "", top: int = 20, concurrency: int = 8):
        self.backend, self.answer_prefix, self.top, self.concurrency = backend, answer_prefix, top, concurrency

    def probs(self, images: Sequence[Any], texts: Sequence[str]) -> list[tuple[float, float]]:
        from concurrent.futures import ThreadPoolExecutor

        from vrthinker.backends.openai import openai_messages

        cache = getattr(self.backend, "media", None)  # the backend's one budget for encoded frames
        msgs = [openai_messages(Asker.messages(len(images), t), images, video=False, cache=cache) for t in texts]
        if not msgs:
            return []
        with ThreadPoolExecutor(min(self.concurrency, len(msgs))) as pool:
            tops = list(pool.map(lambda m: self.backend.first_token_logprobs(m, self.answer_prefix, self.top), msgs))
        return [p_yes_top(t) for t in tops]


def _sig(x: float) -> float:
    """Three significant figures: the yes/no mass of a confused model can be tiny and still worth seeing."""
    return float(f"{x:.3g}")


def frames_as_images(video: VideoSample, n: int, side: int) -> list[Any]:
    """`n` uniformly sampled frames as PIL images, long side scaled to `side` (aspect kept)."""
    from PIL import Image

    out = []
    for f in video.uniform(n):
        im = Image.fromarray(f)
        scale = side / max(im.size)
        if scale != 1:
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
        out.append(im)
    return out


def prompt_entities(prompt: str) -> tuple[list[str], str]:
    """Entities of a prompt from dqa.grounding.prompt when that module is there, with where they came from.

    Uses its `parse_prompt(prompt).entities` (each with `.text`), or a plain `entities(prompt)`-style
    function; anything going wrong there leaves only the whole-prompt question.
    """
    try:
        from dqa.grounding import prompt as grounding
    except ImportError:
        return [], "none (dqa.grounding.prompt not available)"
    name = next((n for n in ("parse_prompt", "entities", "extract_entities", "prompt_entities")
                 if callable(getattr(grounding, n, None))), None)
    if name is None:
        return [], "none (no entity extractor in dqa.grounding.prompt)"
    try:
        items = getattr(grounding, name)(prompt)
        items = list(items.entities if hasattr(items, "entities") else items)
    except ScoreError as e:  # e.g. no_entities: the whole-prompt question still stands
        return [], f"none ({e.reason})"
    except Exception as e:  # another module's failure must not cost the whole-prompt question
        return [], f"none ({name} failed: {type(e).__name__})"

    def text(x: Any) -> str:
        if isinstance(x, str):
            return x
        if isinstance(x, dict):
            return str(next((x[k] for k in ("text", "name", "phrase") if k in x), ""))
        return str(next((getattr(x, k) for k in ("text", "name", "phrase") if hasattr(x, k)), x))

    return [text(x) for x in items], f"dqa.grounding.prompt.{name}"

UNQUANTIZED_SHARE = 0.23  # Qwen2.5-VL-7B: visual + embed_tokens + lm_head, ~1.76B of 7.6B parameters


class VLMWorker(Worker):
    """Options: quantize (None/"4bit"/"8bit"), dtype ("auto"/"bfloat16"/"float32"...), adapter (a DPO/PEFT
    adapter dir: adds "preference"), frames (8), image_side (448), entities ("auto": from
    dqa.grounding.prompt when present; "none"), checklist (a checklist.json path; default the packaged one),
    served (a dict: server (URLs), served_model, api_key and the client's timeout, turn_deadline,
    connect_timeout, client_cache_mb: ask an OpenAI-compatible server instead of loading the model; see
    ServedAsker)."""

    name = "vlm"
    components = ("visionreward", "semantic", "preference")
    needs_prompt = True
    default_models = {"vlm": DEFAULT_MODEL}

    def __init__(self, device: str = "cpu", models=None, **options: Any):
        super().__init__(device, models, **options)
        self.checklist: Checklist = load_checklist(options.get("checklist"))
        if not options.get("adapter"):
            # without an adapter there is no preference component: do not promise one
            self.components = tuple(c for c in type(self).components if c != "preference")
        self.backend = None
        self.asker: Asker | None = None

    @property
    def n_frames(self) -> int:
        return int(self.options.get("frames", FRAMES))

    @property
    def image_side(self) -> int:
        return int(self.options.get("image_side", IMAGE_SIDE))

    def footprint_gb(self) -> float:
        if self.options.get("served"):
            return 0.0  # the model runs on the server
        quantize = self.options.get("quantize")
        if quantize in ("4bit", "8bit"):
            # the vision tower, embeddings and lm_head stay bf16 (about 23% of the 7B's parameters)
            bpp, fallback = {"4bit": (0.55, 7.2), "8bit": (1.05, 10.5)}[quantize]
            source = self.models["vlm"]
            weights = (weights_gb(source, bpp, fallback_gb=fallback) * (1 - UNQUANTIZED_SHARE)
                       + weights_gb(source, 2.0, fallback_gb=0) * UNQUANTIZED_SHARE) if Path(source).exists() \
                else fallback
            return weights + ACTIVATION_GB * self.n_frames / FRAMES * (self.image_side / IMAGE_SIDE) ** 2
        elif self.options.get("dtype") in ("float32", "fp32") or \
                (self.options.get("dtype") in (None, "", "auto") and not str(self.device).startswith("cuda")):
            bpp, fallback = 4.0, 31.0
        else:
            bpp, fallback = 2.0, 15.5  # the 7B in bf16
        weights = weights_gb(self.models["vlm"], bpp, fallback_gb=fallback)  # a hub id: not downloaded to plan
        return weights + ACTIVATION_GB * self.n_frames / FRAMES * (self.image_side / IMAGE_SIDE) ** 2

    def _served(self):
        """The server connection (--backend openai), made once: its model's identity is part of config()."""
        if self.backend is None:
            from vrthinker.backends.openai import OpenAIBackend
            from vrthinker.errors import UsageError

            if self.options.get("adapter"):
                raise UsageError("--adapter runs in-process: the served VLM answers without it (drop --backend "
                                 "openai, or serve the adapter merged into the model)")
            sv = self.options["served"]
            self.backend = OpenAIBackend.from_pretrained(server=sv.get("server"), served_model=sv.get("served_model"),
                                                         api_key=sv.get("api_key"), timeout=sv.get("timeout"),
                                                         turn_deadline=sv.get("turn_deadline"),
                                                         connect_timeout=sv.get("connect_timeout"),
                                                         client_cache_mb=sv.get("client_cache_mb"))
        return self.backend

    def _load(self) -> None:
        from vrthinker.backends.hf import HFBackend

        if self.options.get("served"):
            self.asker = ServedAsker(self._served(), self.checklist.answer_prefix)
            return
        adapter = self.options.get("adapter")
        if adapter and not Path(adapter).expanduser().is_dir():
            raise ModelLoadError(f"adapter directory not found: {adapter}")
        self.backend = HFBackend.from_pretrained(self.models["vlm"], device=self.device,
                                                 dtype=self.options.get("dtype"),
                                                 quantize=self.options.get("quantize"),
                                                 adapter=str(Path(adapter).expanduser()) if adapter else None)
        yes, no = yes_no_ids(self.backend.processor.tokenizer)
        self.asker = Asker(self.backend.model, self.backend.processor, yes, no, self.checklist.answer_prefix)

    def unload(self) -> None:
        self.asker = None
        self.backend = None
        super().unload()

    def config(self) -> dict:
        out = {**super().config(), "checklist": f"{self.checklist.version}@{self.checklist.digest}"}
        if self.options.get("served"):
            b = self._served()
            out["served"] = {"model_id": b.model.id, "root": b.model.root, "revision": b.revision,
                             "server_kind": b.kind, "p_yes": "top_logprobs"}
        return out

    def _base_model(self):
        """Context in which the model runs without the adapter (the checklist and semantic questions)."""
        m = getattr(self.asker, "model", None)
        return m.disable_adapter() if self.options.get("adapter") and hasattr(m, "disable_adapter") \
            else contextlib.nullcontext()

    def score(self, video: VideoSample, prompt: str) -> list[Score]:
        if self.asker is None:
            raise ScoreError("model_unavailable", "the vlm worker is not loaded")
        if len(video.frames) == 0:
            raise ScoreError("too_few_frames", "the video has no frames")
        cl, prompt = self.checklist, (prompt or "").strip()
        images = frames_as_images(video, self.n_frames, self.image_side)
        n = len(images)
        skipped: dict[str, str] = {}
        asked = []
        for q in cl.questions:
            if q.needs_prompt and not prompt:
                skipped[q.id] = "empty_prompt"
            else:
                asked.append(q)
        entities, source = prompt_entities(prompt) if prompt and self.options.get("entities", "auto") == "auto" \
            else ([], "none")
        entities = list(dict.fromkeys(e.strip() for e in entities if e and e.strip()))
        sem = semantic_questions(cl, prompt, entities) if prompt else []
        if not prompt:
            skipped["semantic"] = "empty_prompt"
        texts = [cl.text(q.render(prompt), n) for q in asked] + [cl.text(s, n) for s in sem]
        with self._base_model():
            answers = self.asker.probs(images, texts)
        checklist_ans, sem_ans = answers[:len(asked)], answers[len(asked):]
        probs = {q.id: p for q, (p, _) in zip(asked, checklist_ans)}
        total, axes = aggregate(cl, probs)
        common = {"frames": n, "image_side": self.image_side}
        details: dict[str, Any] = {
            "axes": {a: round(s, 4) for a, s in axes.items()}, "p_yes": {k: round(p, 4) for k, p in probs.items()},
            "yes_no_mass": _sig(sum(m for _, m in checklist_ans) / len(checklist_ans)),
            "checklist": cl.version, **common}
        out = []
        if sem_ans:
            p = sum(a for a, _ in sem_ans) / len(sem_ans)
            ent = {e: round(a, 4) for e, (a, _) in zip(entities, sem_ans[1:])}
            out.append(Score("semantic", p, p, {"prompt": round(sem_ans[0][0], 4), "entities": ent,
                                                "entities_from": source,
                                                "yes_no_mass": _sig(sum(m for _, m in sem_ans) / len(sem_ans)),
                                                **common}))
        if self.options.get("adapter"):
            if prompt:
                (p, mass), = self.asker.probs(images, [cl.text(cl.preference.replace("{prompt}", prompt), n)])
                out.append(Score("preference", p, p, {"adapter": str(self.options["adapter"]),
                                                      "yes_no_mass": _sig(mass), **common}))
            else:
                skipped["preference"] = "empty_prompt"
        if skipped:
            details["skipped"] = skipped
        return [Score("visionreward", total, total, details), *out]
