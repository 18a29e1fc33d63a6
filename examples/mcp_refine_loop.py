"""Generate, verify, refine while the grade is below the threshold: a plain loop over `dqa mcp` with the MCP SDK.

  python examples/mcp_refine_loop.py --media-root DIR [--prompt TEXT] [--threshold 0.6] [--attempts 3]

`refine_loop` is the part to keep: it asks the Verifier (`verify_video`) for each attempt's grade and stops at
the first one at or above the threshold. `generate(prompt, attempt)` is where a video model goes; the stand-in
here renders a synthetic clip into the media root, ruined by flicker and noise on the first attempt.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import anyio
from mcp import Client, StdioServerParameters


async def refine_loop(client: Client, prompt: str, generate: Callable[[str, int], str], *, threshold: float = 0.6,
                      attempts: int = 3, log: Callable[[str], None] = print) -> tuple[dict | None, list[dict]]:
    """(the first Verifier document at or above `threshold`, or None; every attempt's document)."""
    history: list[dict[str, Any]] = []
    asked = prompt
    for k in range(attempts):
        video = generate(asked, k)
        r = await client.call_tool("verify_video", {"video": video, "prompt": prompt})
        if r.is_error:
            raise RuntimeError(r.content[0].text)
        doc = r.structured_content
        history.append(doc)
        score = doc["prompt_adherence"]
        log(f"attempt {k + 1}: {video}: grade {doc['grade']} ({score if score is None else round(score, 3)}), "
            f"{doc['action']}")
        if score is not None and score >= threshold:
            return doc, history
        # refine: tell the generator what the Verifier found (a real pipeline rewrites the prompt here)
        asked = f"{prompt}. Fix: {doc['reasoning']}"
    return None, history


def synthetic_generator(root: Path) -> Callable[[str, int], str]:
    """A stand-in for a video model: attempt 0 is flickering noise, later attempts are clean."""
    import numpy as np
    from vrthinker_eval.synth import render_scene, write_video

    def generate(_prompt: str, attempt: int) -> str:
        frames = render_scene("shapes", 160, 96, 24, seed=attempt)
        if attempt == 0:
            bad = frames.astype(np.int16)
            bad[1::2] //= 3
            noise = np.random.default_rng(attempt).normal(0, 40, bad.shape)
            frames = np.clip(bad + noise, 0, 255).astype(np.uint8)
        name = f"attempt_{attempt}.mp4"
        write_video(root / name, frames, fps=12)
        return name

    return generate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--media-root", required=True)
    p.add_argument("--db", default="judgments.sqlite")
    p.add_argument("--prompt", default="a red square glides over a textured field")
    p.add_argument("--threshold", type=float, default=0.6)
    p.add_argument("--attempts", type=int, default=3)
    a = p.parse_args(argv)
    server = StdioServerParameters(command=sys.executable, args=["-m", "dqa.cli", "mcp", "--media-root", a.media_root,
                                                                 "--db", a.db, "--backend", "metrics"])

    async def run() -> int:
        async with Client(server) as client:
            best, _ = await refine_loop(client, a.prompt, synthetic_generator(Path(a.media_root)),
                                        threshold=a.threshold, attempts=a.attempts)
        print("accepted" if best else f"no attempt reached {a.threshold}")
        return 0 if best else 1

    return anyio.run(run)


if __name__ == "__main__":
    sys.exit(main())
