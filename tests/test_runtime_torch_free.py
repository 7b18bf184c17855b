"""The deployed path needs no PyTorch: score, predict and bench with an exported ONNX, in processes where
`import torch` fails (as on a device with the runtime-only install), give the same numbers as in-process scoring.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from export_helpers import parity_batch

BLOCKED = ("torch", "torchvision", "facenet_pytorch", "librosa", "onnx")


@pytest.fixture(scope="module")
def onnx_model(fresh_checkpoint, tmp_path_factory) -> Path:
    from edge_emotion.toolchain.export.pipeline import export_onnx_artifact

    path = tmp_path_factory.mktemp("torchfree") / "model.onnx"
    export_onnx_artifact(fresh_checkpoint, path, parity_batch())
    return path


@pytest.fixture(scope="module")
def blocker(tmp_path_factory) -> Path:
    """A folder that, first on PYTHONPATH, makes every training-side package fail to import."""
    root = tmp_path_factory.mktemp("blocker")
    for name in BLOCKED:
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked: the runtime must not need it')\n")
    return root


def run_runtime(blocker: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(blocker), "PYTHONNOUSERSITE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "edge_emotion", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_the_blocker_really_blocks(blocker):
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    result = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "blocked" in result.stderr


def test_score_predict_and_bench_run_without_torch(blocker, onnx_model, hap_clip_path, neu_clip_path, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for clip in (hap_clip_path, neu_clip_path):
        shutil.copy(clip, folder / clip.name)
    (folder / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "scores.jsonl"

    scored = run_runtime(blocker, "score", str(folder), "-m", str(onnx_model), "-o", str(out), "--workers", "1")
    assert scored.returncode == 0, scored.stderr
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {hap_clip_path.name, neu_clip_path.name, "broken.mp4"}
    assert rows["broken.mp4"]["status"] == "error"

    predicted = run_runtime(blocker, "predict", str(folder / hap_clip_path.name), "-m", str(onnx_model), "--json")
    assert predicted.returncode == 0, predicted.stderr
    row = json.loads(predicted.stdout)
    scored_row = rows[hap_clip_path.name]
    assert row["label"] == scored_row["label"]
    assert np.allclose(
        [row["probabilities"][k] for k in sorted(row["probabilities"])],
        [scored_row["probabilities"][k] for k in sorted(scored_row["probabilities"])],
        atol=1e-6,
    )

    report = tmp_path / "bench.json"
    benched = run_runtime(
        blocker, "bench", "-m", str(onnx_model), "--batch-sizes", "1,4", "-n", "3", "--warmup", "1",
        "--videos", str(folder), "--json", str(report),
    )
    assert benched.returncode == 0, benched.stderr
    data = json.loads(report.read_text())
    assert "torch" not in data.get("machine", {})
    assert "Traceback" not in benched.stderr + scored.stderr + predicted.stderr


def test_in_process_score_matches_the_torch_free_one(blocker, onnx_model, hap_clip_path, tmp_path):
    """The same clip scored here (torch importable) and in a blocked process: one implementation, one answer."""
    from edge_emotion.backends import open_backend
    from edge_emotion.run.codec import to_record
    from edge_emotion.run.score import predict_clip

    with open_backend(onnx_model) as backend:
        here = to_record(predict_clip(hap_clip_path, backend))
    there = run_runtime(blocker, "predict", str(hap_clip_path), "-m", str(onnx_model), "--json")
    assert there.returncode == 0, there.stderr
    row = json.loads(there.stdout)
    assert row["label"] == here["label"]
    for label, p in here["probabilities"].items():
        assert abs(row["probabilities"][label] - p) < 1e-6


@pytest.mark.parametrize("command", [["train", "corpus", "-c", "cache", "-o", "run"], ["export", "model.pt"], ["demo"]])
def test_build_commands_in_a_runtime_install_say_what_to_install(blocker, tmp_path, command):
    """Without torch, the training side's commands end in one line naming the [train] extra, not a traceback."""
    for name in ("corpus", "cache"):
        (tmp_path / name).mkdir()
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 not really")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    result = subprocess.run([sys.executable, "-m", "edge_emotion", *command], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "edge-emotion[train]" in result.stderr, result.stderr
