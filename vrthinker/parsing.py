"""Read the model's replies: the final <Answer>, an interim <Recommend Answer>, a <tool_call> and its
frame indices, which of them a reply acts on, and rebuild a reply the way the training loop kept it.

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

from vrthinker.verdict import DIMENSIONS

_ANSWER = re.compile(r"<\s*(answer|final[\s_]*answer)\s*>(.*?)(?:<\s*/\s*\1\s*>|$)", re.I | re.S)
ANSWER_BLOCK = _ANSWER  # public: group 1 the tag's name, group 2 its body (dqa.tune.dataset rewrites labels there)
_LABEL = re.compile(r"\b(TA|VQ|MQ|OA)\s*[=:]\s*\(?\s*(-?\d+)\b", re.I)
_TOOL = re.compile(r"<\s*tool_call\s*>(.*?)(?:<\s*/\s*tool_call\s*>|$)", re.I | re.S)
_THINK = re.compile(r"<\s*think\s*>(.*?)<\s*/\s*think\s*>", re.I | re.S)
_RECOMMEND = re.compile(r"<\s*(recommend(?:ed)?[\s_]*answer)\s*>(.*?)(?:<\s*/\s*recommend(?:ed)?[\s_]*answer\s*>|$)",
                        re.I | re.S)
_CF = re.compile(r"\bCF\s*[=:]\s*\(?\s*(-?\d+)\b", re.I)
_ANY_TAG = re.compile(r"<\s*/?\s*(snapshot|synthesis|think|answer|final[\s_]*answer|recommend(?:ed)?[\s_]*answer"
                      r"|tool_call)\s*>", re.I)


def _label_spans(block: str, base: int = 0) -> dict[str, tuple[int, int]]:
    """(value, offset of its digit in the reply) of the first value written for each dimension; one outside
    0..2 leaves that dimension missing. `base` is where `block` starts in the reply."""
    first: dict[str, tuple[int, int]] = {}
    for m in _LABEL.finditer(block):
        first.setdefault(m[1].upper(), (int(m[2]), base + m.start(2)))
    return {d: v for d, v in first.items() if v[0] in (0, 1, 2)}


def _labels(block: str) -> dict[str, int]:
    """The first value written for each dimension, as the reference reads it; one outside 0..2 leaves
    that dimension missing."""
    return {d: v for d, (v, _) in _label_spans(block).items()}


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


def recommendation_positions(text: str) -> dict[str, int]:
    """Where each label digit of the last <Recommend Answer> block stands in `text` (empty: no block)."""
    blocks = list(_RECOMMEND.finditer(text))
    return {d: at for d, (_, at) in _label_spans(blocks[-1][2], blocks[-1].start(2)).items()} if blocks else {}


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


def read_tool_call(text: str, rules: CallRules) -> ToolCall | None:
    """The first <tool_call> in `text` read under `rules`; None when there is no tool-call tag at all."""
    m = _TOOL.search(text)
    return None if m is None else read_call_body(m[1], rules)


def read_call_body(body: str, rules: CallRules) -> ToolCall:
    """The text between <tool_call> and </tool_call> read as a call under `rules`."""
    if rules.tool_json == "strict":
        return _strict_call(body, rules)
    try:
        obj = _load_json(body)
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
        lm = re.search(rf'"?{re.escape(rules.argument)}"?\s*:\s*\[([^\]]*)\]', body)
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


# --- which part of a reply the conversation acts on ------------------------------------------------------

# The reference infer.py's own patterns, as written there: a closed <Answer> (any case) and a closed
# <tool_call> (this case only) holding one JSON object.
REFERENCE_ANSWER = re.compile(r"<Answer>(.*?)</Answer>", re.S | re.I)
REFERENCE_TOOL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)
_CLOSED_ANSWER = re.compile(r"<\s*(answer|final[\s_]*answer)\s*>(.*?)<\s*/\s*\1\s*>", re.I | re.S)
REPLY_RULES = ("reference", "training")


@dataclass(frozen=True)
class Reading:
    """What a reply is taken as: `action` "answer" (with `labels`), "tool_call" (with `call`, which may
    carry no usable index) or "none"; `recommendation` is any interim <Recommend Answer>, never acted on."""

    action: str
    labels: dict[str, int] | None = None
    call: ToolCall | None = None
    recommendation: dict[str, Any] | None = None
    positions: dict[str, int] = field(default_factory=dict)  # answer label -> offset of its digit in the reply


def read_reply(text: str, rules: CallRules, rule: str = "reference") -> Reading:
    """Which part of `text` the conversation acts on, by `rule`: "reference" (the card's infer.py) or
    "training" (the public training loop, protocol_training.md)."""
    if rule not in REPLY_RULES:
        raise ValueError(f"unknown reply rule {rule!r}")
    read = _reference_reading if rule == "reference" else _training_reading
    action, spans, call = read(text, rules)
    labels = None if spans is None else {d: v for d, (v, _) in spans.items()}
    positions = {d: at for d, (_, at) in (spans or {}).items()}
    return Reading(action, labels, call, parse_recommendation(text), positions)


def answer_positions(text: str) -> dict[str, int]:
    """Where each label digit of the last <Answer> / <final answer> block stands in `text` (empty: none)."""
    return {d: at for d, (_, at) in (_last_answer_spans(text) or {}).items()}


def _last_answer_spans(text: str) -> dict[str, tuple[int, int]] | None:
    """parse_answer with each label's digit offset: the last <Answer> / <final answer> block, or None."""
    blocks = list(_ANSWER.finditer(text))
    return _label_spans(blocks[-1][2], blocks[-1].start(2)) if blocks else None


def _reference_reading(text: str, rules: CallRules) -> tuple[str, dict | None, ToolCall | None]:
    # 1-2: exactly infer.py: the first closed <Answer> if it holds a label as infer.py reads them (one
    # outside 0..2 is then missing), else the first closed <tool_call> whose JSON parses and names the argument.
    m = REFERENCE_ANSWER.search(text)
    found = _reference_labels(m[1], m.start(1)) if m else {}
    if found:
        return "answer", {d: v for d, v in found.items() if v[0] in (0, 1, 2)}, None
    call = _reference_call(text, rules)
    if call is not None:
        return "tool_call", None, call
    # 3: where infer.py gives up (all labels None), the tolerant reading: tag variants, JSON slips and
    # unclosed tags, with the reference's order: a closed answer with a label, a tool call, any answer.
    for block in _CLOSED_ANSWER.finditer(text):
        if _label_spans(block[2]):
            return "answer", _label_spans(block[2], block.start(2)), None
    call = read_tool_call(text, rules)
    if call is not None:
        return "tool_call", None, call
    spans = _last_answer_spans(text)
    return ("answer", spans, None) if spans is not None else ("none", None, None)


def _reference_labels(block: str, base: int = 0) -> dict[str, tuple[int, int]]:
    """infer.py's reading of an answer block: the first digit after each `DIM=`, whatever it is (with its
    offset in the reply; `base` is where the block starts)."""
    found = {d: re.search(rf"{d}\s*=\s*(\d)", block) for d in ("TA", "MQ", "VQ", "OA")}
    return {d: (int(m[1]), base + m.start(1)) for d, m in found.items() if m}


def _reference_call(text: str, rules: CallRules) -> ToolCall | None:
    m = REFERENCE_TOOL.search(text)
    if not m:
        return None
    try:
        obj = json.loads(m[1])
    except json.JSONDecodeError:
        return None
    args = obj.get("arguments", {}) if isinstance(obj, dict) else None
    if not isinstance(args, dict) or rules.argument not in args:
        return None
    # from here on our checks, where infer.py trusts the model: the tool's name, then the indices
    name = obj.get("name", rules.tool_name)
    if name != rules.tool_name:
        return ToolCall((), (), f"unknown tool {name!r}", "unknown_tool")
    raw = args[rules.argument]
    if not isinstance(raw, list):
        return ToolCall((), (), f"missing list argument {rules.argument!r}", "error")
    return _validate(raw, rules)


def _tag_set(text: str) -> str | None:
    """The word set `process()` matches first ("recommend answer", "recommended answer", "final answer")."""
    low = text.lower()
    for last in ("recommend answer", "recommended answer", "final answer"):
        if "synthesis" in low and "think" in low and last in low:
            return last
    return None


def _training_reading(text: str, rules: CallRules) -> tuple[str, dict | None, ToolCall | None]:
    # EM:2340-2545: the reply is cut after its first "</tool_call>"; it asks for frames when process()'s
    # rebuild of it ends in "</tool_call>"; the call is the JSON after the last "<tool_call>" of the cut
    # reply. A final-answer reply (process()'s third word set) drops any call: the episode ends.
    cut = text.strip().replace("<|im_end|>", "")
    end = cut.find("</tool_call>")
    tag_set = _tag_set(cut[:end + len("</tool_call>")] if end >= 0 else cut)
    # process() finding no word set ends training's episode (EM:2508), but whether the checkpoint writes
    # "synthesis" or the prompt's own <Snapshot> is open (protocol_training.md §7, 1): unknown, so such a
    # reply is read as if process() had matched, and its call is served.
    if end >= 0 and tag_set != "final answer" and (tag_set is None or "<tool_call>" in cut[:end].lower()):
        start = cut.rfind("<tool_call>", 0, end)
        body = cut[start + len("<tool_call>"):end] if start >= 0 else cut[:end]
        return "tool_call", None, read_call_body(body, rules)
    # The episode ends; training's answer parser is missing (§7): the tolerant reading of the last answer.
    spans = _last_answer_spans(text)
    return ("answer", spans, None) if spans is not None else ("none", None, None)
