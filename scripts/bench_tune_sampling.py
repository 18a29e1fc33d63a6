"""What sampling costs the tuner: seconds per selection for K conversations against the greedy one alone.

    python3 scripts/bench_tune_sampling.py [--selections 4] [--samples 4] [--image-side 56]
                                           [--max-new-tokens 32] [--max-turns 2] [--model DIR]

Builds the tiny random Qwen2.5-VL (scripts/make_tiny_model.py) unless --model is given, records N selections
over synthetic clips, and runs dqa.tune.sampling.build twice on fresh stores: K = 1 (the greedy conversation
only: the baseline, what the tuner ran before) and K = --samples. Prints seconds per selection for both, their
ratio, and the selections per kind of row (sampled / label_swap / none), with and without --allow-label-swap
(the second reuses the stored conversations). The card profile at --image-side pixels.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--selections", type=int, default=4)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--image-side", type=int, default=56)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--max-turns", type=int, default=2)
    p.add_argument("--model", default=None, help="a Qwen2.5-VL dir (default: build the tiny random one)")
    a = p.parse_args(argv)

    import torch

    from dqa.tune import sampling
    from dqa.tune.selections import add, all_selections, normalize, open_store
    from vrthinker.backends.hf import HFBackend
    from vrthinker.judge import Judge
    from vrthinker.protocol import Profile, _prompts_root
    from vrthinker_eval.synth import render_scene, write_video

    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = Path(tempfile.mkdtemp(prefix="bench-tune-sampling-"))
    try:
        model = a.model
        if model is None:
            from make_tiny_model import build

            model = str(build(work / "tiny"))
        prof = work / "card"
        shutil.copytree(_prompts_root() / "card", prof)
        data = json.loads((prof / "profile.json").read_text())
        data.update(name="card-bench", version="card-bench/1", image_side=a.image_side)
        (prof / "profile.json").write_text(json.dumps(data))
        profile = Profile.load(prof)
        clips = [write_video(work / f"c{k}.mp4", render_scene(("shapes", "pan", "orbit")[k % 3], 160, 96, 36,
                                                              seed=k), fps=12) for k in range(3)]
        backend = HFBackend.from_pretrained(model, device="cpu")
        records = [normalize(f"prompt {k}", str(clips[k % 3]), str(clips[(k + 1) % 3]), "ab"[k % 2],
                             ("OA", "VQ", "TA", "MQ")[k % 4]) for k in range(a.selections)]
        results = {}
        with torch.no_grad():
            for k in (1, a.samples):
                with open_store(work / f"k{k}.sqlite") as store:
                    add(store, records)
                    sels = all_selections(store)
                    judge = Judge(backend, profile, max_new_tokens=a.max_new_tokens, max_turns=a.max_turns)
                    t = time.perf_counter()
                    built = sampling.build(store, profile, sels, judge=judge, samples=k,
                                           temperature=a.temperature, seed=0)
                    seconds = (time.perf_counter() - t) / len(sels)
                    swapped = sampling.build(store, profile, sels, identity=sampling.ds.judge_identity(judge),
                                             samples=k, temperature=a.temperature, seed=0, allow_label_swap=True)
                results[k] = (seconds, built.kind_counts, swapped.kind_counts)
        base, many = results[1], results[a.samples]
        print(f"model {'tiny random' if a.model is None else a.model}, card profile at {a.image_side} px, "
              f"{a.selections} selections, max {a.max_turns} turns x {a.max_new_tokens} tokens, "
              f"temperature {a.temperature}")
        for k, (seconds, kinds, swapped) in results.items():
            print(f"K={k}: {seconds:.2f} s per selection; kinds {kinds}; with --allow-label-swap {swapped}")
        print(f"K={a.samples} / K=1 (baseline: the greedy conversation only): {many[0] / base[0]:.2f}x the time")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
