"""Conversation profiles: the exact messages a checkpoint was trained on, kept as data in judge_prompts/.

A profile holds texts and numbers (grid size, initial indices, per-call and turn limits, image order);
`Conversation` renders any profile into chat-template messages, so no profile-specific code exists.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from vrthinker.errors import UsageError
from vrthinker.media.frame_grid import prefetch
from vrthinker.verdict import FrameRef

DEFAULT_PROFILE = "card"
PROTOCOL_FILE = "judge_protocol.json"  # saved beside a checkpoint: {"profile": "card"}


def _prompts_root() -> Path:
    return Path(str(resources.files("judge_prompts")))


@dataclass(frozen=True)
class Clip:
    """Frames shown to the model as one video item (`<|video_pad|>`), all of the first frame's size."""

    frames: tuple[Any, ...]
    fps: float = 2.0


CHOICES = {  # profile key -> allowed values (the first is the default)
    "addressing": ("mirrored_grid", "concatenated_list"),
    "initial_item": ("images", "video"),
    "tool_response_images": ("pairs", "by_video", "requested"),
    "over_limit": ("truncate", "refuse"),
    "bad_index": ("drop", "refuse"),
    "duplicates": ("drop", "keep"),
    "tool_json": ("lenient", "strict"),
    "bad_call": ("end", "reply"),
    "history": ("raw", "process"),
    "frame_sampling": ("floor", "linspace"),
    "reply_rule": ("reference", "training"),
}
TOOL_MESSAGES = ("over_limit", "out_of_range", "unknown_tool", "error")  # texts tool_<kind> of a profile


@dataclass(frozen=True)
class Profile:
    """One conversation profile, loaded from judge_prompts/<name>/profile.json and its text files.

    Every difference between checkpoints' conversations is a value here (see CHOICES), never a branch
    on the profile's name.
    """

    name: str
    version: str
    description: str
    grid_size: int  # frames addressed per video
    image_side: int  # square side of a frame, unless frame_pixels keeps the aspect ratio
    initial_indices: tuple[int, ...]  # per-video grid indices shown first (video 1, then video 2)
    max_indices_per_call: int
    max_turns: int
    max_new_tokens: int
    tool_name: str
    tool_argument: str
    system: str
    user_template: str
    tool_response_template: str
    tool_response_images: str = "pairs"  # "pairs": v1[i], v2[i], ...; "by_video": v1 then v2; "requested"
    images_before_text: bool = True
    tool_images_before_text: bool | None = None  # None: as images_before_text
    addressing: str = "mirrored_grid"  # one index -> both videos; "concatenated_list": video 1 then video 2
    index_base: int = 0
    initial_item: str = "images"  # "video": the initial frames as one video item
    video_fps: float = 2.0
    frame_pixels: tuple[int, int] | None = None  # (min, max) pixels, aspect kept; None: image_side squares
    frame_sampling: str = "floor"
    over_limit: str = "truncate"  # more indices than allowed: keep the first ones, or refuse the call
    bad_index: str = "drop"  # an unusable index: drop it, or refuse the call
    duplicates: str = "drop"
    tool_json: str = "lenient"  # "strict": json.loads of the call as written, as training does
    bad_call: str = "end"  # a call with nothing to fetch: end the conversation, or reply with a message
    tool_messages: Mapping[str, str] = field(default_factory=dict)
    max_context_tokens: int | None = None  # prompt + reply tokens after which no tool call is served
    window_memory: bool = False  # only the latest tool reply keeps its images
    history: str = "raw"  # how an assistant reply is kept: as written, or rebuilt as training's process()
    reply_rule: str = "reference"  # which of answer / tool call a reply acts on: infer.py's order, or training's
    generation: Mapping[str, Any] = field(default_factory=dict)  # decoding settings over the checkpoint's
    user_values: Mapping[str, Any] = field(default_factory=dict)
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
        system = texts["system"]
        if "tools" in data:  # Qwen-Agent's function-calling block: one json.dumps line per tool
            tools = json.loads((root / data["tools"]).read_text(encoding="utf-8"))
            system += fill(texts["tools_block"], tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        pixels = data.get("frame_pixels")
        p = cls(name=data["name"], version=data["version"], description=data.get("description", ""),
                grid_size=int(data["grid_size"]), image_side=int(data["image_side"]),
                initial_indices=tuple(int(i) for i in data["initial_indices"]),
                max_indices_per_call=int(data["max_indices_per_call"]), max_turns=int(data["max_turns"]),
                max_new_tokens=int(data["max_new_tokens"]), tool_name=data["tool_name"],
                tool_argument=data["tool_argument"], system=system,
                user_template=texts["user"] + data.get("user_suffix", ""),
                tool_response_template=texts["tool_response"],
                images_before_text=bool(data.get("images_before_text", True)),
                tool_images_before_text=data.get("tool_images_before_text"),
                index_base=int(data.get("index_base", 0)), video_fps=float(data.get("video_fps", 2.0)),
                frame_pixels=None if pixels is None else (int(pixels[0]), int(pixels[1])),
                tool_messages={k: texts[f"tool_{k}"] for k in TOOL_MESSAGES if f"tool_{k}" in texts},
                max_context_tokens=data.get("max_context_tokens"),
                window_memory=bool(data.get("window_memory", False)),
                generation=dict(data.get("generation", {})), user_values=dict(data.get("user_values", {})),
                raw=data, **{k: data.get(k, v[0]) for k, v in CHOICES.items()})
        p.validate()
        return p

    def validate(self) -> None:
        bad = [i for i in self.initial_indices if not 0 <= i < self.grid_size]
        if bad or self.max_indices_per_call < 1 or self.max_turns < 1:
            raise UsageError(f"profile {self.name}: inconsistent numbers (initial indices {bad} "
                             f"outside 0..{self.grid_size - 1}, or a non-positive limit)")
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise UsageError(f"profile {self.name}: {key} must be one of {', '.join(map(repr, allowed))}")
        if self.bad_call == "reply" and set(TOOL_MESSAGES) - set(self.tool_messages):
            raise UsageError(f"profile {self.name}: bad_call 'reply' needs the texts "
                             + ", ".join(f"tool_{k}" for k in TOOL_MESSAGES))

    @property
    def list_size(self) -> int:
        """How many tool indices address a frame (128 for a mirrored grid, 96 for 2 x 48 concatenated)."""
        return self.grid_size * (2 if self.addressing == "concatenated_list" else 1)

    @property
    def index_range(self) -> tuple[int, int]:
        """The valid tool indices, both ends included."""
        return self.index_base, self.index_base + self.list_size - 1

    def locate(self, index: int) -> list[tuple[int, int]]:
        """The (video, grid index) frames one tool index fetches, in the order they are shown."""
        k = index - self.index_base
        if self.addressing == "concatenated_list":
            return [(k // self.grid_size + 1, k % self.grid_size)]
        return [(1, k), (2, k)]

    def frames_for(self, indices: Sequence[int]) -> list[tuple[int, int]]:
        """The (video, grid index) frames a tool call fetches, in the order the profile shows them."""
        located = [self.locate(i) for i in indices]
        if self.tool_response_images == "by_video":
            return [f for v in (1, 2) for fs in located for f in fs if f[0] == v]
        return [f for fs in located for f in fs]

    def frame_options(self) -> dict[str, Any]:
        """Keyword arguments for frames.load_grid beyond grid_size/side (empty for square grids)."""
        opts: dict[str, Any] = {}
        if self.frame_pixels is not None:
            opts["pixels"] = self.frame_pixels
        if self.frame_sampling != "floor":
            opts["sampling"] = self.frame_sampling
        return opts

    def values(self, **more: Any) -> dict[str, Any]:
        """Placeholder values every template of this profile may use."""
        return {"N": self.list_size, "max_indices": self.max_indices_per_call, **self.user_values, **more}


def available() -> list[str]:
    return sorted(p.name for p in _prompts_root().iterdir() if (p / "profile.json").is_file())


def known_checkpoints() -> dict[str, str]:
    data = json.loads((_prompts_root() / "known_checkpoints.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


# a Hugging Face hub cache folder: .../models--<org>--<name>[/snapshots/<sha>[/...]]
_HUB_CACHE = re.compile(r"(?:^|[/\\])models--([^/\\]+?)--([^/\\]+)(?:[/\\]snapshots[/\\][^/\\]+)?[/\\]*$")


@dataclass(frozen=True)
class Recognised:
    """A checkpoint matched to a profile: which profile, why (the source printed), and whether the match is
    the checkpoint's identity (a declaration, a hub id), which overrides --protocol, or only a hint (a folder
    or model card naming a known id), which --protocol overrides."""

    profile: str
    source: str
    identity: bool


def known_id(name: str) -> str | None:
    """The known hub id `name` spells, in any letter case, or names as a hub cache folder; else None."""
    known = {k.lower(): k for k in known_checkpoints()}
    text = str(name).strip()
    hit = known.get(text.lower().strip("/"))
    if hit is None and (m := _HUB_CACHE.search(text)):
        hit = known.get(f"{m[1]}/{m[2]}".lower())
    return hit


def _named_by_folder(path: Path) -> str | None:
    """The known hub id whose repository name is this folder's (`hf download ID --local-dir ./<name>`)."""
    by_name = {}
    for k in known_checkpoints():
        by_name.setdefault(k.split("/")[-1].lower(), []).append(k)
    hits = by_name.get(path.name.lower(), [])
    return hits[0] if len(hits) == 1 else None


def _named_in_files(path: Path) -> tuple[str, str] | None:
    """(known hub id, file) when the checkpoint's config.json `_name_or_path` or its model card (README.md)
    names exactly one known checkpoint."""
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        hit = known_id(str(cfg.get("_name_or_path") or "")) if isinstance(cfg, dict) else None
        if hit:
            return hit, "config.json _name_or_path"
    except (OSError, ValueError):
        pass
    try:
        card = (path / "README.md").read_text(encoding="utf-8", errors="replace").lower()
    except OSError:
        return None
    named = [k for k in known_checkpoints() if re.search(rf"(?<![\w.-]){re.escape(k.lower())}(?![\w.-])", card)]
    return (named[0], "README.md") if len(named) == 1 else None


def recognise(model: str, *, local: bool = True) -> Recognised | None:
    """Which profile a checkpoint was trained with, from what it is, and how that is known; None: unknown.

    In order: a judge_protocol.json in its folder; a known hub id in any letter case; a hub cache folder of
    one (models--org--name/snapshots/sha); a folder whose config.json or README.md names exactly one known
    id; a folder named like one (`--local-dir ./vr-thinker`). `local` False: `model` names a path on
    another machine (a server's model root), so only its spelling is read.
    """
    table = known_checkpoints()
    path = Path(os.path.expanduser(str(model)))
    if local and (path / PROTOCOL_FILE).is_file():
        try:
            declared = json.loads((path / PROTOCOL_FILE).read_text(encoding="utf-8"))["profile"]
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{path / PROTOCOL_FILE}: not a protocol file ({e})") from None
        return Recognised(str(declared), f"{PROTOCOL_FILE} beside the checkpoint", True)
    hit = known_id(str(model))
    if hit is not None:
        how = "known checkpoint" if hit.lower() == str(model).strip().lower() else "hub cache of known checkpoint"
        return Recognised(table[hit], f"{how} {hit}", True)
    if local and path.is_dir():
        named = _named_in_files(path)
        if named is not None:
            return Recognised(table[named[0]], f"{named[1]} names {named[0]}", False)
    if local and path.is_dir() or not local and any(c in str(model) for c in "/\\"):
        hit = _named_by_folder(path)
        if hit is not None:
            return Recognised(table[hit], f"folder {path.name} (known checkpoint {hit})", False)
    return None


def unknown_checkpoint(model: str) -> UsageError:
    """The one-line refusal for a checkpoint no rule recognises: both profiles, and both ways to declare one."""
    names = sorted(set(known_checkpoints().values()))
    return UsageError(
        f"cannot tell which conversation {model} was trained on: pass --protocol "
        f"{' or --protocol '.join(names)} (card: the model card's conversation; training: the public training "
        f"code's), or save {PROTOCOL_FILE} beside the checkpoint with {{\"profile\": \"{names[0]}\"}}")


def resolve(model: str | None, requested: str | None = None, *, local: bool = True) -> tuple[Profile, str]:
    """Pick the profile for a checkpoint and say where the choice came from.

    A checkpoint recognised by identity (`recognise`: its judge_protocol.json, a known hub id in any case,
    a hub cache folder of one) gets its own profile, even over a conflicting `--protocol` (the source says
    so); a hint (a folder or model card naming a known id) is used when no `--protocol` is given. An
    unrecognised checkpoint needs `--protocol`: it is refused rather than given a guess. No model at all
    (None) is the default checkpoint, whose profile is `card`.
    """
    if model is None:
        return Profile.load(requested or DEFAULT_PROFILE), "--protocol" if requested else "default"
    found = recognise(model, local=local)
    if found is not None and (found.identity or not requested):
        source = found.source
        if requested and requested != found.profile:
            source += f" (overrides --protocol {requested})"
        return Profile.load(found.profile), source
    if requested:
        return Profile.load(requested), "--protocol"
    raise unknown_checkpoint(model)


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def fill(template: str, **values: Any) -> str:
    """Substitute {name} placeholders that are given; leave every other brace (JSON examples) as is."""
    return _PLACEHOLDER.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], template)


@dataclass
class Conversation:
    """The growing message list and media of one comparison, rendered from a profile.

    `messages` is the whole history; `images` holds (FrameRef, PIL image) for every frame ever shown, in
    order. `request()` gives what the model sees now: with window memory, earlier tool replies lose
    their images (their placeholders vanish from the text, the images from the inputs).
    """

    profile: Profile
    prompt: str
    grids: Sequence[Any]  # two vrthinker.media.frame_grid.FrameGrid
    messages: list[dict] = field(default_factory=list)
    images: list[tuple[FrameRef, Any]] = field(default_factory=list)
    media: list[list[Any]] = field(default_factory=list)  # per message: its PIL images / Clips in order
    tool_replies: list[int] = field(default_factory=list)  # message indices of tool replies

    def __post_init__(self) -> None:
        if not self.messages:
            p = self.profile
            self._add("system", [{"type": "text", "text": p.system}], [])
            refs = [self._ref(v, i) for v in (1, 2) for i in p.initial_indices]
            self._user(refs, fill(p.user_template, **p.values(prompt=self.prompt)), p.images_before_text,
                       as_video=p.initial_item == "video")

    def _ref(self, video: int, index: int) -> tuple[FrameRef, Any]:
        g = self.grids[video - 1]
        return FrameRef(video, index, g.real_index(index), g.sha256(index)), g.image(index)

    def _add(self, role: str, content: list[dict], media: list[Any]) -> None:
        self.messages.append({"role": role, "content": content})
        self.media.append(media)

    def _user(self, refs: list[tuple[FrameRef, Any]], text: str, media_first: bool, as_video: bool = False) -> None:
        self.images.extend(refs)
        if as_video:
            items, media = [{"type": "video"}], [self._clip([im for _, im in refs])]
        else:
            items, media = [{"type": "image"} for _ in refs], [im for _, im in refs]
        text_item = [{"type": "text", "text": text}]
        self._add("user", items + text_item if media_first else text_item + items, media)

    def _clip(self, frames: list[Any]) -> Clip:
        """One video item; frames of another size take the first frame's, as Qwen2-VL's processor did."""
        size = frames[0].size
        return Clip(tuple(f if f.size == size else f.resize(size) for f in frames), self.profile.video_fps)

    def add_reply(self, text: str) -> None:
        """Append the assistant's reply, kept as the profile's history rule says."""
        from vrthinker.parsing import HISTORY

        self._add("assistant", [{"type": "text", "text": HISTORY[self.profile.history](text)}], [])

    def add_tool_response(self, indices: Sequence[int]) -> tuple[FrameRef, ...]:
        """Append the frames asked for and the tool-response text; return the new images' refs."""
        p = self.profile
        wanted = p.frames_for(indices)
        prefetch([(g, [i for v, i in wanted if v == k]) for k, g in enumerate(self.grids, 1)])
        refs = [self._ref(v, i) for v, i in wanted]
        text = fill(p.tool_response_template, **p.values(count=len(indices),
                    indices="[" + ", ".join(str(i) for i in indices) + "]"))
        media_first = p.images_before_text if p.tool_images_before_text is None else p.tool_images_before_text
        self.tool_replies.append(len(self.messages))
        self._user(refs, text, media_first)
        return tuple(r for r, _ in refs)

    def add_tool_message(self, text: str) -> None:
        """Append a tool reply that carries a message and no frames (a refused or failed call)."""
        self.tool_replies.append(len(self.messages))
        self._add("user", [{"type": "text", "text": text}], [])

    def request(self) -> tuple[list[dict], list[Any]]:
        """The messages and media (PIL images and Clips, in placeholder order) the model sees now."""
        hidden = set(self.tool_replies[:-1]) if self.profile.window_memory else set()
        messages, media = [], []
        for k, (msg, items) in enumerate(zip(self.messages, self.media)):
            if k in hidden and items:
                msg = {**msg, "content": [c for c in msg["content"] if c.get("type") not in ("image", "video")]}
            else:
                media.extend(items)
            messages.append(msg)
        return messages, media

    @property
    def pil_images(self) -> list[Any]:
        return [im for _, im in self.images]

    @property
    def initial_refs(self) -> tuple[FrameRef, ...]:
        n = 2 * len(self.profile.initial_indices)
        return tuple(r for r, _ in self.images[:n])
