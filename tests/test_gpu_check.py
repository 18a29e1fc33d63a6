"""scripts/gpu_check.py: the CPU rehearsal of the one-command GPU check, and its runner's caps and failures."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check as gc  # noqa: E402

# figures each measurement must have when it ends ok
REQUIRED = {
    "judge_bf16": ("attention", "build_s", "conversation_s", "reference_conversation_s", "prefill_tokens",
                   "reference_prefill_tokens", "labels_match_reference", "both_orders_batched_s",
                   "both_orders_sequential_s"),
    "checkpoint": ("save_s", "size_gb", "load_s", "load_peak_gb"),
    "judge_nf4": ("load_s", "load_peak_gb", "weights_gb"),
    "qlora_dpo": ("prompt_tokens", "completion_tokens", "peak_gb", "load_and_step_s"),
    "dqa_workers": ("workers", "phases", "all_back_at_baseline"),
    "frame_access": ("cpu_cores", "ours_s", "reference_s", "speedup", "pixel_identical"),
    "qlora_dpo_six_turn": ("prompt_tokens",),
    "tune_sampling": ("seconds_per_selection", "peak_gb", "kinds", "sampled_turns", "distinct_replies"),
}


def _check_document(doc: dict, names: list[str]) -> None:
    assert list(doc["measurements"]) == names
    env = doc["environment"]
    for key in ("torch", "transformers", "cuda_version", "device_name", "flash_attn_importable", "cpu_cores"):
        assert key in env
    for name, m in doc["measurements"].items():
        assert m["status"] in gc.STATUSES, (name, m["status"])
        assert isinstance(m["seconds"], float) and m["cap_s"] > 0
        if m["status"] == "ok":
            assert m["figures"] and m["reason"] is None, name
        else:
            assert m["reason"], name
        assert "rss_peak_gb" in m["memory"] and "rss_after_gb" in m["memory"], name


@pytest.mark.slow
def test_cpu_rehearsal_writes_every_measurement(tmp_path):
    """The exact rehearsal command: every measurement recorded; none fails (a rename elsewhere would)."""
    out = tmp_path / "gc"
    t = time.monotonic()
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--size", "tiny", "--device", "cpu"],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    seconds = time.monotonic() - t
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads((out / "gpu_check.json").read_text())
    names = [m.name for m in gc.MEASUREMENTS]
    _check_document(doc, names)
    assert doc["args"] == {"size": "tiny", "device": "cpu", "budget_s": 480.0}
    for name, m in doc["measurements"].items():
        assert m["status"] != "failed", f"{name}: {m['reason']}\n{m.get('trace')}"
        if m["status"] == "ok":
            missing = [k for k in REQUIRED[name] if k not in m["figures"]]
            assert not missing, (name, missing)
    bf16 = doc["measurements"]["judge_bf16"]
    if bf16["status"] == "ok":
        assert bf16["figures"]["labels_match_reference"] is True
        assert bf16["figures"]["turns"] == len(gc.Context("tiny", "cpu", tmp_path).script()[0])
    md = (out / "gpu_check.md").read_text()
    assert "| measurement | status | figure | value |" in md
    for name in names:
        assert f"| {name}: " in md
    assert "judge_bf16: " in r.stdout and "gpu_check: done in" in r.stdout  # progress printed as it went
    print(f"rehearsal took {seconds:.0f} s")


def _m(name: str, run, reserve: float = 0.25) -> gc.Measurement:
    return gc.Measurement(name, name, run, reserve)


def test_runner_records_failure_timeout_and_skip_and_runs_the_rest(tmp_path):
    def boom(ctx, rec):
        rec.put("before", 1)
        raise RuntimeError("deliberate")

    def hang(ctx, rec):
        rec.put("partial", 2.5, "partial figure", "{:.1f}")
        while True:
            time.sleep(0.01)

    def fine(ctx, rec):
        rec.put("value", 42, "the answer")

    def skip(ctx, rec):
        raise gc.Skip("somepackage not importable here")

    ctx = gc.Context("tiny", "cpu", tmp_path, log=lambda s: None)
    seen: list[int] = []
    t = time.monotonic()
    outcomes = gc.run_measurements([_m("boom", boom), _m("hang", hang), _m("fine", fine), _m("skip", skip)], ctx,
                                   budget_s=6.0, on_update=lambda o: seen.append(len(o)), log=lambda s: None)
    assert time.monotonic() - t < 8.5  # the hang is cut at its cap, the later ones keep their reserve
    by = {o.name: o for o in outcomes}
    assert [o.name for o in outcomes] == ["boom", "hang", "fine", "skip"]
    assert by["boom"].status == "failed" and "RuntimeError: deliberate" in by["boom"].reason
    assert by["boom"].figures == {"before": 1} and "deliberate" in by["boom"].trace
    assert by["hang"].status == "timeout" and "cap" in by["hang"].reason
    assert by["hang"].figures == {"partial": 2.5}  # what it had recorded survives the timeout
    assert by["hang"].cap_s <= 6.0 - 2 * 1.5 + 0.01  # the later ones' reserves were kept back
    assert by["fine"].status == "ok" and by["fine"].figures == {"value": 42}
    assert by["skip"].status == "skipped" and by["skip"].reason == "somepackage not importable here"
    assert seen == [1, 2, 3, 4]  # results written after every measurement


def test_cli_fail_inject_writes_json_and_markdown(tmp_path):
    out = tmp_path / "gc"
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--size", "tiny", "--device", "cpu",
                        "--budget-s", "3", "--only", "judge_bf16,frame_access",
                        "--fail-inject", "judge_bf16=raise", "--fail-inject", "frame_access=hang"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    doc = json.loads((out / "gpu_check.json").read_text())
    _check_document(doc, ["judge_bf16", "frame_access"])
    m = doc["measurements"]
    assert m["judge_bf16"]["status"] == "failed" and "injected failure" in m["judge_bf16"]["reason"]
    assert m["frame_access"]["status"] == "timeout" and m["frame_access"]["figures"] == {"injected": "hang"}
    md = (out / "gpu_check.md").read_text()
    assert "| judge_bf16: " in md and "| timeout |" in md and "| failed |" in md


def test_cli_rejects_unknown_measurement(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--only", "nonsense"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "unknown measurement(s): nonsense" in r.stderr
