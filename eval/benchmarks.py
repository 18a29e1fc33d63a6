"""Loaders for local copies of the field's video preference benchmarks, as `Example`s in our label convention.

Labels follow `vrthinker.verdict`: 1 = video1 preferred, 2 = video2 preferred, 0 = tie / same, None = the
benchmark does not label that dimension for this pair. Nothing is downloaded here; see `Benchmark.source`.

Formats, as checked against the publishers' own code (2025):

- VideoGen-RewardBench (KwaiVGI, HF `KwaiVGI/VideoGen-RewardBench`, now `KlingTeam/VideoGen-RewardBench`):
  `videogen-rewardbench.csv` with `path_A, path_B, A_model, B_model, prompt, fps_A, fps_B, num_frames_A,
  num_frames_B, VQ, MQ, TA, Overall`, labels `A` / `B` / `same`; paths are relative to the CSV's folder
  (`videos/<model>/<file>.mp4`, from `videos.zip`). The overall column is `Overall` in the current
  `eval_videogen_rewardbench.py` of KwaiVGI/VideoAlign; its first release read it as `ALL`, so `ALL` and
  `overall` are accepted too.
- GenAI-Bench video preference (TIGER-Lab, HF `TIGER-Lab/GenAI-Bench`, config `video_generation`):
  `video_generation/test-00000-of-00001.parquet` with `prompt, left_video, right_video, vote_type` in
  {leftvote, rightvote, tievote, bothbad_vote}. The videos are URLs there; a local copy keeps each one
  under `DIR/videos/<file name of the URL>` (or `DIR/<file name>`); a relative path is taken against DIR.
  GenAI-Bench has one overall vote per pair, so only OA is labelled; tievote and bothbad_vote are ties.
- MJ-Bench-Video (HF `MJ-Bench/MJ-BENCH-VIDEO`): `test.json`, a list of pairs with `caption`,
  `video_0_path`, `video_1_path` (relative to `DIR/videos`, e.g. `test/0_0.mp4`), per-video criteria
  (`video_*_label`, `video_*_overall_score`), `category_preference` {Alignment, Safety, Fineness,
  Coherence & Consistency, Bias} and `overall_preference`, valued `Video 1 better` (= video_0),
  `Video 2 better` (= video_1), `Same` or `Hard to judge` (as in aiming-lab/MJ-Video's data loader).
  OA is `overall_preference`; TA / VQ / MQ are the Alignment / Fineness / Coherence & Consistency
  category preferences (the mapping VideoScore2's evaluation uses); `Hard to judge` is unlabelled (None).
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from vrthinker import jsonl
from vrthinker.errors import UsageError
from vrthinker.verdict import DIMENSIONS

VIDEO_DIRS = ("", "videos")  # where a relative video path is looked for, under the data dir


@dataclass(frozen=True)
class Example:
    """One benchmark pair: two local videos, the prompt, and the human labels per dimension."""

    id: str
    prompt: str
    video1: str
    video2: str
    labels: Mapping[str, int | None]
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Loaded:
    """A loaded benchmark: usable examples, and the (id, reason) of rows skipped for a missing video."""

    name: str
    source: str  # the annotation file read
    examples: tuple[Example, ...]
    skipped: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: its loader, the dimensions it labels, and where users get it."""

    name: str
    title: str
    dimensions: tuple[str, ...]
    source: str
    loader: Callable[[Path], Iterator[tuple[str, str, str, str, dict, dict]]]

    def load(self, data: str | os.PathLike, limit: int | None = None) -> Loaded:
        """Read the local copy at `data`; stop after `limit` usable examples (rows with both videos)."""
        path = Path(os.path.expanduser(os.fspath(data)))
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder (the local copy of {self.title}; see {self.source})")
        if limit is not None and limit < 1:
            raise UsageError(f"--limit must be at least 1, got {limit}")
        examples: list[Example] = []
        skipped: list[tuple[str, str]] = []
        source = ""
        for ex_id, prompt, v1, v2, labels, meta in self.loader(path):
            source = meta.pop("_source", source)
            missing = [v for v in (v1, v2) if not os.path.isfile(v)]
            if missing:
                skipped.append((ex_id, "video not found: " + ", ".join(missing)))
                continue
            if not prompt.strip():
                skipped.append((ex_id, "empty prompt"))
                continue
            examples.append(Example(ex_id, prompt.strip(), v1, v2,
                                    {d: labels.get(d) for d in DIMENSIONS}, meta))
            if limit is not None and len(examples) >= limit:
                break
        return Loaded(self.name, source, tuple(examples), tuple(skipped))


# ----------------------------------------------------------------------------------------------------------
# helpers


def _find(path: Path, patterns: Iterable[str], what: str) -> Path:
    """`path` itself if a file, else the first match of `patterns` under it."""
    if path.is_file():
        return path
    for pattern in patterns:
        hits = sorted(path.glob(pattern))
        if hits:
            return hits[0]
    raise UsageError(f"{path}: no {what} found (looked for {', '.join(patterns)})")


def _video(value: Any, base: Path) -> str:
    """A local path for a video reference: absolute as is; a URL by its file name; else under `base`."""
    text = str(value or "").strip()
    if not text:
        return str(base / "<missing path>")
    if "://" in text:
        text = unquote(Path(urlparse(text).path).name)
    p = Path(os.path.expanduser(text))
    if p.is_absolute():
        return str(p)
    candidates = [base / sub / p for sub in VIDEO_DIRS]
    for c in candidates:
        if c.is_file():
            return str(c.resolve())
    return str(candidates[0].resolve())  # reported as missing


def _records(path: Path) -> list[dict]:
    """Rows of a .csv, .json (a list), .jsonl or .parquet file, as dicts."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as f:
                return list(csv.DictReader(f))
        if suffix in (".jsonl", ".ndjson"):
            return [row for _, row in jsonl.records(path)]
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):  # {"data": [...]} or {split: [...]}
                data = data.get("data") or data.get("test") or next(iter(data.values()), [])
            if not isinstance(data, list):
                raise UsageError(f"{path}: expected a JSON list of records")
            return data
        if suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise UsageError(f"{path}: reading parquet needs pyarrow (pip install pyarrow), or convert it "
                                 "to .jsonl") from None
            return pq.read_table(path).to_pylist()
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: cannot read it ({e})") from None
    raise UsageError(f"{path}: unsupported file type {suffix!r} (use .csv, .json, .jsonl or .parquet)")


def _column(row: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` present in `row` (exact, then case-insensitive)."""
    for n in names:
        if n in row:
            return row[n]
    lower = {str(k).lower(): k for k in row}
    for n in names:
        if n.lower() in lower:
            return row[lower[n.lower()]]
    return None


def _label(value: Any, mapping: Mapping[str, int | None], where: str) -> int | None:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN: unlabelled
        return None
    key = str(value).strip().lower()
    if key == "":
        return None
    if key not in mapping:
        raise UsageError(f"{where}: unknown label {value!r} (expected one of {', '.join(sorted(mapping))})")
    return mapping[key]


# ----------------------------------------------------------------------------------------------------------
# VideoGen-RewardBench

_AB = {"a": 1, "b": 2, "same": 0, "tie": 0}
_OVERALL_COLUMNS = ("Overall", "overall", "ALL", "OA")


def _videogen_rewardbench(path: Path):
    csv_path = _find(path, ("videogen-rewardbench.csv", "*.csv"), "VideoGen-RewardBench CSV")
    base = csv_path.resolve().parent
    rows = _records(csv_path)
    if rows:
        header = set(rows[0])
        need = [c for c in ("path_A", "path_B", "prompt") if c not in header]
        if need:
            raise UsageError(f"{csv_path}: not a VideoGen-RewardBench CSV (no column {', '.join(need)})")
        if not any(c in header for c in _OVERALL_COLUMNS):
            raise UsageError(f"{csv_path}: no overall label column (looked for {', '.join(_OVERALL_COLUMNS)})")
    for n, row in enumerate(rows, 2):  # line 1 is the header
        where = f"{csv_path}:{n}"
        labels = {d: _label(_column(row, d), _AB, where) for d in ("TA", "VQ", "MQ")}
        labels["OA"] = _label(_column(row, *_OVERALL_COLUMNS), _AB, where)
        meta = {"_source": str(csv_path), "row": n, "models": (row.get("A_model"), row.get("B_model")),
                "paths": (row.get("path_A"), row.get("path_B"))}
        yield (str(row.get("id") or n - 1), str(row.get("prompt") or ""), _video(row.get("path_A"), base),
               _video(row.get("path_B"), base), labels, meta)


# ----------------------------------------------------------------------------------------------------------
# GenAI-Bench (video_generation)

_VOTES = {"leftvote": 1, "rightvote": 2, "tievote": 0, "bothbad_vote": 0}


def _genai_bench(path: Path):
    patterns = ("video_generation/test-*.parquet", "video_generation/*.parquet", "test-*.parquet", "*.parquet",
                "video_generation*.jsonl", "video_generation/*.jsonl", "*.jsonl", "video_generation*.json",
                "*.json", "*.csv")
    src = _find(path, patterns, "GenAI-Bench video_generation file")
    # the data dir is where the videos live: the folder given, else the file's folder
    base = path.resolve() if path.is_dir() else src.resolve().parent
    for n, row in enumerate(_records(src), 1):
        where = f"{src}: row {n}"
        if "vote_type" not in row:
            raise UsageError(f"{where}: no vote_type (is this the video_generation config of GenAI-Bench?)")
        vote = _label(row.get("vote_type"), _VOTES, where)
        meta = {"_source": str(src), "row": n, "vote_type": row.get("vote_type"),
                "models": (row.get("left_model"), row.get("right_model"))}
        yield (str(row.get("id") or n - 1), str(row.get("prompt") or ""), _video(row.get("left_video"), base),
               _video(row.get("right_video"), base), {"OA": vote}, meta)


# ----------------------------------------------------------------------------------------------------------
# MJ-Bench-Video

_PREFS = {"video 1 better": 1, "video 2 better": 2, "same": 0, "hard to judge": None}
_MJ_CATEGORIES = {"TA": "Alignment", "VQ": "Fineness", "MQ": "Coherence & Consistency"}


def _mjbench_video(path: Path):
    src = _find(path, ("test.json", "*/test.json"), "MJ-Bench-Video test.json")
    base = path.resolve() if path.is_dir() else src.resolve().parent
    for n, row in enumerate(_records(src), 1):
        where = f"{src}: item {n}"
        if "overall_preference" not in row:
            raise UsageError(f"{where}: no overall_preference (is this MJ-Bench-Video's test.json?)")
        cats = row.get("category_preference") or {}
        labels = {d: _label(cats.get(c), _PREFS, where) for d, c in _MJ_CATEGORIES.items()}
        labels["OA"] = _label(row.get("overall_preference"), _PREFS, where)
        meta = {"_source": str(src), "row": n, "overall_preference": row.get("overall_preference"),
                "paths": (row.get("video_0_path"), row.get("video_1_path"))}
        yield (str(row.get("id") or n - 1), str(row.get("caption") or row.get("prompt") or ""),
               _video(row.get("video_0_path"), base), _video(row.get("video_1_path"), base), labels, meta)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b for b in (
        Benchmark("videogen-rewardbench", "VideoGen-RewardBench", ("TA", "VQ", "MQ", "OA"),
                  "https://huggingface.co/datasets/KwaiVGI/VideoGen-RewardBench", _videogen_rewardbench),
        Benchmark("genai-bench", "GenAI-Bench (video)", ("OA",),
                  "https://huggingface.co/datasets/TIGER-Lab/GenAI-Bench (config video_generation)", _genai_bench),
        Benchmark("mjbench-video", "MJ-Bench-Video", ("TA", "VQ", "MQ", "OA"),
                  "https://huggingface.co/datasets/MJ-Bench/MJ-BENCH-VIDEO", _mjbench_video),
    )
}


def load(name: str, data: str | os.PathLike, limit: int | None = None) -> Loaded:
    """Load benchmark `name` from its local copy at `data` (a folder, or the annotation file itself)."""
    if name not in BENCHMARKS:
        raise UsageError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name].load(data, limit)
