"""DPO rows from the judge's own sampled conversations: chosen ends in the person's label, rejected in the other.

For each selection the judge's whole conversation (tool calls, frames, window memory: its own turn loop,
`vrthinker.conversation.Dialogue`) is run K times: the greedy one (kept in `tune_replies`, as dataset.build
keeps it) and K-1 sampled at a temperature through the backend's `set_sampling` hook (vrthinker.backends.base
.Sampling), each with its own seed derived from the run's seed, the selection and the sample's number, so a
seed gives the same samples again. Sampled conversations are kept in `tune_samples` and replayed, not rerun.

- **sampled**: a conversation whose final label on the selection's dimension is the person's (chosen) and one
  whose label is the other video (rejected), the pair whose row holds the most of both (`pick`). Both are
  replayed to the turn where they part ways; the row is that turn: the shared request (messages + media) as
  prompt, each conversation's reply there as completion.
  Every chosen text was written by the judge on its way to the person's label, so none contradicts its answer.
- **label_swap** (only with `allow_label_swap`): no sample reached one of the two labels; the row is built the
  old way from the greedy conversation (dataset.completions: its final reply with the label digit set), and
  marked synthetic: one of its completions says a label its own reasoning did not reach.
- **none**: no row, with why (how the K samples ended).

The truncation rule is dataset's: conversations are run and replayed under `dataset.limited(profile, max_length)`.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vrthinker.backends.base import Reply, Sampling
from vrthinker.conversation import Dialogue, Outcome, run_dialogues
from vrthinker.errors import ServerError, UsageError, VideoError
from vrthinker.judge import load_videos
from vrthinker.parsing import parse_answer
from vrthinker.protocol import Profile
from vrthinker.store import Store

from dqa.tune import dataset as ds
from dqa.tune.selections import Selection

KINDS = ("sampled", "label_swap", "none")
DEFAULT_SAMPLES = 4
DEFAULT_TEMPERATURE = 0.7


@dataclass(frozen=True)
class Walk:
    """One conversation replayed through the judge's turn loop: each turn's request and reply, how it ended."""

    sample: int  # 0: the greedy conversation
    requests: tuple[tuple[list[dict], list[Any]], ...]
    texts: tuple[str, ...]
    outcome: Outcome

    def label(self, dimension: str) -> int | None:
        """Its final label on `dimension` (None when it ended without an answer)."""
        if self.outcome.reason not in (None, "partial_answer"):
            return None
        return self.outcome.labels.get(dimension)

    @property
    def ending(self) -> str:
        answered = self.outcome.reason in (None, "partial_answer")
        return f"answer@{len(self.texts)}" if answered else str(self.outcome.reason)


def walk(profile: Profile, selection: Selection, grids, replies: Sequence[Reply], sample: int,
         max_turns: int | None = None) -> Walk | None:
    """Replay `replies` through the judge's Dialogue, keeping every request; None when they run out first."""
    d = Dialogue(profile, grids, selection.prompt, max_turns)
    requests, k = [], 0
    while not d.done:
        if k >= len(replies):
            return None
        messages, media = d.request()
        requests.append((json.loads(json.dumps(messages)), list(media)))
        d.receive(replies[k])
        k += 1
    return Walk(sample, tuple(requests), tuple(r.text for r in replies[:k]), d.outcome)


def sample_seed(seed: int, selection_id: int, sample: int) -> int:
    """The seed of one sampled conversation: fixed by the run's seed, the selection and the sample's number."""
    h = hashlib.sha256(f"{seed}:{selection_id}:{sample}".encode()).hexdigest()
    return int(h[:8], 16)


def converse(judge: Any, selection: Selection, grids, sampling: Sampling | None) -> list[Any]:
    """One whole conversation of `judge` on the selection (greedy when `sampling` is None): its Turns."""
    session = judge.backend.new_session()
    if sampling is not None:
        hook = getattr(session, "set_sampling", None)
        if hook is None:
            raise UsageError(f"the {judge.backend.name} backend cannot sample conversations: use --samples 1")
        hook(sampling)
    d = Dialogue(judge.profile, grids, selection.prompt.strip(), judge.max_turns, judge.max_new_tokens)
    return list(run_dialogues(judge.backend, [session], [d])[0].turns)


def stored_samples(store: Store, identity: str, temperature: float, seed: int) -> dict[tuple[int, int], str]:
    rows = store.db.execute("SELECT selection_id, sample, reply FROM tune_samples WHERE judge=? AND temperature=?"
                            " AND seed=?", (identity, float(temperature), int(seed)))
    return {(r[0], r[1]): r[2] for r in rows}


def save_sample(store: Store, selection_id: int, identity: str, sample: int, temperature: float, seed: int,
                turns: Sequence[Any]) -> None:
    text = ds.encode_turns(turns)
    last = ds.decode_turns(text)[-1].text if turns else ""
    with store.transaction():
        store.db.execute("INSERT OR REPLACE INTO tune_samples VALUES (?,?,?,?,?,?,?,?)",
                         (selection_id, identity, sample, float(temperature), int(seed), text,
                          json.dumps(parse_answer(last)), time.time()))


def parting_turn(a: Walk, b: Walk) -> int:
    """The first turn (0-based) whose replies differ: the requests before and at it are the same."""
    t = 0
    while t < min(len(a.texts), len(b.texts)) - 1 and a.texts[t] == b.texts[t]:
        t += 1
    return t


def pick(walks: Sequence[Walk], dimension: str, want: int) -> tuple[Walk | None, Walk | None]:
    """The chosen and the rejected conversation: of every pair reaching the two labels, the one whose row
    holds the most of both conversations (their final answers where they part only there; else the latest
    parting turn), the greedy one and earlier samples first on a tie. Either is None when no conversation
    reaches its label."""
    chosen = [w for w in walks if w.label(dimension) == want]
    rejected = [w for w in walks if w.label(dimension) == 3 - want]
    if not chosen or not rejected:
        return (chosen or [None])[0], (rejected or [None])[0]

    def score(pair):
        c, r = pair
        t = parting_turn(c, r)
        return (t == len(c.texts) - 1 and t == len(r.texts) - 1, t, -c.sample, -r.sample)

    return max(((c, r) for c in chosen for r in rejected), key=score)


def tally(walks: Sequence[Walk], dimension: str, want: int) -> str:
    """How K conversations ended on the selection's dimension, in words."""
    c = Counter()
    for w in walks:
        said = w.label(dimension)
        c["the person's video" if said == want else "the other video" if said == 3 - want
          else "a tie" if said == 0 else "no label"] += 1
    return f"{len(walks)} conversation(s): " + ", ".join(f"{n} {k}" for k, n in c.most_common())


def sampled_row(selection: Selection, chosen: Walk, rejected: Walk, greedy: Walk | None) -> tuple[dict, dict]:
    """(row, meta) at the turn where the chosen and the rejected conversation part ways."""
    t = parting_turn(chosen, rejected)
    messages, media = chosen.requests[t]
    row = {"images": list(media), "prompt": json.loads(json.dumps(messages)),
           "chosen": [{"role": "assistant", "content": chosen.texts[t]}],
           "rejected": [{"role": "assistant", "content": rejected.texts[t]}]}
    said = greedy.label(selection.dimension) if greedy else None
    meta = _meta(selection, said, chosen.ending, "sampled")
    meta.update(parting_turn=t + 1, chosen_sample=chosen.sample, rejected_sample=rejected.sample,
                chosen_final=chosen.texts[-1], rejected_final=rejected.texts[-1])
    return row, meta


def _meta(selection: Selection, said: int | None, ending: str, kind: str) -> dict:
    return {"selection_id": selection.id, "prompt": selection.prompt, "video_a": selection.video_a,
            "video_b": selection.video_b, "hash_a": selection.hash_a, "hash_b": selection.hash_b,
            "dimension": selection.dimension, "chosen": selection.chosen, "judge_label": said,
            "agreed": said == selection.label, "ending": ending, "prompt_tokens": None, "kind": kind,
            "synthetic": kind == "label_swap"}


def build(store: Store, profile: Profile, selections: Sequence[Selection], *, judge: Any = None,
          identity: str | None = None, samples: int = DEFAULT_SAMPLES, temperature: float = DEFAULT_TEMPERATURE,
          seed: int = 0, allow_label_swap: bool = False, max_turns: int | None = None,
          max_length: int | None = None, progress: Callable[[str], None] | None = None) -> ds.Built:
    """Rows of kind sampled (or label_swap, when allowed) for `selections`; `Built.kinds` says what each gave.

    `judge` is a vrthinker Judge or a function that loads one (called once, when a conversation must be run);
    without it only stored conversations are used. `samples` counts the greedy conversation.
    """
    if samples < 1:
        raise UsageError("--samples must be at least 1")
    if samples > 1 and not temperature > 0:
        raise UsageError("--temperature must be above 0 to sample")
    if judge is not None and identity is None and hasattr(judge, "compare"):
        identity = ds.judge_identity(judge, store=store)
    if identity is None:
        raise ValueError("build() needs a judge or the identity of stored conversations")
    rules = ds.limited(profile, max_length)
    greedy_known = ds.stored_replies(store, identity)
    sampled_known = stored_samples(store, identity, temperature, seed)
    the_judge = ds.judge_once(judge, rules, max_turns)

    def conversation(s: Selection, grids, k: int) -> tuple[Walk | None, str]:
        stored = greedy_known.get(s.id) if k == 0 else sampled_known.get((s.id, k))
        got = walk(rules, s, grids, ds.decode_turns(stored), k, max_turns) if stored is not None else None
        if got is not None:
            return got, ""
        if judge is None:
            return None, "no stored conversation from this judge"
        sampling = None if k == 0 else Sampling(temperature, sample_seed(seed, s.id, k))
        try:
            turns = converse(the_judge(), s, grids, sampling)
        except ServerError as e:
            return None, f"server: {e}"
        if not turns:
            return None, "the judge gave no reply"
        if k == 0:
            ds.save_conversation(store, s.id, identity, turns)
        else:
            save_sample(store, s.id, identity, k, temperature, seed, turns)
        return walk(rules, s, grids, ds.decode_turns(ds.encode_turns(turns)), k, max_turns), ""

    out = ds.Built()
    for s in selections:
        try:
            grids = load_videos(profile, s.video_a, s.video_b)
        except VideoError as e:
            out.skipped.append((s.id, f"video: {e}"))
            out.kinds.append((s.id, "none", f"video: {e}"))
            continue
        walks, problems = [], []
        for k in range(samples):
            w, why = conversation(s, grids, k)
            if w is not None:
                walks.append(w)
            elif why:
                problems.append(why)
        greedy = next((w for w in walks if w.sample == 0), None)
        if greedy is not None:
            out.greedy[s.id] = greedy.label(s.dimension)
        dim, want = s.dimension, s.label
        chosen, rejected = pick(walks, dim, want)
        how = tally(walks, dim, want) + (f"; {problems[0]}" if problems else "")
        missing = "the person's label" if chosen is None else "the other video's label"
        if chosen is not None and rejected is not None:
            row, meta = sampled_row(s, chosen, rejected, greedy)
            kind, why = "sampled", f"{how}: parted at turn {meta['parting_turn']}"
        elif allow_label_swap and greedy is not None:
            row, meta = ds.row_for(s, list(greedy.requests[-1][0]), list(greedy.requests[-1][1]), greedy.texts[-1],
                                   answered=greedy.outcome.reason in (None, "partial_answer"),
                                   recommendation=greedy.outcome.recommendation, ending=greedy.ending)
            meta.update(kind="label_swap", synthetic=True)
            kind = "label_swap"
            why = f"{how}: none reached {missing}, so one completion has its label swapped"
        else:
            out.kinds.append((s.id, "none", f"{how}: none reached {missing}" if walks
                              else (problems[0] if problems else "no conversation")))
            if not walks:
                out.skipped.append((s.id, problems[0] if problems else "no conversation"))
            if progress:
                progress(f"selection #{s.id}: no row ({out.kinds[-1][2]})")
            continue
        out.rows.append(row)
        out.meta.append(meta)
        out.kinds.append((s.id, kind, why))
        if progress:
            progress(f"selection #{s.id}: {kind} ({why})")
    return out
