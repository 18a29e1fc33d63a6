"""The VisionReward-style checklist (arXiv 2412.21059): yes/no questions per axis, and their scores from P(yes).

The questions are data (judge_prompts/visionreward/checklist.json); this module loads and validates them,
renders each for a prompt, turns next-token logits (or a server's top log-probabilities) into P(yes), and
combines question scores into axis scores and one weighted total. No model here: dqa.workers.vlm asks the questions.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

PROMPT = "{prompt}"
# Answer tokens whose probabilities are summed: each is a single token in Qwen2.5's vocabulary (checked
# by yes_no_ids); the leading-space forms are what a reply continuing a sentence would start with.
YES_WORDS = ("yes", "Yes", " yes", " Yes", "YES", " YES")
NO_WORDS = ("no", "No", " no", " No", "NO", " NO")


class ChecklistError(ValueError):
    """The checklist file is malformed: the message names the file and what to fix."""


@dataclass(frozen=True)
class Question:
    id: str
    axis: str
    text: str
    polarity: int = 1  # +1: "yes" is good; -1: "yes" is bad (the question scores 1 - P(yes))
    weight: float = 1.0

    @property
    def needs_prompt(self) -> bool:
        return PROMPT in self.text

    def render(self, prompt: str) -> str:
        # str.replace, not str.format: prompts may hold braces
        return self.text.replace(PROMPT, prompt.strip())


@dataclass(frozen=True)
class Checklist:
    name: str
    version: str
    axis_weights: Mapping[str, float]
    questions: tuple[Question, ...]
    intro: str  # before every question; "{n}" is the number of frames shown
    answer: str  # after every question ("Answer yes or no.")
    semantic_prompt: str  # "{prompt}"
    semantic_entity: str  # "{entity}"
    preference: str  # "{prompt}"
    digest: str  # sha256 of the file, first 12 hex digits: a changed checklist is not mistaken for this one
    answer_prefix: str = ""  # text the assistant's reply starts with, before the answer word (default none)

    def text(self, question: str, n_frames: int) -> str:
        """The whole user text for one question (after the frames)."""
        return f"{self.intro.replace('{n}', str(n_frames))}\n{question} {self.answer}"


def default_path() -> Path:
    return Path(str(resources.files("judge_prompts"))) / "visionreward" / "checklist.json"


def load_checklist(path: str | Path | None = None) -> Checklist:
    """Load and validate a checklist file (default: the packaged one); ChecklistError says what is wrong."""
    path = Path(path) if path is not None else default_path()
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except OSError as e:
        raise ChecklistError(f"{path}: cannot be read ({e.strerror or e})") from None
    except ValueError as e:
        raise ChecklistError(f"{path}: not valid JSON ({e})") from None
    return parse_checklist(data, str(path), hashlib.sha256(raw).hexdigest()[:12])


def parse_checklist(data: Any, where: str = "checklist", digest: str = "") -> Checklist:
    def bad(msg: str) -> ChecklistError:
        return ChecklistError(f"{where}: {msg}")

    if not isinstance(data, dict):
        raise bad("the top level must be an object")
    for key in ("axis_weights", "questions", "intro", "answer", "semantic", "preference"):
        if key not in data:
            raise bad(f"missing {key!r}")
    weights = data["axis_weights"]
    if not isinstance(weights, dict) or not weights:
        raise bad("'axis_weights' must map each axis to its weight")
    for axis, w in weights.items():
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w <= 0:
            raise bad(f"axis {axis!r}: weight must be a positive number, not {w!r}")
    if abs(sum(weights.values()) - 1.0) > 1e-6:
        raise bad(f"axis weights must sum to 1, they sum to {sum(weights.values()):g}")
    if not isinstance(data["questions"], list) or not data["questions"]:
        raise bad("'questions' must be a non-empty list")
    questions, seen = [], set()
    for i, q in enumerate(data["questions"]):
        label = f"question {i + 1}" + (f" ({q.get('id')!r})" if isinstance(q, dict) and "id" in q else "")
        if not isinstance(q, dict):
            raise bad(f"{label} must be an object")
        missing = [k for k in ("id", "axis", "text", "polarity") if k not in q]
        if missing:
            raise bad(f"{label}: missing {', '.join(missing)}")
        if not isinstance(q["id"], str) or not q["id"] or q["id"] in seen:
            raise bad(f"{label}: ids must be unique non-empty strings")
        seen.add(q["id"])
        if q["axis"] not in weights:
            raise bad(f"{label}: axis {q['axis']!r} is not in axis_weights ({', '.join(weights)})")
        if q["polarity"] not in (1, -1) or isinstance(q["polarity"], bool):
            raise bad(f"{label}: polarity must be 1 or -1, not {q['polarity']!r}")
        weight = q.get("weight", 1)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
            raise bad(f"{label}: weight must be a positive number, not {weight!r}")
        if not isinstance(q["text"], str) or not q["text"].strip():
            raise bad(f"{label}: empty text")
        questions.append(Question(q["id"], q["axis"], q["text"].strip(), int(q["polarity"]), float(weight)))
    empty = [a for a in weights if not any(q.axis == a for q in questions)]
    if empty:
        raise bad(f"axis {', '.join(map(repr, empty))} has no questions")
    sem, pref = data["semantic"], data["preference"]
    try:
        sem_prompt, sem_entity, pref_q = sem["prompt_question"], sem["entity_question"], pref["question"]
    except (TypeError, KeyError) as e:
        raise bad(f"'semantic' needs prompt_question and entity_question, 'preference' needs question ({e})") \
            from None
    for name, text, ph in (("semantic.prompt_question", sem_prompt, PROMPT),
                           ("semantic.entity_question", sem_entity, "{entity}"),
                           ("preference.question", pref_q, PROMPT)):
        if not isinstance(text, str) or ph not in text:
            raise bad(f"{name} must be a string containing {ph}")
    return Checklist(str(data.get("name", "checklist")), str(data.get("version", "")),
                     {a: float(w) for a, w in weights.items()}, tuple(questions), str(data["intro"]),
                     str(data["answer"]), sem_prompt, sem_entity, pref_q, digest, str(data.get("answer_prefix", "")))


def yes_no_ids(tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of the yes / no answer words that are one token each and decode back to the word."""
    def ids(words: Sequence[str]) -> list[int]:
        out = []
        for w in words:
            enc = tokenizer.encode(w, add_special_tokens=False)
            if len(enc) == 1 and tokenizer.decode(enc) == w and enc[0] not in out:
                out.append(enc[0])
        return out

    yes, no = ids(YES_WORDS), ids(NO_WORDS)
    if not yes or not no:
        raise ValueError("the tokenizer has no single-token yes/no answer words")
    return yes, no


def p_yes(logits, yes: Sequence[int], no: Sequence[int]) -> tuple[float, float]:
    """(P(yes) / (P(yes) + P(no)), P(yes) + P(no)) from one position's next-token logits [vocab].

    The second number is how much of the model's next-token mass went to an answer word at all: a low
    value means the model wanted to say something else first, and p is then less meaningful.
    """
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    py, pn = float(probs[list(yes)].sum()), float(probs[list(no)].sum())
    total = py + pn
    return (py / total if total > 0 else 0.5), total


def p_yes_top(top: Sequence[tuple[str, float]]) -> tuple[float, float]:
    """p_yes from a server's top log-probabilities of the first answer token, (token text, logprob) pairs.

    Only the answer words among those top tokens count: a yes or no word outside them adds nothing (the
    in-process path sums over the whole vocabulary), so P is exact when both the likeliest yes and no words
    made the list, 1 or 0 when only one side did, and 0.5 with mass 0 when neither did.
    """
    py = sum(math.exp(lp) for tok, lp in top if tok in YES_WORDS)
    pn = sum(math.exp(lp) for tok, lp in top if tok in NO_WORDS)
    total = py + pn
    return (py / total if total > 0 else 0.5), total


def question_score(p: float, polarity: int) -> float:
    """A question's score in [0, 1] (1 = good): P(yes) for a positive question, 1 - P(yes) for a negative one."""
    return p if polarity > 0 else 1.0 - p


def aggregate(checklist: Checklist, probs: Mapping[str, float]) -> tuple[float, dict[str, float]]:
    """(total, per-axis scores) from P(yes) per question id; questions absent from `probs` are left out.

    Axis score = weighted mean of its question scores; total = axis-weighted mean over the axes that have
    at least one answered question (their weights renormalized).
    """
    axes: dict[str, float] = {}
    for axis in checklist.axis_weights:
        qs = [q for q in checklist.questions if q.axis == axis and q.id in probs]
        if qs:
            axes[axis] = sum(q.weight * question_score(probs[q.id], q.polarity) for q in qs) / \
                sum(q.weight for q in qs)
    if not axes:
        raise ValueError("no checklist question was answered")
    wsum = sum(checklist.axis_weights[a] for a in axes)
    return sum(checklist.axis_weights[a] * s for a, s in axes.items()) / wsum, axes


def semantic_questions(checklist: Checklist, prompt: str, entities: Sequence[str] = ()) -> list[str]:
    """The whole-prompt question, then one per entity (duplicates and empties dropped)."""
    out = [checklist.semantic_prompt.replace(PROMPT, prompt.strip())]
    for e in dict.fromkeys(e.strip() for e in entities if e and e.strip()):
        out.append(checklist.semantic_entity.replace("{entity}", e))
    return out
