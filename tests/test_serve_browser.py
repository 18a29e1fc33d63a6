"""The A/B page in a real browser: Playwright driving Debian's chromium (no browser download)."""
from __future__ import annotations

import os
import time

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"no {CHROMIUM}: install Debian's chromium (apt-get install -y chromium)")

from serve_helpers import Server  # noqa: E402

PROMPT = "a red square glides over a <textured> field"


def test_ab_page_plays_both_videos_takes_keyboard_answers_then_shows_the_verdict(tmp_path):
    from playwright.sync_api import sync_playwright

    from dqa.tune.selections import open_store, usable
    from vrthinker_eval.synth import render_scene, write_video

    root = tmp_path / "media"
    root.mkdir()
    a = write_video(root / "a.mp4", render_scene("shapes", 160, 96, 36, seed=1), fps=12)
    b = write_video(root / "b.mp4", render_scene("pan", 160, 96, 36, seed=2), fps=12)
    server = Server(tmp_path / "store.sqlite", [root]).start()
    try:
        with server.client() as c:
            qid = c.post("/v1/ab", json={"prompt": PROMPT, "a": "a.mp4", "b": "b.mp4"}).json()["question"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
            try:
                page = browser.new_page()
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(server.url + "/ab")
                assert page.locator("#prompt").inner_text() == PROMPT
                playing = "id => { const v = document.getElementById(id); " \
                          "return !v.paused && v.readyState >= 2 && v.currentTime > 0; }"
                page.wait_for_function(playing, arg="va", timeout=20000)
                page.wait_for_function(playing, arg="vb", timeout=20000)
                assert page.locator("video").count() == 2
                # the judge's view stays hidden until the person has answered
                assert page.locator("#verdict").is_hidden() and page.locator("#verdict-labels").count() == 0
                assert page.locator("img").count() == 0  # no frame of the judge's before the answer
                assert "Keys:" in page.locator("#keys").inner_text()
                page.keyboard.press("Space")  # pause: both stop together
                page.wait_for_function("() => document.getElementById('va').paused && "
                                       "document.getElementById('vb').paused", timeout=5000)
                page.keyboard.press("ArrowRight")  # seek: the other video follows
                page.wait_for_function("() => { const a = document.getElementById('va'), "
                                       "b = document.getElementById('vb'); return !a.seeking && !b.seeking && "
                                       "a.currentTime > 0.9 && Math.abs(a.currentTime - b.currentTime) < 0.1; }",
                                       timeout=5000)
                for key in ("1", "3", "2", "1"):  # TA left, VQ right, MQ tie, OA left
                    page.keyboard.press(key)
                page.keyboard.press("Enter")
                page.wait_for_selector("#verdict-labels", timeout=30000)
                assert page.locator("#verdict").is_visible()
                assert "Frames the judge looked at" in page.locator("#verdict-frames").inner_text()
                thumbs = page.locator("#verdict img")
                assert thumbs.count() >= 2
                assert {thumbs.nth(k).get_attribute("alt").split(" ")[0] for k in range(thumbs.count())} == {
                    "left", "right"}
                page.wait_for_function("() => [...document.querySelectorAll('#verdict img')].every("
                                       "i => i.complete && i.naturalWidth > 0)", timeout=5000)  # CSP lets them in
                assert "Answer saved" in page.locator("#status").inner_text()
                assert errors == []
            finally:
                browser.close()
        with open_store(server.db) as store:
            sels, _ = usable(store)
        got = sorted((s.dimension, s.chosen) for s in sels if s.prompt == PROMPT)
        assert got == [("OA", "a"), ("TA", "a"), ("VQ", "b")]  # the tie on MQ makes no selection
        assert all(s.video_a == str(a) and s.video_b == str(b) for s in sels)
        with server.client() as c:
            q = c.get(f"/v1/ab/{qid}").json()
        assert {x["dimension"]: x["chosen"] for x in q["answers"]} == {"TA": "a", "VQ": "b", "MQ": "tie", "OA": "a"}
        deadline = time.monotonic() + 10
        while q["verdict"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
            with server.client() as c:
                q = c.get(f"/v1/ab/{qid}").json()
        assert q["verdict"]["backend"] == "metrics"
    finally:
        server.stop()
