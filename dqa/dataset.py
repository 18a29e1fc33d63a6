"""DPO rows for the judge from a person's selections, in TRL's conversational vision format.

For each selection the prompt is the judge's own first turn, rendered by the protocol code
(`vrthinker.protocol.Conversation`): the system message, then one user message with the 8 initial frames
(4 of video a as "Video 1", then 4 of video b) and the profile's text. It is kept in the structured form
the judge renders ({"type": "image"} placeholders in place, {"type": "text"} items), which TRL 1.16's
`prepare_multimodal_messages` keeps as it is and fills with the row's `images` in order; rendered through
the processor's chat template it is the judge's text exactly (tests/test_tune.py checks it).

The completions come from the judge's first reply to that turn (generated here, or reused from the
`tune_replies` table). Only the selection's dimension changes between them:

- the judge disagreed (another label, a tie, or the dimension missing): rejected = its reply as written,
  chosen = the same reply with the person's label in its <Answer>;
- the judge agreed: chosen = its reply, rejected = the same reply with the other video's label.

A first reply with no <Answer> at all (a tool call) gives no pair and is reported as skipped.
Profiles that show the initial frames as one video item are not supported (TRL's collator takes images).
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vrthinker.errors import UsageError, VideoError
from vrthinker.judge import load_videos
from vrthinker.batch import identify
from vrthinker.parsing import ANSWER_BLOCK, parse_answer
from vrthinker.protocol import Conversation, Profile
from vrthinker.store import Store

from .selections import Selection


def judge_identity(judge: Any, adapter: str | None = None) -> str:
    """What the stored replies depend on: the model, the protocol version and an adapter (the judge's
    `vrthinker.batch.identify` label)."""
    return identify(judge, adapter=adapter).label


def set_label(reply: str, dimension: str, label: int) -> str | None:
    """`reply` with `dimension`'s label in its last <Answer> block set to `label` (added when missing).

    None when the reply has no <Answer> block.
    """
    blocks = list(ANSWER_BLOCK.finditer(reply))
    if not blocks:
        return None
    m = blocks[-1]
    body = m.group(2)
    pat = re.compile(rf"\b({dimension})(\s*[=:]\s*\(?\s*)(-?\d+)\b", re.I)
    if pat.search(body):
        body = pat.sub(lambda x: f"{x.group(1)}{x.group(2)}{label}", body, count=1)
    else:
        sep = ", " if body.strip() else ""
        body = body.rstrip() + f"{sep}{dimension}={label}" + body[len(body.rstrip()):]
    return reply[:m.start(2)] + body + reply[m.end(2):]


@dataclass
class Built:
    """Rows for TRL, what each row came from (same order), and the selections that gave no row, with why."""

    rows: list[dict] = field(default_factory=list)
    meta: list[dict] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def agreement(self) -> float | None:
        """How often the judge's first reply agreed with the person, over the rows."""
        return sum(m["agreed"] for m in self.meta) / len(self.meta) if self.meta else None


def stored_replies(store: Store, identity: str) -> dict[int, str]:
    rows = store.db.execute("SELECT selection_id, reply FROM tune_replies WHERE judge=?", (identity,))
    return {r[0]: r[1] for r in rows}


def save_reply(store: Store, selection_id: int, identity: str, reply: str) -> None:
    with store.transaction():
        store.db.execute("INSERT OR REPLACE INTO tune_replies VALUES (?,?,?,?,?)",
                         (selection_id, identity, reply, json.dumps(parse_answer(reply)), time.time()))


def first_turn(profile: Profile, selection: Selection, grids) -> tuple[list[dict], list[Any]]:
    """The judge's first request for a selection (video a first): messages and images."""
    if profile.initial_item != "images":
        raise UsageError(f"profile {profile.name} shows the initial frames as a video; the tuner needs images")
    messages, media = Conversation(profile, selection.prompt, grids).request()
    return json.loads(json.dumps(messages)), list(media)  # plain copies: Arrow owns them from here


def row_for(selection: Selection, messages: list[dict], images: list[Any], reply: str) -> tuple[dict, dict] | str:
    """(row, meta) for one selection and the judge's reply, or why there is none."""
    labels = parse_answer(reply)
    if labels is None:
        return "the judge's first reply has no <Answer> (a tool call or no answer)"
    dim, want = selection.dimension, selection.label
    said = labels.get(dim)
    agreed = said == want
    if agreed:
        chosen, rejected = reply, set_label(reply, dim, 3 - want)
    else:
        chosen, rejected = set_label(reply, dim, want), reply
    row = {"images": images, "prompt": messages,
           "chosen": [{"role": "assistant", "content": chosen}],
           "rejected": [{"role": "assistant", "content": rejected}]}
    meta = {"selection_id": selection.id, "prompt": selection.prompt, "video_a": selection.video_a,
            "video_b": selection.video_b, "hash_a": selection.hash_a, "hash_b": selection.hash_b,
            "dimension": dim, "chosen": selection.chosen, "judge_label": said, "agreed": agreed}
    return row, meta


def build(store: Store, profile: Profile, selections: Sequence[Selection], *, judge: Any = None,
          identity: str | None = None, progress: Callable[[str], None] | None = None) -> Built:
    """DPO rows for `selections`: replies reused from `tune_replies` under `identity`, else generated.

    With `judge` (a vrthinker Judge) missing replies are generated (first turn only) and stored;
    without one, selections with no stored reply are skipped.
    """
    if judge is not None:
        identity = identity or judge_identity(judge)
    if identity is None:
        raise ValueError("build() needs a judge or the identity of stored replies")
    known = stored_replies(store, identity)
    out = Built()
    for s in selections:
        try:
            grids = load_videos(profile, s.video_a, s.video_b)
        except VideoError as e:
            out.skipped.append((s.id, f"video: {e}"))
            continue
        reply = known.get(s.id)
        if reply is None:
            if judge is None:
                out.skipped.append((s.id, "no stored reply from this judge"))
                continue
            reply = first_reply(judge, s, grids)
            save_reply(store, s.id, identity, reply)
            if progress:
                progress(f"selection #{s.id}: judged")
        messages, images = first_turn(profile, s, grids)
        made = row_for(s, messages, images, reply)
        if isinstance(made, str):
            out.skipped.append((s.id, made))
            continue
        out.rows.append(made[0])
        out.meta.append(made[1])
    return out


def first_reply(judge: Any, selection: Selection, grids) -> str:
    """The judge's first reply to its first turn (one turn only: later turns are not needed)."""
    saved = judge.max_turns
    judge.max_turns = 1
    try:
        v = judge.compare(selection.video_a, selection.video_b, selection.prompt, grids=grids)
    finally:
        judge.max_turns = saved
    return v.turns[0].reply if v.turns else ""


def to_dataset(rows: Sequence[dict]):
    """A `datasets.Dataset` that `trl.DPOTrainer` takes unchanged."""
    from datasets import Dataset

    return Dataset.from_list(list(rows))
