"""Read the model's replies: the final <Answer>, an interim <Recommend Answer>, a <tool_call> and its
frame indices, and rebuild a reply the way the training loop kept it in the conversation.

Tag names and case vary across the paper, the cards and the code (`<Answer>`, `<final answer>`,
`<Snapshot>`/`<synthesis>`, `<think>`/`<Think>`, `<recommend answer>`/`<Recommended Answer>`), so every
pattern is case-insensitive and tolerant of stray whitespace.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .verdict import DIMENSIONS

_ANSWER = re.compile(r"<\s*(answer|final[\s_]*answer)\s*>(.*?)(?:<\s*/\s*\1\s*>|$)", re.I | re.S)
_LABEL = re.compile(r"\b(TA|VQ|MQ|OA)\s*[=:]\s*\(?\s*(-?\d+)\b", re.I)
_TOOL = re.compile(r"<\s*tool_call\s*>(.*?)(?:<\s*/\s*tool_call\s*>|$)", re.I | re.S)
_THINK = re.compile(r"<\s*think\s*>(.*?)<\s*/\s*think\s*>", re.I | re.S)
_RECOMMEND = re.compile(r"<\s*(recommend(?:ed)?[\s_]*answer)\s*>(.*?)(?:<\s*/\s*recommend(?:ed)?[\s_]*answer\s*>|$)",
                        re.I | re.S)
_CF = re.compile(r"\bCF\s*[=:]\s*\(?\s*(-?\d+)\b", re.I)
_ANY_TAG = re.compile(r"<\s*/?\s*(snapshot|synthesis|think|answer|final[\s_]*answer|recommend(?:ed)?[\s_]*answer"
                      r"|tool_call)\s*>", re.I)


def _labels(block: str) -> dict[str, int]:
    labels: dict[str, int] = {}
    for dim, value in _LABEL.findall(block):
        if int(value) in (0, 1, 2):
            labels.setdefault(dim.upper(), int(value))
    return labels


def parse_answer(text: str) -> dict[str, int] | None:
    """Labels found in the last <Answer> / <final answer> block, or None when there is no answer block.

    Only 0, 1 and 2 are labels; any other value leaves that dimension missing.
    """
    blocks = _ANSWER.findall(text)
    return _labels(blocks[-1][1]) if blocks else None


def parse_recommendation(text: str) -> dict[str, Any] | None:
    """The last <Recommend Answer> block: {"labels": {...}, "confidence": CF or None}, or None if absent.

    CF runs 1 (most confident) to 3; another value is kept as None.
    """
    blocks = _RECOMMEND.findall(text)
    if not blocks:
        return None
    cf = _CF.search(blocks[-1][1])
    confidence = int(cf[1]) if cf and int(cf[1]) in (1, 2, 3) else None
    return {"labels": _labels(blocks[-1][1]), "confidence": confidence}


@dataclass(frozen=True)
class ToolCall:
    """A parsed tool call: the usable indices in the order asked, and what was dropped, as written.

    `refusal` names why nothing is fetched ("over_limit", "out_of_range", "unknown_tool", "error"), for
    profiles that answer such a call with a message; `asked` is how many indices the call held.
    """

    indices: tuple[int, ...]
    dropped: tuple[str, ...]
    error: str = ""
    refusal: str = ""
    asked: int = 0


@dataclass(frozen=True)
class CallRules:
    """How a profile reads a tool call: name, argument, valid index range (inclusive) and what to do
    with too many, unusable or repeated indices and with JSON that does not parse as written."""

    tool_name: str
    argument: str
    low: int
    high: int
    max_indices: int
    over_limit: str = "truncate"  # or "refuse"
    bad_index: str = "drop"  # or "refuse"
    duplicates: str = "drop"  # or "keep"
    tool_json: str = "lenient"  # or "strict"
    extra: dict = field(default_factory=dict, compare=False)


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
    return read_tool_call(text, CallRules(tool_name, argument, 0, grid_size - 1, max_indices))


def read_tool_call(text: str, rules: CallRules) -> ToolCall | None:
    """The first <tool_call> in `text` read under `rules`; None when there is no tool-call tag at all."""
    m = _TOOL.search(text)
    if not m:
        return None
    if rules.tool_json == "strict":
        return _strict_call(m[1], rules)
    try:
        obj = _load_json(m[1])
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        args = obj.get("arguments", obj.get("parameters", obj))
        if isinstance(args, str):
            args = _load_json(args)
        name = obj.get("name", rules.tool_name)
        if name != rules.tool_name:
            return ToolCall((), (), f"unknown tool {name!r}", "unknown_tool")
        raw = args.get(rules.argument) if isinstance(args, dict) else None
    except (ValueError, AttributeError) as e:
        # JSON beyond repair: still take an index list written as `"frame_indices": [..]`
        lm = re.search(rf'"?{re.escape(rules.argument)}"?\s*:\s*\[([^\]]*)\]', m[1])
        if not lm:
            return ToolCall((), (), f"unparseable tool call ({e})", "error")
        raw = [_num(x) for x in lm[1].split(",") if x.strip()]
    if not isinstance(raw, list):
        return ToolCall((), (), f"missing list argument {rules.argument!r}", "error")
    return _validate(raw, rules)


def _strict_call(body: str, rules: CallRules) -> ToolCall:
    """Training's reading: json.loads of the call as written, `name` and `arguments` required."""
    try:
        obj = json.loads(body)
        name, raw = obj["name"], obj["arguments"][rules.argument]
    except (ValueError, KeyError, TypeError, IndexError) as e:
        return ToolCall((), (), f"tool call is not valid JSON with name and arguments ({type(e).__name__}: {e})",
                        "error")
    if name != rules.tool_name:
        return ToolCall((), (), f"unknown tool {name!r}", "unknown_tool")
    if not isinstance(raw, list):
        return ToolCall((), (), f"argument {rules.argument!r} is not a list", "error")
    return _validate(raw, rules)


def _num(token: str) -> object:
    try:
        return json.loads(token.strip())
    except json.JSONDecodeError:
        return token.strip()


def _as_written(v: object) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _is_index(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _validate(raw: list, rules: CallRules) -> ToolCall:
    n = len(raw)
    if rules.over_limit == "refuse" and n > rules.max_indices:
        return ToolCall((), tuple(map(_as_written, raw)), f"{n} indices, at most {rules.max_indices}",
                        "over_limit", n)
    if rules.bad_index == "refuse":
        if not raw or not all(_is_index(v) for v in raw):
            return ToolCall((), tuple(map(_as_written, raw)), "frame indices must be a non-empty list of "
                            "integers", "error", n)
        if any(not rules.low <= v <= rules.high for v in raw):
            return ToolCall((), tuple(map(_as_written, raw)), f"an index outside {rules.low}..{rules.high}",
                            "out_of_range", n)
    kept: list[int] = []
    dropped: list[str] = []
    for v in raw:
        ok = _is_index(v) and rules.low <= v <= rules.high
        fresh = rules.duplicates == "keep" or v not in kept
        if ok and fresh and len(kept) < rules.max_indices:
            kept.append(v)
        else:
            dropped.append(_as_written(v))
    error = "" if kept else "no valid frame index"
    return ToolCall(tuple(kept), tuple(dropped), error, "" if kept else "error", n)


def final_reasoning(text: str) -> str:
    """The reasoning of a final reply: its <Think> text if any, else the reply without tags/answer."""
    thinks = _THINK.findall(text)
    if thinks:
        return thinks[-1].strip()
    return _ANY_TAG.sub("", _ANSWER.sub("", text)).strip()


def labels_or_missing(labels: dict[str, int] | None) -> dict[str, int | None]:
    labels = labels or {}
    return {d: labels.get(d) for d in DIMENSIONS}


def _training_process(text: str) -> tuple[str, bool]:
    """EM `process()` (experience_maker.py @7f6291a), kept byte for byte in behaviour, quirks included:
    the reply rebuilt from the first occurrences of the words synthesis / think / recommend(ed) answer or
    final answer; True when one of those word sets was found."""
    strip = " \n\b#<>"
    for tags in (("synthesis", "think", "recommend answer"), ("synthesis", "think", "recommended answer"),
                 ("synthesis", "think", "final answer")):
        if not all(t in text.lower() for t in tags):
            continue
        text = text.replace("</synthesis>", "").replace("</think>", "")
        low = text.lower()
        pos = [(low.find(t), low.find(t) + len(t)) for t in tags]
        out = ("<synthesis>" + text[pos[0][1]:pos[1][0]].strip(strip) + "</synthesis>\n"
               + "<think>" + text[pos[1][1]:pos[2][0]].strip(strip) + "</think>")
        if tags[2] == "final answer":
            text = text.split("</final answer>")[0]
            return out + "<final answer>" + text[pos[2][1]:].strip(strip) + "</final answer>", True
        text = text.replace("</recommend answer>", "")
        at = text.lower().find("<tool_call>")
        if at == -1:
            return out, False
        return out + "<recommend answer>" + text[pos[2][1]:at].strip(strip) + "</recommend answer>" + text[at:], True
    return text, False


def training_history(text: str) -> str:
    """A reply as the training loop kept it in the conversation: stripped, cut after the first
    </tool_call>, rebuilt by `process()`, from `<synthesis>` on. Where process() finds no tag set
    (training would end the episode there) the reply is kept as written, stripped and cut."""
    text = text.strip().replace("<|im_end|>", "")
    end = text.find("</tool_call>")
    if end >= 0:
        text = text[:end + len("</tool_call>")]
    out, _ = _training_process(text)
    start = out.find("<synthesis>")
    return out[start:] if start >= 0 else out


HISTORY: dict[str, Callable[[str], str]] = {"raw": lambda text: text, "process": training_history}
