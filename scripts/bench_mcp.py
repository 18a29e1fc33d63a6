"""What `dqa mcp` costs on top of the library: each tool's wall time over stdio beside the same work in-process.

  python scripts/bench_mcp.py [--repeats 3]

Generates three clips, starts `dqa mcp --backend metrics` over stdio with the SDK's client, and times (median of
`--repeats`, each on a fresh clip so no cached job answers): verify_video against dqa.score.scoring.score, and
compare_videos against MetricsJudge.compare, get_frames against the decoder alone. Prints the start-up time too.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red square glides over a textured field"


def clips(root: Path, n: int) -> list[str]:
    from vrthinker_eval.synth import render_scene, write_video

    names = []
    for k in range(n):
        name = f"clip{k}.mp4"
        write_video(root / name, render_scene(("shapes", "pan", "orbit")[k % 3], 160, 96, 24, seed=k), fps=12)
        names.append(name)
    return names


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-mcp-"))
    root = tmp / "media"
    root.mkdir()
    n = a.repeats
    mcp_names = clips(root, 2 * n + 1)
    direct_root = tmp / "direct"
    direct_root.mkdir()
    direct_names = clips(direct_root, 2 * n + 1)  # the same clips, for the in-process runs (no shared cache)
    server = StdioServerParameters(command=sys.executable, args=["-m", "dqa.cli", "mcp", "--media-root", str(root),
                                                                 "--db", str(tmp / "store.sqlite"), "--backend",
                                                                 "metrics"], cwd=str(ROOT))
    over: dict[str, list[float]] = {"verify_video": [], "compare_videos": [], "get_frames": []}

    async def run() -> float:
        t0 = time.perf_counter()
        async with Client(server, read_timeout_seconds=600) as c:
            await c.list_tools()
            started = time.perf_counter() - t0
            for k in range(n):
                for tool, args in (("verify_video", {"video": mcp_names[k], "prompt": PROMPT}),
                                   ("compare_videos", {"video1": mcp_names[n + k], "video2": mcp_names[2 * n],
                                                       "prompt": PROMPT}),
                                   ("get_frames", {"video": mcp_names[k], "count": 8})):
                    t = time.perf_counter()
                    r = await c.call_tool(tool, args)
                    over[tool].append(time.perf_counter() - t)
                    assert not r.is_error, r.content
        return started

    started = anyio.run(run)

    from dqa.measures.pairwise import MetricsJudge
    from dqa.score.scoring import score
    from vrthinker.media.decode import read_frames

    direct: dict[str, list[float]] = {k: [] for k in over}
    judge = MetricsJudge()
    for k in range(n):
        for tool, fn in (("verify_video", lambda k=k: score([direct_root / direct_names[k]], prompt=PROMPT)),
                         ("compare_videos", lambda k=k: judge.compare(direct_root / direct_names[n + k],
                                                                  direct_root / direct_names[2 * n], PROMPT)),
                         ("get_frames", lambda k=k: read_frames(direct_root / direct_names[k],
                                                                           max_frames=8))):
            t = time.perf_counter()
            fn()
            direct[tool].append(time.perf_counter() - t)
    print(f"dqa mcp start-up to the first tools/list over stdio: {started:.2f} s")
    print(f"{'tool':<16}{'over MCP (s)':>14}{'in-process (s)':>16}{'ratio':>8}   median of {n}, fresh clips")
    for tool in over:
        m, d = statistics.median(over[tool]), statistics.median(direct[tool])
        print(f"{tool:<16}{m:>14.3f}{d:>16.3f}{m / d:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
