"""SIGKILL at random points: `score` resumes to the uninterrupted result, `train` resumes from an intact
checkpoint, `export` never leaves a half-written artifact at its final path."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_emotion.build.checkpoint import load_checkpoint
from edge_emotion.contract import ModelContract
from edge_emotion.run.score import ScoreOptions, score_folder

CLI = str(Path(sys.executable).with_name("edge-emotion"))


def _kill_after(cmd: list[str], seconds: float) -> int | None:
    """Run cmd, SIGKILL it after `seconds` unless it ended first; its exit code, or None if killed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


@pytest.fixture(scope="module")
def folder(tmp_path_factory, hap_clip_path, neu_clip_path) -> Path:
    """Six real CREMA-D clips under four actors (copies of the two fixtures)."""
    root = tmp_path_factory.mktemp("kills") / "VideoFlash"
    root.mkdir()
    for actor in (1001, 1002, 1003):
        shutil.copy(hap_clip_path, root / f"{actor}_DFA_HAP_XX.flv")
        shutil.copy(neu_clip_path, root / f"{actor}_DFA_NEU_XX.flv")
    return root


def test_score_killed_three_times_then_resumed_equals_one_run(folder, fresh_checkpoint, tmp_path):
    reference = tmp_path / "reference.jsonl"
    score_folder(folder, fresh_checkpoint, reference, ScoreOptions(workers=0))
    out = tmp_path / "killed.jsonl"
    cmd = [CLI, "score", str(folder), "-m", str(fresh_checkpoint), "-o", str(out), "--workers", "1", "--quiet"]
    rng = np.random.default_rng(7)
    for delay in rng.uniform(3.0, 9.0, size=3):  # start-up takes ~3-6 s, a clip ~0.5 s: kills land all over
        _kill_after(cmd, float(delay))
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    want = [json.loads(line) for line in reference.read_text().splitlines()]
    assert [r["path"] for r in got] == [r["path"] for r in want]  # no duplicate, missing or torn row
    for g, w in zip(got, want):
        assert g["label"] == w["label"] and g["status"] == w["status"]
        np.testing.assert_allclose(list(g["probabilities"].values()), list(w["probabilities"].values()), atol=1e-5)


def _kill_when_temporary_appears(cmd: list[str], folder: Path, pattern: str, timeout: float = 120.0) -> int | None:
    """Run cmd, SIGKILL it the moment a new temporary matching `pattern` shows up in folder (mid-write)."""
    earlier = set(folder.glob(pattern))  # left by runs killed before: not this run's
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and not set(folder.glob(pattern)) - earlier:
        time.sleep(0.002)
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return None


def _absent_or_complete(out: Path) -> None:
    """A kill may land before the rename (nothing there) or after it (a whole file): never a torn one."""
    if out.exists():
        model = onnx.load(str(out))
        onnx.checker.check_model(model)
        ModelContract.from_metadata({p.key: p.value for p in model.metadata_props})  # its whole contract


def test_export_killed_never_leaves_a_torn_file_at_the_final_path(fresh_checkpoint, hap_clip_path, tmp_path):
    out = tmp_path / "model.onnx"
    cmd = [CLI, "export", str(fresh_checkpoint), "--parity-data", str(hap_clip_path), "-o", str(out)]
    start = time.monotonic()
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    duration = time.monotonic() - start  # the kills are spread over this machine's own run time
    out.unlink()
    killed = 0
    for fraction in (0.3, 0.7):
        killed += _kill_after(cmd, fraction * duration) is None
        _absent_or_complete(out)
        out.unlink(missing_ok=True)
    killed += _kill_when_temporary_appears(cmd, tmp_path, ".model.onnx.*.tmp") is None  # mid-write
    _absent_or_complete(out)
    assert killed >= 2, "the export ended before most kills: the test did not test"
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    onnx.checker.check_model(onnx.load(str(out)))
    assert not list(tmp_path.glob(".model.onnx.*.tmp"))  # the killed runs' temporaries were cleared


def test_train_killed_resumes_from_an_intact_checkpoint(folder, tmp_path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert subprocess.run([CLI, "prepare", str(folder.parent), "-o", str(cache), "--workers", "0"], capture_output=True).returncode == 0
    cmd = [CLI, "train", str(folder.parent), "-c", str(cache), "-o", str(run), "--n-folds", "3", "-n", "2",
           "--epochs", "6", "--batch-size", "2", "--recipe", "modern", "--checkpoint-every", "1"]
    deadline = time.monotonic() + 120
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (run / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # land somewhere in the following steps, possibly mid-save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(run / "checkpoint.pt")["progress"]  # intact: a full earlier checkpoint, never a torn one
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    final = load_checkpoint(run / "checkpoint.pt")
    assert final["progress"]["global_step"] >= step["global_step"]
    assert json.loads((run / "eval.json").read_text())["accuracy"] is not None
