"""SIGKILL mid-run: `score` resumes to the uninterrupted result, `train` resumes from an intact checkpoint to the
uninterrupted run's weights, `export` never leaves a half-written artifact at its final path."""

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
import torch

from edge_emotion.contract import ModelContract
from edge_emotion.run.score import ScoreOptions, score_folder
from edge_emotion.toolchain.checkpoint import load_checkpoint

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


def _whole_rows(path: Path) -> int:
    """Rows of a JSONL results file that were written whole (a kill mid-write may leave a torn last one)."""
    return path.read_text().count("\n") if path.exists() else 0


def _kill_after_new_rows(cmd: list[str], out: Path, timeout: float = 120.0) -> int:
    """Run cmd, SIGKILL it as soon as it has added a row to `out` (mid-run, by construction); the whole rows then."""
    before = _whole_rows(out)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and _whole_rows(out) <= before:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the run ended ({proc.returncode}) before it was killed: {stderr}"
    return _whole_rows(out)


def test_score_killed_three_times_then_resumed_equals_one_run(folder, fresh_checkpoint, tmp_path):
    reference = tmp_path / "reference.jsonl"
    score_folder(folder, fresh_checkpoint, reference, ScoreOptions(workers=0))
    want = [json.loads(line) for line in reference.read_text().splitlines()]
    out = tmp_path / "killed.jsonl"
    cmd = [CLI, "score", str(folder), "-m", str(fresh_checkpoint), "-o", str(out), "--workers", "1", "--quiet",
           "--batch-size", "4"]  # one clip per backend call: rows come one by one
    written = 0
    for _ in range(3):  # each run resumes the last one's rows, adds some and is killed before the end
        rows = _kill_after_new_rows(cmd, out)
        assert written < rows < len(want), (written, rows)
        written = rows
    summary = score_folder(folder, fresh_checkpoint, out, ScoreOptions(workers=0, batch_size=4))  # the last resume
    assert summary.skipped == written and summary.scored == len(want) - written  # the rows written were kept
    got = [json.loads(line) for line in out.read_text().splitlines()]
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
    """Killed after its first checkpoint, resumed: the same weights, logs and result as a run never killed."""
    cache, whole, run = tmp_path / "cache", tmp_path / "whole", tmp_path / "run"
    assert subprocess.run([CLI, "prepare", str(folder.parent), "-o", str(cache), "--workers", "0"], capture_output=True).returncode == 0
    options = ["--n-folds", "3", "-n", "2", "--epochs", "3", "--batch-size", "2", "--recipe", "modern", "--checkpoint-every", "1"]
    done = subprocess.run([CLI, "train", str(folder.parent), "-c", str(cache), "-o", str(whole), *options], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    steps = 6  # 4 training clips (two actors) / batch 2 x 3 epochs
    assert load_checkpoint(whole / "checkpoint.pt")["progress"]["global_step"] == steps
    cmd = [CLI, "train", str(folder.parent), "-c", str(cache), "-o", str(run), *options]
    deadline = time.monotonic() + 120
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (run / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # land somewhere in the following steps (~1 s each here), possibly mid-save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended ({proc.returncode}) before it was killed"
    cut = load_checkpoint(run / "checkpoint.pt")["progress"]  # intact: a full earlier checkpoint, never a torn one
    assert 1 <= cut["global_step"] < steps and not cut["finished"], cut  # killed mid-run
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(whole / "checkpoint.pt"), load_checkpoint(run / "checkpoint.pt")
    assert b["progress"]["global_step"] == steps and b["progress"]["finished"]
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # weights and BN statistics, bit for bit
    for log in ("steps.jsonl", "epochs.jsonl"):  # the resumed run's logs read as if never interrupted
        assert (whole / log).read_text() == (run / log).read_text()
    assert json.loads((run / "eval.json").read_text())["accuracy"] == json.loads((whole / "eval.json").read_text())["accuracy"]
