"""`predict`: one clip, the same numbers `score` writes for it (torch and ONNX Runtime)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_emotion import LABELS
from edge_emotion.backends import open_backend
from edge_emotion.cli import app
from edge_emotion.errors import VideoError
from edge_emotion.run.codec import to_record
from edge_emotion.run.score import ScoreOptions, predict_clip, score_folder


def _probs(row: dict) -> np.ndarray:
    return np.array([row["probabilities"][k] for k in LABELS])


@pytest.fixture(scope="module")
def scored(tmp_path_factory, hap_clip_path, neu_clip_path, fresh_checkpoint) -> dict[str, dict]:
    """Both real clips scored as a folder; batch size 3 splits each clip's 4 segments across backend calls."""
    root = tmp_path_factory.mktemp("clips")
    for clip in (hap_clip_path, neu_clip_path):
        shutil.copy(clip, root / clip.name)
    out = root.parent / f"{root.name}.jsonl"
    score_folder(root, fresh_checkpoint, out, ScoreOptions(workers=0, batch_size=3))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {Path(r["path"]).name: r for r in rows}


def test_predict_gives_the_numbers_score_gives(scored, fresh_checkpoint, face_detector):
    with open_backend(fresh_checkpoint) as backend:
        for want in scored.values():
            got = to_record(predict_clip(Path(want["path"]), backend, face_detector))
            assert got["path"] == want["path"] and got["label"] == want["label"] and got["status"] == want["status"]
            np.testing.assert_allclose(_probs(got), _probs(want), atol=2e-6)
            for seg_got, seg_want in zip(got["segments"], want["segments"]):
                assert (seg_got["frame"], seg_got["audio_centre_s"]) == (seg_want["frame"], seg_want["audio_centre_s"])
                np.testing.assert_allclose(list(seg_got["probabilities"].values()), list(seg_want["probabilities"].values()), atol=2e-6)


def test_predict_cli_json_and_table(scored, fresh_checkpoint):
    from rich.console import Console

    from edge_emotion.cli.score_cmds import _probability_table, _timeline_table

    want = scored["1001_DFA_HAP_XX.flv"]
    result = CliRunner().invoke(app, ["predict", want["path"], "-m", str(fresh_checkpoint), "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    np.testing.assert_allclose(_probs(got), _probs(want), atol=2e-6)
    console = Console(width=160, record=True, file=open("/dev/null", "w"))
    console.print(_probability_table(got), _timeline_table(got))
    text = console.export_text()
    assert want["label"] in text and f"{want['probabilities'][want['label']]:.4f}" in text and "timeline" in text
    assert text.count(want["segments"][0]["probabilities"]["ANG"].__format__(".2f")) >= 1


def test_predict_refuses_a_broken_file_naming_the_cause(tmp_path, fresh_checkpoint):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00garbage" * 100)
    result = CliRunner().invoke(app, ["predict", str(broken), "-m", str(fresh_checkpoint)])
    assert result.exit_code != 0 and isinstance(result.exception, VideoError)
    assert "not a readable video container" in str(result.exception) and "broken.mp4" in str(result.exception)


def test_predict_with_the_exported_onnx_matches_torch_scores(scored, fresh_checkpoint, face_detector, tmp_path):
    from edge_emotion.toolchain.checkpoint import load_checkpoint
    from edge_emotion.toolchain.export.pipeline import build_onnx

    onnx_path = tmp_path / "fresh.onnx"
    build_onnx(load_checkpoint(fresh_checkpoint), onnx_path, "fp32")
    with open_backend(onnx_path, device="cpu") as backend:
        assert backend.name == "onnxruntime"
        for want in scored.values():
            got = to_record(predict_clip(Path(want["path"]), backend, face_detector))
            np.testing.assert_allclose(_probs(got), _probs(want), atol=1e-5)
