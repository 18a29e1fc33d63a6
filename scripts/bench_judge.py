"""Benchmark the judge against the seed card's reference infer.py, side by side, in one run.

Same tiny random Qwen2.5-VL (real processor files), same clips (H.264 1280x720, 5 s, 24 fps, one GOP),
same scripted conversation forced token by token through the real model, so prefill and decode costs
are real. Then `--pairs` distinct pairs of distinct clips, judged cold as `judge batch` sees them (one
model load, fresh caches, no clip seen twice) against the reference's per-pair procedure, with model
loads counted where they happen and load time apart from judging time on both sides. Prints a table,
then `frame_access_speedup=X prefill_token_ratio=Y model_loads=N`.

    python scripts/bench_judge.py [--pairs 20] [--pair-size 1280x720] [--pair-frames 120] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

THINK = ("<Snapshot>Video 1 keeps the subject sharp; Video 2 shows some smearing near the edges.</Snapshot>"
         "<Think>I should check the motion in the middle and at the end before deciding.</Think>")
ANSWER = ("<Snapshot>The extra frames confirm it.</Snapshot><Think>Video 1 is steadier and sharper, "
          "and both follow the prompt.</Think><Answer>TA=0, VQ=1, MQ=1, OA=1</Answer>")


def six_turn_script() -> tuple[list[str], list[list[int]]]:
    """Five select_frames calls of 12 distinct new indices each, then an answer (64 frames per video)."""
    pool = [i for i in range(1, 128, 2) if i not in (16, 48, 80, 112)]
    calls = [pool[k * 12:(k + 1) * 12] for k in range(5)]
    tool = '<tool_call>{"name": "select_frames", "arguments": {"frame_indices": %s}}</tool_call>'
    return [THINK + tool % c for c in calls] + [ANSWER], calls


def make_clips(d: Path) -> tuple[str, str]:
    from vrthinker_eval.synth import render_scene, write_video

    a = write_video(d / "v1.mp4", render_scene("shapes", 1280, 720, 120, seed=3), fps=24, gop=250)
    b = write_video(d / "v2.mp4", render_scene("pan", 1280, 720, 120, seed=4), fps=24, gop=250)
    return str(a), str(b)


def make_pairs(d: Path, n: int, width: int, height: int, frames: int) -> list[tuple[str, str]]:
    """`n` pairs of 2n distinct clips (each its own scene kind and seed), none shared with another pair."""
    from vrthinker_eval.synth import SCENES, render_scene, write_video

    d.mkdir(parents=True, exist_ok=True)
    clips = [str(write_video(d / f"p{k:02d}.mp4", render_scene(SCENES[k % len(SCENES)], width, height, frames,
                                                                seed=100 + k), fps=24, gop=250))
             for k in range(2 * n)]
    return list(zip(clips[::2], clips[1::2]))


class _TimedLoads:
    """Stands in for one of reference_infer's `from_pretrained` classes: counts and times its real loads."""

    def __init__(self, cls, tally: dict, count: bool):
        self.cls, self.tally, self.count = cls, tally, count

    def from_pretrained(self, *args, **kw):
        t = time.perf_counter()
        try:
            return self.cls.from_pretrained(*args, **kw)
        finally:
            self.tally["load_s"] = self.tally.get("load_s", 0.0) + time.perf_counter() - t
            self.tally["loads"] = self.tally.get("loads", 0) + self.count


def forced(processor, replies):
    from transformers import LogitsProcessorList

    from vrthinker.testing import ForcedReplies

    tok = processor.tokenizer
    f = ForcedReplies(tok, replies, eos_id=tok.convert_tokens_to_ids("<|im_end|>"))
    return f, LogitsProcessorList([f])


def run_reference(model_dir, v1, v2, prompt, replies, device, stats):
    """The card's procedure, timed: per-pair model load, per-frame seek, full re-encode each turn.

    Returns (labels, wall seconds, frame-access seconds, model-load seconds); `stats["loads"]` counts the
    model loads run() really made (processor and model `from_pretrained`, timed together)."""
    import torch
    from transformers import AutoProcessor

    import reference_infer as ref

    frame_s = [0.0]
    orig = ref.extract_frames, ref.AutoProcessor, ref.Qwen2_5_VLForConditionalGeneration

    def timed(path, idx):
        t = time.perf_counter()
        try:
            return orig[0](path, idx)
        finally:
            frame_s[0] += time.perf_counter() - t

    tally: dict = {}
    ref.extract_frames = timed
    ref.AutoProcessor = _TimedLoads(orig[1], tally, count=False)
    ref.Qwen2_5_VLForConditionalGeneration = _TimedLoads(orig[2], tally, count=True)
    try:
        f, lp = forced(AutoProcessor.from_pretrained(model_dir), replies)
        t = time.perf_counter()
        labels = ref.run(v1, v2, prompt, model_dir=model_dir, dtype=torch.float32,
                         device_map=None if device == "cpu" else "auto",
                         generate_kwargs={"logits_processor": lp}, stats=stats)
        wall = time.perf_counter() - t
    finally:
        ref.extract_frames, ref.AutoProcessor, ref.Qwen2_5_VLForConditionalGeneration = orig
    stats["loads"] = stats.get("loads", 0) + tally.get("loads", 0)
    stats["load_s"] = stats.get("load_s", 0.0) + tally.get("load_s", 0.0)
    return labels, wall, frame_s[0], tally.get("load_s", 0.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=20, help="distinct one-turn pairs for the batch comparison")
    p.add_argument("--pair-size", default="1280x720", help="WxH of those pairs' clips")
    p.add_argument("--pair-frames", type=int, default=120, help="frames of those pairs' clips (24 fps)")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default=None, help="model dir (default: build a tiny random one)")
    a = p.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from make_tiny_model import build
    from vrthinker.backends.hf import HFBackend
    from vrthinker.batch import PairRow, run_batch
    from vrthinker.media.frame_grid import prefetch
    from vrthinker.judge import Judge, load_videos
    from vrthinker.store import Store

    con = Console()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench-judge-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = a.model or str(build(work / "tiny"))
    v1, v2 = make_clips(work)
    prompt = "A robot rides a unicorn across a rainbow bridge."
    replies, calls = six_turn_script()
    con.print(f"clips: 2 x 1280x720 5 s 24 fps keyint 250 in {work}; model: {model_dir}")

    # --- ours: 6-turn conversation --------------------------------------------------------------
    t = time.perf_counter()
    backend = HFBackend.from_pretrained(model_dir, device=a.device)
    load_s = time.perf_counter() - t
    f, lp = forced(backend.processor, replies)
    backend.generate_kwargs = {"logits_processor": lp}
    judge = Judge(backend, "card")
    t = time.perf_counter()
    grids = load_videos(judge.profile, v1, v2)  # no cache: decoded here
    for call in [[16, 48, 80, 112]] + calls:  # fetch the 128 images the conversation shows, turn by turn
        prefetch([(g, call) for g in grids])
        images = [g.image(i) for i in call for g in grids]
    ours_frame_s = time.perf_counter() - t
    t = time.perf_counter()
    verdict = judge.compare(v1, v2, prompt)
    ours_conv_s = time.perf_counter() - t
    ours_prefill = sum(x.prefill_tokens for x in verdict.turns)
    final_len = verdict.turns[-1].prefill_tokens + verdict.turns[-1].reused_tokens
    images = sum(len(x.new_images) for x in verdict.turns)

    # --- reference: the same conversation ---------------------------------------------------------
    stats: dict = {}
    ref_labels, ref_wall_s, ref_frame_s, ref_load_s = run_reference(model_dir, v1, v2, prompt, replies, a.device,
                                                                    stats)
    ref_conv_s = ref_wall_s - ref_load_s  # judging only, as ours (whose load was timed apart above)
    ref_prefill, ref_final = stats["prefill_tokens"], stats["final_length"]
    same = ref_labels == {k: verdict.labels[k] for k in ("TA", "MQ", "VQ", "OA")}

    # --- distinct pairs, one turn each, cold: a batch (one load) vs the reference (a load per pair) ---
    width, height = (int(x) for x in a.pair_size.lower().split("x"))
    t = time.perf_counter()
    pairs = make_pairs(work / "pairs", a.pairs, width, height, a.pair_frames)
    con.print(f"{a.pairs} pairs of {2 * a.pairs} distinct clips ({width}x{height}, {a.pair_frames} frames, "
              f"24 fps, keyint 250) made in {time.perf_counter() - t:.0f}s")
    pair_replies = [ANSWER]
    loads_before = HFBackend.load_count
    t = time.perf_counter()
    fresh = HFBackend.from_pretrained(model_dir, device=a.device)  # nothing shared with the run above
    ours_load_s = time.perf_counter() - t
    fresh.generate_kwargs = {"logits_processor": forced(fresh.processor, pair_replies)[1]}
    rows = [PairRow(item_id=str(k), video1=x, video2=y, prompt=prompt, line=k + 1, position=k)
            for k, (x, y) in enumerate(pairs)]
    with Store(Path(tempfile.mkdtemp(prefix="store-", dir=work)) / "bench.sqlite") as store:  # nothing to reuse
        t = time.perf_counter()
        summary = run_batch(Judge(fresh, "card"), rows, store, job="bench", orders="one")
        ours_judge_s = time.perf_counter() - t
    ours_loads = HFBackend.load_count - loads_before
    if summary.judged != a.pairs or summary.bad:
        raise SystemExit(f"the batch judged {summary.judged} of {a.pairs} pairs ({summary.bad} bad)")
    ref_stats: dict = {}
    ref_pair_wall = 0.0
    for x, y in pairs:
        ref_pair_wall += run_reference(model_dir, x, y, prompt, pair_replies, a.device, ref_stats)[1]
    ref_pair_load_s, ref_loads = ref_stats["load_s"], ref_stats["loads"]
    ref_judge_s = ref_pair_wall - ref_pair_load_s

    # --- both orders of a pair: one batched generate vs one after the other ------------------------
    f1, lp1 = forced(backend.processor, pair_replies)
    backend.generate_kwargs = {"logits_processor": lp1}

    def both_orders_seconds(batch: bool, repeats: int = 3) -> float:
        backend.batch = batch
        t = time.perf_counter()
        for _ in range(repeats):
            f1.reset()
            judge.compare(v1, v2, prompt, orders="both")
        backend.batch = True
        return (time.perf_counter() - t) / repeats

    both_batched, both_seq = both_orders_seconds(True), both_orders_seconds(False)

    tab = Table(title="judge vs reference infer.py (tiny random model, same clips, same forced replies)")
    for c in ("measure", "ours", "reference", "reference / ours"):
        tab.add_column(c, justify="right" if c != "measure" else "left")
    tab.add_row("frame access, 128 images (s)", f"{ours_frame_s:.2f}", f"{ref_frame_s:.2f}",
                f"{ref_frame_s / ours_frame_s:.1f}x")
    tab.add_row("tokens prefilled, 6 turns", f"{ours_prefill:,}", f"{ref_prefill:,}",
                f"{ref_prefill / ours_prefill:.2f}x")
    tab.add_row("final conversation length (tokens)", f"{final_len:,}", f"{ref_final:,}", "")
    tab.add_row("6-turn conversation, judging (s)", f"{ours_conv_s:.1f}", f"{ref_conv_s:.1f}",
                f"{ref_conv_s / ours_conv_s:.1f}x")
    tab.add_row("6-turn conversation, model load (s)", f"{load_s:.1f}", f"{ref_load_s:.1f}", "")
    n = a.pairs
    tab.add_row(f"{n} distinct pairs, judging per pair (s)", f"{ours_judge_s / n:.2f}", f"{ref_judge_s / n:.2f}",
                f"{ref_judge_s / ours_judge_s:.1f}x")
    tab.add_row(f"{n} distinct pairs, model loads", str(ours_loads), str(ref_loads), "")
    tab.add_row(f"{n} distinct pairs, model load time (s)", f"{ours_load_s:.1f}", f"{ref_pair_load_s:.1f}",
                f"{ref_pair_load_s / ours_load_s:.1f}x")
    ours_total, ref_total = ours_load_s + ours_judge_s, ref_pair_load_s + ref_judge_s
    tab.add_row(f"{n} distinct pairs, loads + judging (s)", f"{ours_total:.1f}", f"{ref_total:.1f}",
                f"{ref_total / ours_total:.1f}x")
    tab.add_row("both orders, one turn: batched vs sequential (s)", f"{both_batched:.2f}", f"{both_seq:.2f}",
                f"{both_seq / both_batched:.2f}x")
    con.print(tab)
    con.print(f"images fed: {images}; labels equal to the reference's: {same} ({dict(verdict.labels)}); "
              f"our prefill / final length = {ours_prefill / final_len:.3f}; one model load took {load_s:.1f}s")
    print(f"frame_access_speedup={ref_frame_s / ours_frame_s:.1f} "
          f"prefill_token_ratio={ours_prefill / ref_prefill:.3f} model_loads={ours_loads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
