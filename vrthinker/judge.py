"""The library entry point: `Judge.from_pretrained(model).compare(video1, video2, prompt)`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from vrthinker.media import frame_grid as frames
from vrthinker.backends.base import Backend
from vrthinker.conversation import Dialogue, run_dialogues
from vrthinker.errors import ServerError, UsageError, VideoError, arg
from vrthinker.orders import combine
from vrthinker.protocol import Profile, resolve
from vrthinker.registry import Registry, unknown
from vrthinker.verdict import Verdict, failed

DEFAULT_MODEL = "qunwang13/vrthinker"  # the checkpoint the seed model card describes

# Backends by name, imported only when chosen (heavy dependencies stay unloaded otherwise).
BACKENDS = Registry("backend", {
    "hf": "vrthinker.backends.hf:HFBackend",
    "openai": "vrthinker.backends.openai:OpenAIBackend",
    "scripted": "vrthinker.backends.scripted:ScriptedBackend",
})
# Judges that are not conversations with a VLM.
JUDGES = Registry("backend", {
    "metrics": "dqa.measures.pairwise:MetricsJudge",
})
CONVERSATION_OPTIONS = ("protocol", "max_turns", "max_new_tokens")  # what Judge itself takes, not the backend


def backend_names() -> list[str]:
    return sorted({**BACKENDS, **JUDGES})


def backend_class(backend: str) -> Any:
    """The class `backend` names (imported now); UsageError with "did you mean" for an unknown name."""
    if backend in JUDGES:
        return JUDGES.load(backend)
    if backend in BACKENDS:
        return BACKENDS.load(backend)
    raise unknown("backend", backend, backend_names())


def accepted_options(cls: Any) -> frozenset[str]:
    """The keywords `cls.from_pretrained(model, ...)` uses, read from its signature.

    Its named parameters after the model count; a `**kwargs` it passes on to the constructor (any name
    without a leading underscore) adds the constructor's named parameters; `**_` takes and ignores the rest,
    which is not the same as using them.
    """
    import inspect

    def named(fn, skip: int) -> tuple[set[str], bool]:
        params = list(inspect.signature(fn).parameters.values())[skip:]
        names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        return names, any(p.kind is p.VAR_KEYWORD and not p.name.startswith("_") for p in params)

    names, forwards = named(cls.from_pretrained, 1)
    if forwards:
        names |= named(cls, 0)[0]
    return frozenset(names)


def unused_options(backend: str, options: Mapping[str, Any]) -> list[str]:
    """The options given (not None) that `backend` would not use, in the order given."""
    usable = accepted_options(backend_class(backend)) | (set(CONVERSATION_OPTIONS) if backend in BACKENDS else set())
    return [k for k, v in options.items() if v is not None and k not in usable]


def load_videos(profile: Profile, video1: str | Path, video2: str | Path, min_frames: int = 4,
                cache: frames.GridCache | None = None):
    """Decode both videos once, as `profile` addresses them; the initial frames are converted at once."""
    return frames.load_pair(str(video1), str(video2), cache=cache, grid_size=profile.grid_size,
                            side=profile.image_side, min_frames=min_frames, eager=profile.initial_indices,
                            **profile.frame_options())


class Judge:
    """A pairwise video judge: one loaded backend, one protocol profile, many comparisons."""

    def __init__(self, backend: Backend, profile: Profile | str = "card", *, max_turns: int | None = None,
                 max_new_tokens: int | None = None, min_frames: int = 4, profile_source: str = "",
                 grid_cache_mb: float = 2048):
        self.backend = backend
        self.profile = Profile.load(profile) if isinstance(profile, str) else profile
        self.profile_source = profile_source
        self.max_turns = max_turns or self.profile.max_turns
        self.max_new_tokens = max_new_tokens or self.profile.max_new_tokens
        if self.max_turns < 1 or self.max_new_tokens < 1:
            raise UsageError("max_turns and max_new_tokens must be at least 1")
        self.min_frames = min_frames
        self.grids = frames.GridCache(grid_cache_mb)  # decoded videos, reused across comparisons

    @classmethod
    def from_pretrained(cls, model: str | None = None, *, backend: str = "hf", protocol: str | None = None,
                        max_turns: int | None = None, max_new_tokens: int | None = None,
                        **load_kwargs: Any) -> Any:
        """Load a judge once; reuse it for every comparison.

        `backend` "hf" loads Qwen2.5-VL (`load_kwargs`: device, dtype, quantize, device_map, revision,
        trust_remote_code, adapter); "scripted" reads replies from a JSON file; "metrics" returns the
        weight-free judge. The profile comes from the checkpoint when it declares one, else `protocol`.
        """
        unused = unused_options(backend, {**load_kwargs, "protocol": protocol, "max_turns": max_turns,
                                          "max_new_tokens": max_new_tokens})
        if unused:  # said here, not as a TypeError deep inside the backend
            raise UsageError(f"{arg('backend', backend)} does not take {', '.join(arg(k) for k in unused)}")
        if backend in JUDGES:
            return JUDGES.load(backend).from_pretrained(model, **load_kwargs)
        cls_ = BACKENDS.load(backend)
        if hasattr(cls_, "resolve_profile"):  # a served model: the profile comes from --protocol or its name
            loaded = cls_.from_pretrained(model, **load_kwargs)
            profile, source = loaded.resolve_profile(protocol)
            return cls(loaded, profile, max_turns=max_turns, max_new_tokens=max_new_tokens, profile_source=source)
        model = model or DEFAULT_MODEL
        profile, source = resolve(model, protocol)
        loaded = cls_.from_pretrained(model, **load_kwargs)
        return cls(loaded, profile, max_turns=max_turns, max_new_tokens=max_new_tokens,
                   profile_source=source)

    def load_videos(self, video1: str | Path, video2: str | Path):
        return load_videos(self.profile, video1, video2, self.min_frames, self.grids)

    def compare(self, video1: str | Path, video2: str | Path, prompt: str, *, orders: str = "one",
                grids=None, combine_rule: str = "labels") -> Verdict:
        """Judge video1 against video2 for `prompt`. Bad videos give a verdict with reason bad_video.

        `orders="both"` also judges (video2, video1) and combines the two (see `orders.combine`); the
        two conversations are stepped together so the backend can batch them. `grids` may pass the
        two already-decoded FrameGrids (see `load_videos`) to skip decoding. `combine_rule`
        "probabilities" takes each label from both orders' averaged label probabilities where read.
        """
        if not prompt or not prompt.strip():
            raise UsageError("the prompt is empty: pass the text the videos were generated from")
        if orders not in ("one", "both"):
            raise UsageError(f"orders must be 'one' or 'both', not {orders!r}")
        meta = {"videos": (str(video1), str(video2)), "prompt": prompt, "model_id": self.backend.model_id,
                "protocol": self.profile.version, "backend": self.backend.name}
        t0 = time.perf_counter()
        try:
            grids = grids or self.load_videos(video1, video2)
        except VideoError as e:
            return failed("bad_video", str(e), **meta)
        t1 = time.perf_counter()
        pairs = [(0, 1)] if orders == "one" else [(0, 1), (1, 0)]
        dialogues = [Dialogue(self.profile, [grids[i], grids[j]], prompt.strip(), self.max_turns,
                              self.max_new_tokens) for i, j in pairs]
        try:
            outcomes = run_dialogues(self.backend, [self.backend.new_session() for _ in pairs], dialogues)
        except ServerError as e:  # a served backend that still failed after its retries: this pair only
            return failed("server_error", str(e), **meta)
        t2 = time.perf_counter()
        timings = {"decode_s": round(t1 - t0, 4), "judge_s": round(t2 - t1, 4), "total_s": round(t2 - t0, 4)}
        verdicts = []
        for (i, j), out in zip(pairs, outcomes):
            m = dict(meta, videos=(meta["videos"][i], meta["videos"][j]))
            verdicts.append(Verdict(
                labels=out.labels, reason=out.reason, detail=out.detail, reasoning=out.reasoning,
                turns=out.turns, timings=timings, probabilities=out.probabilities, mass=out.mass,
                extra={"profile_source": self.profile_source, "orders": "one",
                       "recommendation": out.recommendation, **_count_warnings(out.turns),
                       **({"no_probabilities": out.no_probabilities} if out.no_probabilities else {}),
                       **({"refused": True} if out.refused else {}),  # by the server: kept out of the store
                       "frames": [{"video": k + 1, "total_frames": g.total_frames, "fps": g.fps}
                                  for k, g in enumerate((grids[i], grids[j]))]},
                **m))
        return verdicts[0] if orders == "one" else combine(*verdicts, rule=combine_rule)


def _count_warnings(turns) -> dict:
    """{"warnings": [...]} where a served backend's prompt-token count differs from ours, else {}."""
    bad = [f"turn {t.index + 1}: the server counted {t.server_prompt_tokens} prompt tokens, our rendering "
           f"{t.prompt_tokens}" for t in turns
           if t.prompt_tokens is not None and t.server_prompt_tokens is not None
           and t.prompt_tokens != t.server_prompt_tokens]
    return {"warnings": bad} if bad else {}
