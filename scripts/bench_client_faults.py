"""What a fault costs the OpenAI-compatible client: this tree against a baseline commit, in one run.

Three faults, each on one comparison (card profile, one turn, one order) with the client's defaults:
- hung: the server accepts every request and never answers (before: every retry waits its whole timeout),
  run with a 1 s request timeout (`--timeout 1`; the default 600 s scales the same way);
- dead host: the first of two servers never accepts a connection (before: a fixed 10 s connect timeout);
- rate limited: the server answers 429 with Retry-After: 1 once, then a verdict (before: failed at once).
The fake servers are tests/fake_openai.py's; each client runs in a fresh process with the tree on PYTHONPATH,
imports and a first decode of the clips done before the clock starts. Each line gives the time to connect
(GET /v1/models, and the baseline's search for a tokenizer) and the turn's; `hung_*` are turn times, `dead_*`
both together (the dead host is met in both).

    python scripts/bench_client_faults.py [--baseline 8fde35f]

Last line: `hung_before_s=A hung_after_s=B hung_ratio=B/A dead_before_s=C dead_after_s=D dead_ratio=D/C
rate_limited_before=E rate_limited_after=F` (E, F: the verdict's outcome).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CLIENT = r'''
import json, sys, time
from vrthinker.backends.openai import OpenAIBackend
from vrthinker.judge import Judge
from vrthinker.protocol import Profile

urls, a, b, timeout = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
import transformers  # noqa: F401 - imported before the clock starts: the baseline imports it to look for a tokenizer
from vrthinker.judge import load_videos
load_videos(Profile.load("card"), a, b)  # and the videos decoded once, so the clock times the fault alone
t0 = time.monotonic()
backend = OpenAIBackend(urls, **({"timeout": timeout} if timeout else {}))
t1 = time.monotonic()
v = Judge(backend, Profile.load("card"), max_turns=1, max_new_tokens=16).compare(a, b, "p", orders="one")
print(json.dumps({"connect_s": t1 - t0, "turn_s": time.monotonic() - t1, "seconds": time.monotonic() - t0,
                  "outcome": "ok" if v.complete else v.reason, "detail": (v.detail or "")[:200]}))
'''


def run(tree: Path, urls: list[str], clips: tuple[str, str], timeout: float = 0) -> dict:
    """One comparison in a fresh process on `tree`'s code; `timeout` 0: the client's default."""
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(urls), *clips, str(timeout)], env=env,
                       capture_output=True, text=True, timeout=600, cwd=tree)
    if r.returncode != 0:
        raise SystemExit(f"client in {tree} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    from fake_openai import Blackhole, Fake, reply_json
    from vrthinker_eval.synth import render_scene, write_video

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="8fde35f", help="the commit measured as 'before'")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-client-faults-") as tmp:
        tmp = Path(tmp)
        before_tree = tmp / "before"
        before_tree.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", a.baseline, "vrthinker", "judge_prompts"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before_tree)], input=archive, check=True)
        clips = tuple(str(write_video(tmp / f"{k}.mp4", render_scene(k, 160, 96, 12, seed=1), fps=12))
                      for k in ("shapes", "pan"))
        answer = reply_json("<Answer>TA=1, VQ=1, MQ=1, OA=1</Answer>")
        got: dict = {}
        for side, tree in (("before", before_tree), ("after", ROOT)):
            hung = Fake(["hang"] * 50, hang_s=120)
            dead, well = Blackhole(), Fake([])
            limited = Fake([(429, "{}", {"Retry-After": "1"}), (200, answer)])
            try:
                got[side] = {"hung": run(tree, [hung.url], clips, timeout=1.0),
                             "dead": run(tree, [dead.url, well.url], clips),
                             "rate_limited": run(tree, [limited.url], clips)}
            finally:
                for f in (hung, well, limited, dead):
                    f.close()
    for side in ("before", "after"):
        for fault, r in got[side].items():
            print(f"{side:6s} {fault:12s} connect {r['connect_s']:5.1f} s  turn {r['turn_s']:5.1f} s  "
                  f"{r['outcome']}  {r['detail'][:100]}")
    b, f = got["before"], got["after"]
    print(f"hung_before_s={b['hung']['turn_s']:.1f} hung_after_s={f['hung']['turn_s']:.1f} "
          f"hung_ratio={f['hung']['turn_s'] / b['hung']['turn_s']:.2f} dead_before_s={b['dead']['seconds']:.1f} "
          f"dead_after_s={f['dead']['seconds']:.1f} dead_ratio={f['dead']['seconds'] / b['dead']['seconds']:.2f} "
          f"rate_limited_before={b['rate_limited']['outcome']} rate_limited_after={f['rate_limited']['outcome']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
