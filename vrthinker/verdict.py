"""Frozen results of one comparison: labels, why it is incomplete, and what happened each turn."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

DIMENSIONS = ("TA", "VQ", "MQ", "OA")
LABEL_NAMES = {0: "tie", 1: "Video 1", 2: "Video 2"}

# Why a verdict lacks some or all labels. None means all four labels are present.
REASONS = {
    "no_answer": "the model stopped without an <Answer> or a tool call",
    "malformed_tool_call": "the model's tool call had no usable frame index",
    "turn_limit": "the turn limit was reached before an answer",
    "token_limit": "a reply hit the new-token limit before an answer",
    "bad_video": "a video could not be decoded",
    "partial_answer": "the answer lacks some dimensions",
    "needs_vlm": "this dimension needs a vision-language model",
    "server_error": "the server failed this comparison after its retries",
}
# Reasons that say what a backend cannot give by design, not that a judgment failed: the weight-free judge has no
# TA. A verdict missing only these is `as_designed`; the exit status treats it as done (0), not incomplete (3).
BY_DESIGN = frozenset({"needs_vlm"})
SERVED_COUNTS = ("prompt_tokens", "server_prompt_tokens")


@dataclass(frozen=True)
class FrameRef:
    """One image fed to the model: which video, which grid index, which real frame, and its RGB hash."""

    video: int
    grid_index: int
    real_index: int
    sha256: str


@dataclass(frozen=True)
class Turn:
    """One assistant turn: what the model saw new, what it said, what that was parsed as, and its cost."""

    index: int
    reply: str
    action: str  # "answer" | "tool_call" | "tool_error" | "malformed_tool_call" | "none"
    requested: tuple[int, ...] = ()  # valid frame indices of a tool call, in the order asked
    dropped: tuple[str, ...] = ()  # tool arguments that were not usable indices, as written
    new_images: tuple[FrameRef, ...] = ()
    rendered: str | None = None  # the whole conversation as the chat template rendered it this turn
    new_tokens: int = 0
    prefill_tokens: int = 0
    reused_tokens: int = 0
    stopped: str = "eos"  # "eos" | "length"
    seconds: float = 0.0
    recommendation: Mapping[str, Any] | None = None  # an interim <Recommend Answer>: labels, confidence (CF)
    tool_error: str = ""  # "tool_error" turns: why the call was answered with a message instead of frames
    prompt_tokens: int | None = None  # served backends: our own count of the rendered prompt
    server_prompt_tokens: int | None = None  # served backends: the server's count (usage.prompt_tokens)
    # the labels this turn wrote (its answer, else its <Recommend Answer>): P over "1", "2", "0" at each label
    # digit, renormalised over the three, and the mass the three held in the whole vocabulary (None: not known)
    probabilities: Mapping[str, Mapping[str, float]] | None = None
    mass: Mapping[str, float] | None = None


@dataclass(frozen=True)
class Verdict:
    """The outcome of comparing two videos under one prompt.

    `labels[d]` is 1 (video 1 better), 2 (video 2 better), 0 (tie) or None (missing, never a tie);
    `reason` is None only when all four labels are present.
    """

    labels: Mapping[str, int | None]
    reason: str | None
    detail: str = ""
    reasoning: str = ""
    turns: tuple[Turn, ...] = ()
    videos: tuple[str, str] = ("", "")
    prompt: str = ""
    model_id: str = ""
    protocol: str = ""
    backend: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    per_order: tuple[Verdict, ...] = ()  # with --orders both: the (v1, v2) and the (v2, v1) verdicts
    # {dimension: {"1": p, "2": p, "0": p}} read at the final answer's label digits (see probabilities.py);
    # None where the backend gives none (the weight-free judge, a server without logprobs, old stored verdicts)
    probabilities: Mapping[str, Mapping[str, float]] | None = None
    mass: Mapping[str, float] | None = None  # {dimension: share of the vocabulary's mass on "0", "1", "2"}

    @property
    def complete(self) -> bool:
        return self.reason is None and all(self.labels.get(d) is not None for d in DIMENSIONS)

    @property
    def as_designed(self) -> bool:
        """Every label the backend can give is here (complete, or missing only what it cannot give by design)."""
        return self.complete or self.reason in BY_DESIGN

    @property
    def frames_requested(self) -> tuple[tuple[int, ...], ...]:
        return tuple(t.requested for t in self.turns if t.action == "tool_call")

    def to_dict(self, trace: bool = False) -> dict:
        """Plain JSON-able dict; `trace=True` keeps every turn's rendered text and images."""
        d = asdict(self)
        d["labels"] = {k: self.labels.get(k) for k in DIMENSIONS}
        d["complete"] = self.complete
        d["frames_requested"] = [list(x) for x in self.frames_requested]
        d["per_order"] = [v.to_dict(trace) for v in self.per_order]
        for k in ("probabilities", "mass"):
            d[k] = plain_probabilities(getattr(self, k))
        for t in d["turns"]:  # only a served backend counts both ways; other traces stay as they were
            for k in SERVED_COUNTS:
                if t.get(k) is None:
                    t.pop(k, None)
            for k in ("probabilities", "mass"):
                t[k] = plain_probabilities(t.get(k))
        if not trace:
            d["turns"] = [{k: v for k, v in t.items() if k not in ("rendered", "new_images")}
                          for t in d["turns"]]
        return d


def plain_probabilities(value: Any) -> Any:
    """A probabilities or mass mapping as plain JSON (dimensions in order, floats); None stays None."""
    if value is None:
        return None
    return {d: (dict(value[d]) if isinstance(value[d], Mapping) else value[d]) for d in DIMENSIONS if d in value}


def failed(reason: str, detail: str = "", **kw) -> Verdict:
    """A verdict with no labels, carrying why."""
    return Verdict(labels={d: None for d in DIMENSIONS}, reason=reason,
                   detail=detail or REASONS.get(reason, reason), **kw)
