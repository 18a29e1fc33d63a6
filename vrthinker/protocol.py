"""Conversation profiles: the exact messages a checkpoint was trained on, kept as data in judge_prompts/.

A profile holds texts and numbers (grid size, initial indices, per-call and turn limits, image order);
`Conversation` renders any profile into chat-template messages, so no profile-specific code exists.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from .errors import UsageError
from .frames import prefetch
from .verdict import FrameRef

DEFAULT_PROFILE = "card"
PROTOCOL_FILE = "judge_protocol.json"  # saved beside a checkpoint: {"profile": "card"}


def _prompts_root() -> Path:
    return Path(str(resources.files("judge_prompts")))


@dataclass(frozen=True)
class Profile:
    """One conversation profile, loaded from judge_prompts/<name>/profile.json and its text files."""

    name: str
    version: str
    description: str
    grid_size: int
    image_side: int
    initial_indices: tuple[int, ...]
    max_indices_per_call: int
    max_turns: int
    max_new_tokens: int
    tool_name: str
    tool_argument: str
    system: str
    user_template: str
    tool_response_template: str
    tool_response_images: str = "pairs"  # "pairs": v1[i], v2[i], v1[j], ...; "by_video": all v1 then all v2
    images_before_text: bool = True
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, name_or_dir: str | Path) -> "Profile":
        """Load a profile by name (a folder of judge_prompts/) or from a folder path."""
        root = Path(name_or_dir)
        if not (root / "profile.json").is_file():
            root = _prompts_root() / str(name_or_dir)
        if not (root / "profile.json").is_file():
            raise UsageError(f"unknown protocol profile {str(name_or_dir)!r}; known: {', '.join(available())}")
        data = json.loads((root / "profile.json").read_text(encoding="utf-8"))
        texts = {k: (root / v).read_text(encoding="utf-8") for k, v in data["texts"].items()}
        p = cls(name=data["name"], version=data["version"], description=data.get("description", ""),
                grid_size=int(data["grid_size"]), image_side=int(data["image_side"]),
                initial_indices=tuple(int(i) for i in data["initial_indices"]),
                max_indices_per_call=int(data["max_indices_per_call"]), max_turns=int(data["max_turns"]),
                max_new_tokens=int(data["max_new_tokens"]), tool_name=data["tool_name"],
                tool_argument=data["tool_argument"], system=texts["system"], user_template=texts["user"],
                tool_response_template=texts["tool_response"],
                tool_response_images=data.get("tool_response_images", "pairs"),
                images_before_text=bool(data.get("images_before_text", True)), raw=data)
        p.validate()
        return p

    def validate(self) -> None:
        bad = [i for i in self.initial_indices if not 0 <= i < self.grid_size]
        if bad or self.max_indices_per_call < 1 or self.max_turns < 1:
            raise UsageError(f"profile {self.name}: inconsistent numbers (initial indices {bad} "
                             f"outside 0..{self.grid_size - 1}, or a non-positive limit)")
        if self.tool_response_images not in ("pairs", "by_video"):
            raise UsageError(f"profile {self.name}: tool_response_images must be 'pairs' or 'by_video'")


def available() -> list[str]:
    return sorted(p.name for p in _prompts_root().iterdir() if (p / "profile.json").is_file())


def known_checkpoints() -> dict[str, str]:
    data = json.loads((_prompts_root() / "known_checkpoints.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def resolve(model: str | None, requested: str | None = None) -> tuple[Profile, str]:
    """Pick the profile for a checkpoint and say where the choice came from.

    Order: a judge_protocol.json beside a local checkpoint, else the table of known hub ids, else the
    requested profile (`--protocol`), else the default. A checkpoint declares how it was trained, so a
    conflicting request is overridden; the returned source says so.
    """
    declared, source = None, ""
    if model and (Path(model) / PROTOCOL_FILE).is_file():
        try:
            declared = json.loads((Path(model) / PROTOCOL_FILE).read_text(encoding="utf-8"))["profile"]
        except (ValueError, KeyError) as e:
            raise UsageError(f"{Path(model) / PROTOCOL_FILE}: not a protocol file ({e})") from None
        source = f"{PROTOCOL_FILE} beside the checkpoint"
    elif model and model in known_checkpoints():
        declared, source = known_checkpoints()[model], f"known checkpoint {model}"
    if declared is not None:
        if requested and requested != declared:
            source += f" (overrides --protocol {requested})"
        return Profile.load(declared), source
    if requested:
        return Profile.load(requested), "--protocol"
    return Profile.load(DEFAULT_PROFILE), "default"


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def fill(template: str, **values: Any) -> str:
    """Substitute {name} placeholders that are given; leave every other brace (JSON examples) as is."""
    return _PLACEHOLDER.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], template)


@dataclass
class Conversation:
    """The growing message list and image list of one comparison, rendered from a profile.

    `images` holds (FrameRef, PIL image) in the order their placeholders appear in `messages`.
    """

    profile: Profile
    prompt: str
    grids: Sequence[Any]  # two vrthinker.frames.FrameGrid
    messages: list[dict] = field(default_factory=list)
    images: list[tuple[FrameRef, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.messages:
            p = self.profile
            self.messages.append({"role": "system", "content": [{"type": "text", "text": p.system}]})
            refs = [self._ref(v, i) for v in (1, 2) for i in p.initial_indices]
            self.messages.append(self._user(refs, fill(p.user_template, prompt=self.prompt)))

    def _ref(self, video: int, index: int) -> tuple[FrameRef, Any]:
        g = self.grids[video - 1]
        return FrameRef(video, index, g.real_index(index), g.sha256(index)), g.image(index)

    def _user(self, refs: list[tuple[FrameRef, Any]], text: str) -> dict:
        self.images.extend(refs)
        items = [{"type": "image"} for _ in refs]
        text_item = [{"type": "text", "text": text}]
        content = items + text_item if self.profile.images_before_text else text_item + items
        return {"role": "user", "content": content}

    def add_reply(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})

    def add_tool_response(self, indices: Sequence[int]) -> tuple[FrameRef, ...]:
        """Append the frames asked for and the tool-response text; return the new images' refs."""
        prefetch([(g, indices) for g in self.grids])  # convert this turn's frames in parallel
        if self.profile.tool_response_images == "pairs":
            refs = [self._ref(v, i) for i in indices for v in (1, 2)]
        else:
            refs = [self._ref(v, i) for v in (1, 2) for i in indices]
        text = fill(self.profile.tool_response_template, count=len(indices),
                    indices="[" + ", ".join(str(i) for i in indices) + "]")
        self.messages.append(self._user(refs, text))
        return tuple(r for r, _ in refs)

    @property
    def pil_images(self) -> list[Any]:
        return [im for _, im in self.images]

    @property
    def initial_refs(self) -> tuple[FrameRef, ...]:
        n = 2 * len(self.profile.initial_indices)
        return tuple(r for r, _ in self.images[:n])
