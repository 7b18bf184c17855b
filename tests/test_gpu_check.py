"""benchmarks/gpu_check.py in its CPU mode, as CI runs it: every step recorded, CPU figures real, absent things named.

The device run spends scarce GPU minutes; this keeps the script from rotting between those runs. One run of the
script (about a minute on 2 cores, small sizes, --budget-s 100) is shared by the tests of its report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edge_emotion.build.model import SegmentBranch, branch_cost

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
STEPS = ["environment", "gpu_tests", "train", "parity", "throughput", "face_detector", "score",
         "onnxruntime_cuda", "tensorrt"]  # fmt: skip
STATUSES = {"ok", "failed", "skipped", "absent"}


def run_script(out: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("gpu_check")
    run = run_script(out, "--device", "cpu", "--budget-s", "100")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return json.loads((out / "gpu_check.json").read_text()), out


def steps(report: dict) -> dict[str, dict]:
    return {s["name"]: s for s in report["steps"]}


@pytest.mark.slow
def test_every_step_is_recorded_with_a_status_and_the_run_keeps_its_budget(cpu_report: tuple[dict, Path]) -> None:
    report, _ = cpu_report
    assert report["format"] == "edge-emotion-gpu-check/1" and report["device"] == "cpu"
    assert [s["name"] for s in report["steps"]] == STEPS
    for step in report["steps"]:
        assert step["status"] in STATUSES and step["seconds"] >= 0, step
        assert step["status"] == "ok" or step["reason"], f"{step['name']} is {step['status']} without a reason"
    assert report["elapsed_s"] <= report["budget_s"] + 10
    by = steps(report)
    must_run = ("environment", "train", "parity", "throughput", "face_detector")
    assert all(by[name]["status"] == "ok" for name in must_run), {n: (by[n]["status"], by[n]["reason"]) for n in must_run}
    # the last CPU step may lose its turn on a slow machine, but only by saying the budget ran out
    assert by["score"]["status"] == "ok" or "would not fit" in by["score"]["reason"], by["score"]


@pytest.mark.slow
def test_cpu_figures_are_measured_and_positive(cpu_report: tuple[dict, Path]) -> None:
    by = steps(cpu_report[0])
    env = by["environment"]["result"]
    assert env["packages"]["torch"] == torch.__version__ and env["cuda_available"] == torch.cuda.is_available()
    throughput = by["throughput"]["result"]
    assert throughput["flops_per_segment"] == branch_cost(SegmentBranch())["flops"]
    assert throughput["matmul_ceiling_tflops"]["fp32"] > 0
    cells = {(c["variant"], c["batch"]): c for c in throughput["cells"]}
    for variant in ("eager FP32", "eager FP32 channels_last", "torch backend FP32 (numpy in/out)"):
        cell = cells[(variant, 1)]
        assert cell["status"] == "ok" and cell["segments_per_s"] > 0 and cell["tflops"] > 0, cell
        assert cell["latency_ms"]["calls"] >= 5 and cell["latency_ms"]["p50"] <= cell["latency_ms"]["p99"]
        assert cell["max_abs_diff_vs_eager_fp32"] < 1e-4 and 0 < cell["share_of_measured_ceiling"]
    compiled = cells[("torch.compile FP32 channels_last", 1)]
    assert compiled["status"] == "ok" or compiled["reason"], compiled
    for amp in by["train"]["result"]["amp"]:
        assert amp["finite"] and amp["falling"] and amp["bn_statistics_finite"], amp
    assert [r["max_abs_diff"] for r in by["parity"]["result"]["rows"]] == [0.0]  # CPU against itself
    calls = by["face_detector"]["result"]["calls"]
    assert calls and all(c["frames_per_s"] > 0 for c in calls.values())
    if by["score"]["status"] == "ok":
        folder = by["score"]["result"]["folder"]
        assert folder["clips"] == 3 and folder["clips_per_s"] > 0 and folder["times_real_time"] > 0
        assert folder["gpu_utilisation"]["status"] == "absent"


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the GPU tests for real")
def test_without_a_gpu_the_gpu_things_are_recorded_as_skipped_or_absent(cpu_report: tuple[dict, Path]) -> None:
    by = steps(cpu_report[0])
    assert by["gpu_tests"]["status"] == "skipped" and "skipped" in by["gpu_tests"]["reason"]
    assert by["gpu_tests"]["result"]["counts"]["passed"] == 0 and by["gpu_tests"]["result"]["counts"]["skipped"] > 0
    ort = by["onnxruntime_cuda"]
    assert ort["status"] in ("absent", "skipped") and "CUDA" in ort["reason"], ort
    assert by["tensorrt"]["status"] in ("absent", "skipped") and by["tensorrt"]["reason"]
    assert "CUDA graphs" in " ".join(by["throughput"]["result"]["not_on_cpu"])


@pytest.mark.slow
def test_the_markdown_report_tables_every_step(cpu_report: tuple[dict, Path]) -> None:
    report, out = cpu_report
    text = (out / "gpu_check.md").read_text()
    assert "| step | status | s | summary or reason |" in text
    for step in report["steps"]:
        assert f"| {step['name']} | {step['status']} |" in text
    assert "## throughput (ok)" in text and "| eager FP32 |" in text
    assert (out / "gpu_tests.log").read_text().strip()


def test_a_budget_too_small_skips_every_step_saying_so(tmp_path: Path) -> None:
    run = run_script(tmp_path, "--device", "cpu", "--budget-s", "1", timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    for step in report["steps"]:
        assert step["status"] in ("skipped", "absent"), step
        if step["status"] == "skipped":
            assert "would not fit the budget" in step["reason"] or "CUDA" in step["reason"], step


def test_unknown_steps_and_a_missing_gpu_end_in_one_line(tmp_path: Path) -> None:
    bad = run_script(tmp_path, "--device", "cpu", "--steps", "environment,warp_drive", timeout=60)
    assert bad.returncode != 0 and "unknown step(s) ['warp_drive']" in bad.stderr and "Traceback" not in bad.stderr
    if not torch.cuda.is_available():
        no_gpu = run_script(tmp_path, "--device", "cuda", timeout=60)
        assert no_gpu.returncode != 0 and "sees no CUDA device" in no_gpu.stderr and "Traceback" not in no_gpu.stderr
