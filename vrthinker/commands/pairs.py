"""Turn stored judgments and rankings into chosen/rejected preference pairs for DPO (JSON lines).

`judge pairs --db judgments.sqlite --out pairs.jsonl [--dimension OA] [--require-consistent] [--min-confidence X]`
"""
from __future__ import annotations

import argparse

EPILOG = """\
Fields of each line (load with datasets.load_dataset("json", data_files="pairs.jsonl")):
  prompt, chosen, rejected   the prompt and two video paths, the preferred one first
  chosen_sha256, rejected_sha256   their content hashes: duplicates and contradictions are found by these
  dimension                  TA, VQ, MQ or OA: what the preference is on
  labels                     all four dimensions for (chosen, rejected): 1 chosen better, 2 rejected better,
                             0 tie, null missing
  confidence                 1.0 both orders agree; 0.5 one order only; 0.25 one order picked it and the other
                             said tie (--allow-inconsistent); where the judge read label probabilities:
                             the chosen video's probability, both orders averaged; rankings: P(chosen
                             beats rejected) from the Bradley-Terry fit and its covariance
  source, job, id            "judgment" or "ranking", and where it came from
  judgments                  the ordered judgments behind it (key, order, labels as given, reason)
  score_gap, chosen_score, rejected_score   Bradley-Terry scores of a ranking pair (null otherwise)
  model_id, protocol         the judge
Ties, missing labels and orders picking opposite winners make no pair; pairs that prefer opposite videos
for the same prompt and dimension are all dropped, whatever path or source (judgment, ranking) they came by:
videos are matched by content."""


def configure(p: argparse.ArgumentParser) -> None:
    from vrthinker.verdict import DIMENSIONS
    from vrthinker.commands.batch import add_db_argument

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    add_db_argument(p)
    p.add_argument("--out", required=True, metavar="FILE", help="output .jsonl file")
    p.add_argument("--dimension", default="OA", choices=DIMENSIONS, help="the preference dimension (default OA)")
    p.add_argument("--job", default=None, help="only this batch or tournament (default: all)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--require-consistent", action="store_true",
                   help="keep only pairs judged in both orders that agree (drops single-order and ranking pairs)")
    g.add_argument("--allow-inconsistent", action="store_true",
                   help="also keep pairs where one order picked a winner and the other said tie (confidence 0.25)")
    p.add_argument("--min-confidence", "--min-margin", dest="min_margin", type=float, default=0.0, metavar="X",
                   help="drop pairs whose confidence is below X (0..1; for rankings P(chosen beats rejected))")
    p.add_argument("--no-rankings", action="store_true", help="use judgments only, not stored rankings")


def run(a: argparse.Namespace) -> int:
    from rich.console import Console

    from vrthinker.pairs import build_pairs, write_jsonl
    from vrthinker.store import Store

    with Store(a.db, readonly=True) as store:
        r = build_pairs(store, a.dimension, job=a.job, require_consistent=a.require_consistent,
                        allow_inconsistent=a.allow_inconsistent, min_margin=a.min_margin,
                        rankings=not a.no_rankings)
    n = write_jsonl(r.pairs, a.out)
    c = Console(stderr=True)
    left = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(r.skipped.items()) if v) or "none"
    c.print(f"wrote {n} {a.dimension} preference pairs to {a.out}", highlight=False)
    c.print(f"left out: {left}; contradicting pairs dropped: {r.contradictions}; duplicates merged: {r.merged}",
            highlight=False)
    return 0
