"""Read the model's replies: the final <Answer>, a <tool_call>, and the tool's frame indices.

Tag names and case vary across the paper, the cards and the code (`<Answer>`, `<final answer>`,
`<think>`/`<Think>`), so every pattern is case-insensitive and tolerant of stray whitespace.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .verdict import DIMENSIONS

_ANSWER = re.compile(r"<\s*(answer|final[\s_]*answer)\s*>(.*?)(?:<\s*/\s*\1\s*>|$)", re.I | re.S)
_LABEL = re.compile(r"\b(TA|VQ|MQ|OA)\s*[=:]\s*\(?\s*(-?\d+)\b", re.I)
_TOOL = re.compile(r"<\s*tool_call\s*>(.*?)(?:<\s*/\s*tool_call\s*>|$)", re.I | re.S)
_THINK = re.compile(r"<\s*think\s*>(.*?)<\s*/\s*think\s*>", re.I | re.S)
_ANY_TAG = re.compile(r"<\s*/?\s*(snapshot|think|answer|final[\s_]*answer|tool_call)\s*>", re.I)


def parse_answer(text: str) -> dict[str, int] | None:
    """Labels found in the last <Answer> block, or None when there is no answer block.

    Only 0, 1 and 2 are labels; any other value leaves that dimension missing.
    """
    blocks = _ANSWER.findall(text)
    if not blocks:
        return None
    labels: dict[str, int] = {}
    for dim, value in _LABEL.findall(blocks[-1][1]):
        if int(value) in (0, 1, 2):
            labels.setdefault(dim.upper(), int(value))
    return labels


@dataclass(frozen=True)
class ToolCall:
    """A parsed tool call: the usable indices in the order asked, and what was dropped, as written."""

    indices: tuple[int, ...]
    dropped: tuple[str, ...]
    error: str = ""


def _load_json(body: str) -> object:
    body = body.strip().strip("`").strip()
    if body.lower().startswith("json"):
        body = body[4:]
    start, end = body.find("{"), body.rfind("}")
    if start < 0:
        raise ValueError("no JSON object")
    try:
        return json.loads(body[start:end + 1])
    except json.JSONDecodeError:
        # common slips: single quotes, trailing commas
        fixed = re.sub(r",\s*([\]}])", r"\1", body[start:end + 1].replace("'", '"'))
        return json.loads(fixed)


def parse_tool_call(text: str, tool_name: str, argument: str, grid_size: int, max_indices: int
                    ) -> ToolCall | None:
    """The first <tool_call> in `text`, validated; None when the reply has no tool-call tag at all.

    Indices must be integers in 0..grid_size-1; duplicates are dropped and the first `max_indices`
    kept. A call with no usable index comes back with empty `indices` and an `error`.
    """
    m = _TOOL.search(text)
    if not m:
        return None
    try:
        obj = _load_json(m[1])
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        args = obj.get("arguments", obj.get("parameters", obj))
        if isinstance(args, str):
            args = _load_json(args)
        name = obj.get("name", tool_name)
        if name != tool_name:
            return ToolCall((), (), f"unknown tool {name!r}")
        raw = args.get(argument) if isinstance(args, dict) else None
    except (ValueError, AttributeError) as e:
        # JSON beyond repair: still take an index list written as `"frame_indices": [..]`
        lm = re.search(rf'"?{re.escape(argument)}"?\s*:\s*\[([^\]]*)\]', m[1])
        if not lm:
            return ToolCall((), (), f"unparseable tool call ({e})")
        raw = [_num(x) for x in lm[1].split(",") if x.strip()]
    if not isinstance(raw, list):
        return ToolCall((), (), f"missing list argument {argument!r}")
    return _validate(raw, grid_size, max_indices)


def _num(token: str) -> object:
    try:
        return json.loads(token.strip())
    except json.JSONDecodeError:
        return token.strip()


def _validate(raw: list, grid_size: int, max_indices: int) -> ToolCall:
    kept: list[int] = []
    dropped: list[str] = []
    for v in raw:
        ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v < grid_size
        if ok and v not in kept and len(kept) < max_indices:
            kept.append(v)
        else:
            dropped.append(json.dumps(v) if not isinstance(v, str) else v)
    error = "" if kept else "no valid frame index"
    return ToolCall(tuple(kept), tuple(dropped), error)


def final_reasoning(text: str) -> str:
    """The reasoning of a final reply: its <Think> text if any, else the reply without tags/answer."""
    thinks = _THINK.findall(text)
    if thinks:
        return thinks[-1].strip()
    return _ANY_TAG.sub("", _ANSWER.sub("", text)).strip()


def labels_or_missing(labels: dict[str, int] | None) -> dict[str, int | None]:
    labels = labels or {}
    return {d: labels.get(d) for d in DIMENSIONS}
