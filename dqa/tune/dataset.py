"""DPO rows for the judge from a person's selections: the judge's whole conversation, up to its final reply.

For each selection the judge's full conversation on the pair is run (or its stored replies reused from the
`tune_replies` table) and replayed through the judge's own turn loop (`vrthinker.conversation.Dialogue`),
so the frames it asked for and their tool responses are rebuilt exactly as the judge rendered them (window
memory included). The DPO prompt is the request of the judge's final turn: `Dialogue.request()`'s messages
and media (PIL images for `<|image_pad|>`, protocol.Clip for the `training` profile's `<|video_pad|>`),
rendered by the processor's chat template with the generation prompt, as `HFSession.prepare` renders it.

The two completions differ in the selection's dimension only:

- the judge answered at turn k: chosen/rejected are that reply with the person's label and with the other
  video's label (the reply as written is one of the two);
- the judge ended without an answer (no_answer, turn_limit, token_limit, malformed_tool_call): its last
  reasoning (the final reply up to its first <tool_call>, <Recommend Answer> or <Answer> tag) followed by
  an <Answer> block. Its other dimensions are the judge's last <Recommend Answer> where it gave one, else 0
  (a tie): the DPO loss compares the two completions, which share those tokens.

So every selection whose videos decode gives a row; `Row.ending` says which case ("answer@k" or the reason).

Truncation rule (the same at judging): a conversation is cut where a judge whose profile has
`max_context_tokens = max_length` would have stopped serving tool calls (prompt + reply tokens of a turn
past the limit end it with token_limit); the row is then that turn's, completed as above. The replay runs
the judge's own Dialogue with that limit, so the cut is decided by the same code at training and judging.
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vrthinker.backends.base import Reply
from vrthinker.batch import identify
from vrthinker.conversation import Dialogue, Outcome
from vrthinker.errors import VideoError
from vrthinker.judge import load_videos
from vrthinker.parsing import ANSWER_BLOCK, parse_answer
from vrthinker.protocol import Conversation, Profile
from vrthinker.store import Store
from vrthinker.verdict import DIMENSIONS

from dqa.tune.selections import Selection

END_OF_TURN = "<|im_end|>"  # what the model writes after its reply (its eos): scored with the completion
_CUT = re.compile(r"<\s*(tool_call|recommend(?:ed)?[\s_]*answer|answer|final[\s_]*answer)\s*>", re.I)


def judge_identity(judge: Any, adapter: str | None = None, store: Store | None = None) -> str:
    """What the stored replies depend on: the model, the protocol version and an adapter (the judge's
    `vrthinker.batch.identify` label); with `store`, checkpoint files are hashed through its cache."""
    return identify(judge, adapter=adapter, store=store).label


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


def last_reasoning(reply: str) -> str:
    """A reply that ended without an answer, up to its first tool call / recommendation / answer tag."""
    m = _CUT.search(reply)
    return (reply[:m.start()] if m else reply).strip()


def answer_block(labels: dict[str, int]) -> str:
    return "<Answer>" + ", ".join(f"{d}={labels[d]}" for d in DIMENSIONS if d in labels) + "</Answer>"


@dataclass
class Built:
    """Rows for the trainer, what each row came from (same order), and the selections that gave no row."""

    rows: list[dict] = field(default_factory=list)
    meta: list[dict] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    kinds: list[tuple[int, str, str]] = field(default_factory=list)  # per selection: (id, kind, why) (sampling)
    greedy: dict[int, int | None] = field(default_factory=dict)  # per selection: the greedy conversation's label

    @property
    def kind_counts(self) -> dict[str, int]:
        """Selections per kind of row: sampled, label_swap, none (dqa.tune.sampling)."""
        c = Counter(k for _, k, _ in self.kinds)
        return {k: c.get(k, 0) for k in ("sampled", "label_swap", "none")}

    @property
    def agreement(self) -> float | None:
        """How often the judge's final label agreed with the person, over the rows."""
        return sum(m["agreed"] for m in self.meta) / len(self.meta) if self.meta else None

    @property
    def endings(self) -> dict[str, int]:
        """Rows per ending: "answer@k" (answered at turn k) or the reason the judge ended without one."""
        return dict(sorted(Counter(m["ending"] for m in self.meta).items()))


# --- stored conversations --------------------------------------------------------------------------------

_TURN_FIELDS = ("text", "stopped", "new_tokens", "prefill_tokens", "reused_tokens")


def encode_turns(turns: Sequence[Any]) -> str:
    """A conversation's replies (vrthinker Turns or Replies) as stored in `tune_replies.reply`: JSON
    {"turns": [{text, stopped, token counts}]}, enough to replay it (tool responses are rebuilt)."""
    rows = [{"text": t.reply if hasattr(t, "reply") else t.text,
             **{k: getattr(t, k) for k in _TURN_FIELDS[1:]}} for t in turns]
    return json.dumps({"turns": rows}, ensure_ascii=False)


def decode_turns(stored: str) -> list[Reply]:
    """The replies of a stored conversation; a plain-text row (older tuners kept the first reply only) is
    a one-reply conversation."""
    if stored.startswith('{"turns"'):
        try:
            return [Reply(**{k: t[k] for k in _TURN_FIELDS if k in t}) for t in json.loads(stored)["turns"]]
        except (ValueError, KeyError, TypeError):
            pass
    return [Reply(text=stored)]


def stored_replies(store: Store, identity: str) -> dict[int, str]:
    rows = store.db.execute("SELECT selection_id, reply FROM tune_replies WHERE judge=?", (identity,))
    return {r[0]: r[1] for r in rows}


def save_conversation(store: Store, selection_id: int, identity: str, turns: Sequence[Any]) -> None:
    text = encode_turns(turns)
    last = decode_turns(text)[-1].text if turns else ""
    with store.transaction():
        store.db.execute("INSERT OR REPLACE INTO tune_replies VALUES (?,?,?,?,?)",
                         (selection_id, identity, text, json.dumps(parse_answer(last)), time.time()))


def save_reply(store: Store, selection_id: int, identity: str, reply: str) -> None:
    """Store a one-reply conversation (a judge that answered at once)."""
    save_conversation(store, selection_id, identity, [Reply(text=reply)])


# --- replay: the judge's own turn loop over stored replies ------------------------------------------------

@dataclass(frozen=True)
class Replayed:
    """The final turn of a conversation: the request the judge answered, its reply, how it ended."""

    messages: list[dict]
    media: list[Any]
    reply: str
    turn: int  # 1-based
    outcome: Outcome

    @property
    def answered(self) -> bool:
        return self.outcome.reason in (None, "partial_answer")

    @property
    def ending(self) -> str:
        return f"answer@{self.turn}" if self.answered else str(self.outcome.reason)


def limited(profile: Profile, max_length: int | None) -> Profile:
    """`profile` with the truncation rule: no tool call served once a turn passes `max_length` tokens."""
    if not max_length:
        return profile
    limit = min(max_length, profile.max_context_tokens or max_length)
    return replace(profile, max_context_tokens=limit)


def replay(profile: Profile, selection: Selection, grids, replies: Sequence[Reply],
           max_turns: int | None = None) -> Replayed | None:
    """Run the judge's Dialogue on `replies`; None when they run out before the conversation ends (they
    came from a run with fewer turns, or only the first reply was kept)."""
    d = Dialogue(profile, grids, selection.prompt, max_turns)
    request, k = None, 0
    while not d.done:
        if k >= len(replies):
            return None
        request = d.request()
        d.receive(replies[k])
        k += 1
    messages, media = request
    return Replayed(json.loads(json.dumps(messages)), list(media), replies[k - 1].text, k, d.outcome)


def first_turn(profile: Profile, selection: Selection, grids) -> tuple[list[dict], list[Any]]:
    """The judge's first request for a selection (video a first): messages and media."""
    messages, media = Conversation(profile, selection.prompt, grids).request()
    return json.loads(json.dumps(messages)), list(media)


# --- rows ------------------------------------------------------------------------------------------------

def completions(reply: str, answered: bool, recommendation: dict | None, dimension: str,
                want: int) -> tuple[str, str, int | None]:
    """(chosen, rejected, the judge's own label on `dimension` or None) for a final reply."""
    if answered and parse_answer(reply) is not None:
        said = parse_answer(reply).get(dimension)
        if said == want:
            return reply, set_label(reply, dimension, 3 - want), said
        return set_label(reply, dimension, want), reply, said
    labels = {d: 0 for d in DIMENSIONS}
    labels.update((recommendation or {}).get("labels") or {})
    said = (recommendation or {}).get("labels", {}).get(dimension)
    head = last_reasoning(reply)
    head = head + "\n" if head else ""
    make = lambda v: head + answer_block({**labels, dimension: v})  # noqa: E731
    return make(want), make(3 - want), said


def row_for(selection: Selection, messages: list[dict], media: list[Any], reply: str, *,
            answered: bool = True, recommendation: dict | None = None, ending: str = "answer@1",
            prompt_tokens: int | None = None) -> tuple[dict, dict]:
    """(row, meta) for one selection: the request the judge answered, and its final reply."""
    dim, want = selection.dimension, selection.label
    chosen, rejected, said = completions(reply, answered, recommendation, dim, want)
    row = {"images": media, "prompt": messages,
           "chosen": [{"role": "assistant", "content": chosen}],
           "rejected": [{"role": "assistant", "content": rejected}]}
    meta = {"selection_id": selection.id, "prompt": selection.prompt, "video_a": selection.video_a,
            "video_b": selection.video_b, "hash_a": selection.hash_a, "hash_b": selection.hash_b,
            "dimension": dim, "chosen": selection.chosen, "judge_label": said, "agreed": said == want,
            "ending": ending, "prompt_tokens": prompt_tokens}
    return row, meta


def _conversation(judge: Any, selection: Selection, grids) -> list[Any]:
    v = judge.compare(selection.video_a, selection.video_b, selection.prompt, grids=grids)
    return list(v.turns)


def judge_once(judge: Any, rules: Profile, max_turns: int | None) -> Callable[[], Any]:
    """A function giving `judge` (a Judge, or a function that loads one: called on first use only), set to the
    limits `rules` and `max_turns`, so that judging runs under the same limits as the rows are built."""
    loaded: list[Any] = []

    def the_judge():
        if not loaded:
            j = judge if hasattr(judge, "compare") else judge()
            j.profile = rules  # the same limits when judging as when building rows
            if max_turns:
                j.max_turns = max_turns
            loaded.append(j)
        return loaded[0]

    return the_judge


def build(store: Store, profile: Profile, selections: Sequence[Selection], *, judge: Any = None,
          identity: str | None = None, max_turns: int | None = None, max_length: int | None = None,
          progress: Callable[[str], None] | None = None) -> Built:
    """DPO rows for `selections` from whole conversations: stored under `identity` and replayed, else run.

    `judge` is a vrthinker Judge, or a function that loads one (called once, when a conversation must be
    run; it is given the truncation limit and `max_turns`). Without it, a selection whose stored replies do
    not finish the conversation is skipped.
    `max_turns` limits the conversations; `max_length` is the truncation rule (see the module doc).
    """
    if judge is not None and identity is None and hasattr(judge, "compare"):
        identity = judge_identity(judge, store=store)
    if identity is None:
        raise ValueError("build() needs a judge or the identity of stored replies")
    rules = limited(profile, max_length)
    known = stored_replies(store, identity)
    the_judge = judge_once(judge, rules, max_turns)

    out = Built()
    for s in selections:
        try:
            grids = load_videos(profile, s.video_a, s.video_b)
        except VideoError as e:
            out.skipped.append((s.id, f"video: {e}"))
            continue
        got = replay(rules, s, grids, decode_turns(known[s.id]), max_turns) if s.id in known else None
        if got is None:
            if judge is None:
                out.skipped.append((s.id, "no stored conversation from this judge"))
                continue
            turns = _conversation(the_judge(), s, grids)
            if not turns:
                out.skipped.append((s.id, "the judge gave no reply"))
                continue
            save_conversation(store, s.id, identity, turns)
            got = replay(rules, s, grids, decode_turns(encode_turns(turns)), max_turns)
            if got is None:  # pragma: no cover - the judge's own loop ended it
                out.skipped.append((s.id, "the conversation did not replay"))
                continue
            if progress:
                progress(f"selection #{s.id}: judged ({got.ending})")
        row, meta = row_for(s, got.messages, got.media, got.reply, answered=got.answered,
                            recommendation=got.outcome.recommendation, ending=got.ending)
        out.rows.append(row)
        out.meta.append(meta)
    return out


# --- rendering and collation ------------------------------------------------------------------------------

def render_prompt(processor: Any, row: dict) -> str:
    """A row's prompt as the judge renders that turn (`HFSession.prepare`: chat template, generation prompt)."""
    return processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)


def _is_clip(x: Any) -> bool:
    return hasattr(x, "frames")


def encode_prompt(processor: Any, row: dict) -> dict:
    """The processor's tensors for a row's prompt: images through the image path, Clips (the `training`
    profile's video item) through the video path with the judge's settings (frames as given, their fps)."""
    from transformers.video_utils import VideoMetadata

    from vrthinker.backends.hf import VIDEO_BOUNDS

    images = [x for x in row["images"] if not _is_clip(x)]
    clips = [x for x in row["images"] if _is_clip(x)]
    kw: dict[str, Any] = {}
    if clips:
        kw = {"videos": [list(c.frames) for c in clips], "videos_kwargs": {
            "size": VIDEO_BOUNDS, "do_sample_frames": False, "cap_pixels_per_frame": False,
            "video_metadata": [VideoMetadata(total_num_frames=len(c.frames), fps=c.fps) for c in clips]}}
    return processor(text=[render_prompt(processor, row)], images=images or None, return_tensors="pt", **kw)


def completion_ids(processor: Any, row: dict, which: str) -> list[int]:
    return processor.tokenizer(row[which][0]["content"] + END_OF_TURN, add_special_tokens=False)["input_ids"]


_VISION_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


@dataclass
class Collator:
    """Batches for `trl.DPOTrainer` (chosen rows first, then rejected, as its loss expects) from rows whose
    media hold images and videos: TRL 1.16's vision collator takes images only. Right padding; the
    completion mask covers each reply and its end-of-turn token. Examples are rows, or {"row": i} for
    `rows[i]` (the trainer's datasets hold indices: see `to_dataset`)."""

    processor: Any
    rows: Sequence[dict] = ()

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        rows = [self.rows[e["row"]] if "row" in e else e for e in examples]
        tok = self.processor.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        encoded = [encode_prompt(self.processor, r) for r in rows]
        seqs, masks = [], []
        for which in ("chosen", "rejected"):
            for r, e in zip(rows, encoded):
                p = e["input_ids"][0].tolist()
                c = completion_ids(self.processor, r, which)
                seqs.append(p + c)
                masks.append([0] * len(p) + [1] * len(c))
        n = max(len(s) for s in seqs)
        input_ids = torch.tensor([s + [pad_id] * (n - len(s)) for s in seqs])
        attention = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in seqs])
        completion = torch.tensor([m + [0] * (n - len(m)) for m in masks])
        cfg = self.processor
        image_id = cfg.tokenizer.convert_tokens_to_ids(cfg.image_token)
        video_id = cfg.tokenizer.convert_tokens_to_ids(cfg.video_token)
        out = {"input_ids": input_ids, "attention_mask": attention, "completion_mask": completion,
               "mm_token_type_ids": (input_ids == image_id).long() + 2 * (input_ids == video_id).long()}
        for key in _VISION_KEYS:  # each sequence's media in batch order, for the chosen and the rejected half
            parts = [e[key] for e in encoded if key in e]
            if parts:
                out[key] = torch.cat(parts + parts)
        return out


def row_tokens(processor: Any, row: dict) -> int:
    """Tokens of a row's longer sequence (prompt + the longer completion)."""
    p = encode_prompt(processor, row)["input_ids"].shape[1]
    return int(p) + max(len(completion_ids(processor, row, w)) for w in ("chosen", "rejected"))


def to_dataset(indices: Sequence[int]):
    """A `datasets.Dataset` of row indices for `trl.DPOTrainer` (which takes nothing else): the rows, whose
    media are PIL images and Clips, stay with the Collator. The empty "images" column makes TRL treat it as
    vision data (no text-only tokenization up front)."""
    from datasets import Dataset

    return Dataset.from_dict({"row": list(indices), "images": [[] for _ in indices]})
