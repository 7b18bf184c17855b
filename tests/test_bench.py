"""`bench`: sane numbers (positive, p99 >= p50), every requested backend in the table, valid JSON, a PNG."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_emotion.cli import app
from edge_emotion.run.bench.run import run_bench
from edge_emotion.run.bench.targets import plan_targets
from edge_emotion.run.bench.timing import latency_stats, time_synchronised

N = 4


def test_latency_stats_percentiles():
    stats = latency_stats([0.001, 0.002, 0.003, 0.004, 0.100])
    assert stats.mean == pytest.approx(22.0) and stats.p50 == pytest.approx(3.0) and stats.min == pytest.approx(1.0)
    assert stats.p50 <= stats.p90 <= stats.p95 <= stats.p99 <= stats.max == pytest.approx(100.0)
    with pytest.raises(ValueError):
        latency_stats([])


def test_time_synchronised_waits_for_every_timed_call_and_bounds_their_number():
    events = []
    stats = time_synchronised(lambda: events.append("call"), lambda: events.append("sync"), 2, 3, 5, max_seconds=0.0)
    assert events == ["call", "call", "sync"] + ["call", "sync"] * 3 and stats.iterations == 3  # time is up: the minimum
    events.clear()
    stats = time_synchronised(lambda: events.append("call"), lambda: events.append("sync"), 0, 1, 4, max_seconds=60.0)
    assert events == ["sync"] + ["call", "sync"] * 4 and stats.iterations == 4  # time left: the maximum


def test_plan_targets_keeps_backends_without_an_artifact(tmp_path):
    targets = plan_targets([tmp_path / "a.pt", tmp_path / "b.onnx", tmp_path / "c.int8.onnx"], ["torch", "onnxruntime", "tensorrt"])
    assert [(t.backend, t.artifact and t.artifact.name) for t in targets] == [
        ("torch", "a.pt"), ("onnxruntime", "b.onnx"), ("onnxruntime", "c.int8.onnx"), ("tensorrt", None),
    ]
    assert ".engine" in targets[-1].reason


@pytest.fixture(scope="module")
def onnx_model(fresh_checkpoint, tmp_path_factory):
    from edge_emotion.toolchain.checkpoint import load_checkpoint
    from edge_emotion.toolchain.export.pipeline import build_onnx

    path = tmp_path_factory.mktemp("onnx") / "fresh.onnx"
    build_onnx(load_checkpoint(fresh_checkpoint), path, "fp32")
    return path


def test_bench_compares_backends_in_one_run(fresh_checkpoint, onnx_model):
    targets = plan_targets([fresh_checkpoint, onnx_model], ["torch", "onnxruntime", "tensorrt"])
    report = run_bench(targets, (1, 4), iterations=5, warmup=1, device="cpu")
    ok = [r for r in report.rows if r.status == "ok"]
    assert [(r.backend, r.batch_size) for r in ok] == [("torch", 1), ("torch", 4), ("onnxruntime", 1), ("onnxruntime", 4)]
    for row in ok:
        lat = row.latency_ms
        assert 0 < lat.min <= lat.p50 <= lat.p90 <= lat.p95 <= lat.p99 <= lat.max and lat.mean > 0 and lat.iterations >= 3
        assert row.segments_per_s > 0 and row.clips_per_s == pytest.approx(row.segments_per_s / N)
        assert row.precision == "fp32" and row.file_mb > 0
        assert row.agreement >= 0.75 and row.max_abs_diff < 1e-4  # ONNX Runtime vs torch on the same inputs
    assert ok[0].agreement == 1.0 and ok[0].max_abs_diff == 0.0  # torch is the FP32 reference
    trt = [r for r in report.rows if r.backend == "tensorrt"]
    assert len(trt) == 1 and trt[0].status in ("unavailable", "skipped", "failed") and trt[0].reason


def test_bench_cli_json_plot_and_stage_breakdown(fresh_checkpoint, hap_clip_path, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(hap_clip_path, videos / hap_clip_path.name)
    (videos / "broken.mp4").write_bytes(b"")
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    args = ["bench", "-m", str(fresh_checkpoint), "--backends", "torch,tensorrt", "--batch-sizes", "1,2", "-n", "3", "--warmup", "1"]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--json", str(out), "--plot", str(png), "--videos", str(videos)])
    assert result.exit_code == 0, result.output
    assert "tensorrt" in result.stdout and "decode" in result.stdout
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [r["status"] for r in rows][:2] == ["ok", "ok"] and rows[2]["backend"] == "tensorrt" and rows[2]["status"] != "ok"
    for row in rows[:2]:
        assert row["latency_ms"]["p99"] >= row["latency_ms"]["p50"] > 0 and row["segments_per_s"] > 0
    stages = report["stages"]
    assert stages["clips"] == 1 and stages["failed"] == 1
    assert set(stages["ms_per_clip"]) == {"decode", "faces", "spectrogram", "inference", "consensus"}
    assert all(v >= 0 for v in stages["ms_per_clip"].values()) and stages["ms_per_clip"]["faces"] > 0
    assert stages["times_real_time"] > 0 and np.isclose(stages["total_ms"], sum(stages["ms_per_clip"].values()))
    assert report["inputs"] == f"{N} segments of 1 videos"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
