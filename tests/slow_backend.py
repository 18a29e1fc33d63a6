"""Test-only: the scripted backend made slow, so a batch can be killed mid-run.

Run as `python tests/slow_backend.py batch ...`: it registers `--backend slow` (replies from a JSON file,
each reply after SLOW_BACKEND_DELAY seconds) and then runs the real `judge` command line.
"""
from __future__ import annotations

import os
import sys
import time

from vrthinker.backends.scripted import ScriptedBackend, ScriptedSession


class SlowSession(ScriptedSession):
    def generate(self, messages, images, max_new_tokens):
        time.sleep(float(os.environ.get("SLOW_BACKEND_DELAY", "0.1")))
        return super().generate(messages, images, max_new_tokens)


class SlowBackend(ScriptedBackend):
    name = "slow"

    def new_session(self) -> SlowSession:
        s = SlowSession(self.replies, self.render)
        self.sessions.append(s)
        return s


if __name__ == "__main__":
    from vrthinker import cli, judge

    judge.BACKENDS["slow"] = "slow_backend:SlowBackend"  # this file's folder is on sys.path as a script
    sys.exit(cli.main())
