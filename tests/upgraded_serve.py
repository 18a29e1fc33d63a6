"""Test-only: the real `dqa serve` as it runs after an upgrade of one scoring worker (its code version bumped).

Run as `python tests/upgraded_serve.py serve ...` (the `dqa` command line) with DQA_UPGRADE=WORKER=VERSION,
e.g. DQA_UPGRADE=measures=99: that worker's `version` (part of its configuration) becomes VERSION.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    from dqa.workers import WORKERS

    name, version = os.environ["DQA_UPGRADE"].split("=", 1)
    WORKERS.load(name).version = version
    from dqa.cli import main

    sys.exit(main())
