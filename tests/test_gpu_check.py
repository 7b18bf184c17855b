"""benchmarks/gpu_check in its CPU mode, as CI runs it: the script's own accounting, not the CPU's speed.

The device run spends scarce GPU minutes; this keeps the script from rotting between those runs. One `--quick` run
(every step's code at the smallest sizes, with a budget no step can miss) is shared by the tests of its report: every
step recorded with a status, a reason for every step that did not run, the figures derived from the timings as the
report says they are, the deterministic counts (clips, segments, frames, cells) as the sizes make them, and a
markdown section per step. The harness's budget, hard limit and statuses are checked in this process on made-up
steps, with no dependence on how busy the machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks folder is imported from the repository root, as `python -m` runs it
    sys.path.insert(0, str(ROOT))

from benchmarks.gpu_check import gpu_tests, parity, report  # noqa: E402
from benchmarks.gpu_check.face_detector import PER_CALL  # noqa: E402
from benchmarks.gpu_check.harness import RESERVE_S, STATUSES, Check, Step, StepOutcome, run_step, run_steps  # noqa: E402
from benchmarks.gpu_check.sizes import QUICK_SIZES  # noqa: E402
from benchmarks.gpu_check.steps import STEPS  # noqa: E402
from edge_emotion.toolchain.export.parity import DEFAULT_TOLERANCES  # noqa: E402
from edge_emotion.toolchain.model import SegmentBranch, branch_cost  # noqa: E402

NAMES = [s.name for s in STEPS]
CPU_VARIANTS = ["eager FP32", "eager FP32 channels_last", "torch.compile FP32 channels_last", "torch backend FP32 (numpy in/out)"]
FIXTURE_CLIPS = 2
S = QUICK_SIZES


def run_script(out: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("gpu_check")
    run = run_script(out, "--device", "cpu", "--quick", "--budget-s", "900")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return json.loads((out / "gpu_check.json").read_text()), out


def steps(report: dict) -> dict[str, dict]:
    return {s["name"]: s for s in report["steps"]}


# ---------------------------------------------------------------------------------------------------- one quick run


@pytest.mark.slow
def test_every_step_is_recorded_with_a_status_and_every_step_not_run_says_why(quick_report: tuple[dict, Path]) -> None:
    report, _ = quick_report
    assert report["format"] == "edge-emotion-gpu-check/2" and report["device"] == "cpu" and report["quick"] is True
    assert [s["name"] for s in report["steps"]] == NAMES
    for step in report["steps"]:
        assert step["status"] in STATUSES and step["seconds"] >= 0, step
        assert (step["status"] == "ok") == (step["reason"] == ""), f"{step['name']}: {step['status']} {step['reason']!r}"
    by = steps(report)
    must_run = ("environment", "train", "parity", "throughput", "face_detector", "score")
    assert {n: by[n]["status"] for n in must_run} == dict.fromkeys(must_run, "ok"), {n: by[n]["reason"] for n in must_run}
    assert by["gpu_tests"]["status"] == "skipped" or torch.cuda.is_available()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the GPU tests for real")
def test_without_a_gpu_the_gpu_things_are_skipped_or_absent_saying_why(quick_report: tuple[dict, Path]) -> None:
    report, out = quick_report
    by = steps(report)
    tests = by["gpu_tests"]["result"]
    assert tests["counts"] == {"passed": 0, "failed": 0, "error": 0, "skipped": len(tests["cases"])} and tests["cases"]
    assert by["gpu_tests"]["reason"] == f"all {len(tests['cases'])} GPU-marked tests skipped ({tests['cases'][0]['message']})"
    assert "needs a CUDA GPU" in tests["cases"][0]["message"] and (out / "gpu_tests.log").read_text().strip()
    ort = by["onnxruntime_cuda"]
    assert ort["status"] in ("absent", "skipped") and "CUDA" in ort["reason"] and ort["result"] == {}, ort
    assert by["tensorrt"]["status"] in ("absent", "skipped") and by["tensorrt"]["reason"] and by["tensorrt"]["result"] == {}
    assert by["environment"]["result"]["cuda_available"] is False
    assert "CUDA graphs" in " ".join(by["throughput"]["result"]["not_on_cpu"])
    assert by["score"]["result"]["folder"]["gpu_utilisation"] == {"status": "absent", "reason": "no CUDA device (--device cpu)"}


@pytest.mark.slow
def test_train_and_parity_count_what_the_sizes_ask_for(quick_report: tuple[dict, Path]) -> None:
    by = steps(quick_report[0])
    assert by["environment"]["result"]["packages"]["torch"] == torch.__version__
    train = by["train"]["result"]
    assert train["corpus"]["clips"] == S.synth_actors * 6 * S.synth_clips_per_class
    assert train["prepare"]["summary"].startswith(f"{train['corpus']['clips']} clips prepared")
    lib = train["library_train"]
    assert lib["config"] == {"recipe": "paper", "n_segments": S.train_segments, "batch_size": S.train_batch, "epochs": 1}
    assert lib["steps"] == len(lib["losses"]) > 0 and lib["finite"] and lib["bn_statistics_finite"]
    assert train["amp_batch"] == {"clips": S.amp_clips, "segments": S.train_segments, "inputs": "prepare cache (CachedClips)"}
    assert [a["mode"] for a in train["amp"]] == ["off", "bf16"]  # no FP16 autocast on a CPU
    for amp in train["amp"]:
        assert len(amp["losses"]) == S.amp_steps and (amp["first_loss"], amp["last_loss"]) == (amp["losses"][0], amp["losses"][-1])
        assert amp["falling"] == (amp["last_loss"] < amp["first_loss"]) and amp["falling"] and amp["finite"], amp
        assert amp["bn_updates"] == [S.amp_steps] and amp["bn_statistics_float32"] and amp["grad_scale"] is None
    result = by["parity"]["result"]
    (row,) = result["rows"]
    assert result["segments"] == row["segments"] == FIXTURE_CLIPS * S.parity_segments
    assert result["reference"] == "torch backend, CPU, FP32" and row["candidate"] == "torch cpu FP32" and "note" in result
    assert row["tolerance_max_abs"] == DEFAULT_TOLERANCES["fp32"].max_abs and row["passed"] and row["failures"] == []
    assert by["parity"]["result"]["summary"] == f"torch cpu FP32: max |diff| {row['max_abs_diff']:.2g}"


@pytest.mark.slow
def test_throughput_cells_derive_their_figures_from_their_timings(quick_report: tuple[dict, Path]) -> None:
    result = steps(quick_report[0])["throughput"]["result"]
    flops = branch_cost(SegmentBranch())["flops"]
    assert result["flops_per_segment"] == flops and set(result["matmul_ceiling_tflops"]) == {"fp32"}
    assert result["variants"] == CPU_VARIANTS
    cells = result["cells"]
    assert [(c["variant"], c["batch"]) for c in cells] == [(v, b) for b in S.batches for v in CPU_VARIANTS]
    for cell in cells:
        if cell["variant"].startswith("torch.compile"):  # --quick compiles nothing, and says so
            assert cell["status"] == "skipped" and cell["reason"] == "compiled only at batches []", cell
            continue
        assert cell["status"] == "ok", cell
        lat = cell["latency_ms"]
        assert lat["iterations"] >= 5 and lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert cell["segments_per_s"] == pytest.approx(cell["batch"] * 1e3 / lat["p50"])
        assert cell["tflops"] == pytest.approx(cell["segments_per_s"] * flops / 1e12)
        assert cell["peak_kind"] == "fp32" and cell["share_of_datasheet_peak"] is None
        assert cell["share_of_measured_ceiling"] == pytest.approx(cell["tflops"] / result["matmul_ceiling_tflops"]["fp32"])
        assert cell["finite"] and cell["max_abs_diff_vs_eager_fp32"] < 1e-4, cell
    best = max((c for c in cells if c["status"] == "ok"), key=lambda c: c["segments_per_s"])
    assert result["summary"].startswith(f"best {best['segments_per_s']:.0f} segments/s ({best['variant']}, batch {best['batch']})")


@pytest.mark.slow
def test_face_detector_and_score_count_frames_and_clips(quick_report: tuple[dict, Path]) -> None:
    by = steps(quick_report[0])
    faces = by["face_detector"]["result"]
    assert faces["detector"] == "edge_emotion.preprocess.faces.FaceDetector" and faces["warnings"] == []
    assert faces["frames"] == FIXTURE_CLIPS * S.detector_frames and faces["frame_size"] == [360, 480]
    assert list(faces["calls"]) == [f"{PER_CALL} frames per call (as score calls it)"]  # 10 frames: no all-in-one call
    for call in faces["calls"].values():
        assert call["latency_ms"]["iterations"] >= 3 and call["frames_per_s"] == pytest.approx(PER_CALL * 1e3 / call["latency_ms"]["p50"])
    assert faces["frames"] // 2 <= faces["faces_found"] <= faces["frames"]
    score = by["score"]["result"]
    assert (score["workers"], score["batch_size"], score["n_segments"]) == (S.score_workers, S.score_batch, 10)
    for key, clips in (("one_clip", 1), ("folder", S.score_clips)):
        run = score[key]
        assert run["clips"] == clips and run["statuses"] == {"ok": clips} and run["failures"] == {}, run
        assert run["clips_per_s"] == pytest.approx(clips / run["seconds"])
        assert run["times_real_time"] == pytest.approx(run["media_seconds"] / run["seconds"])
        assert set(run["stage_ms_per_clip"]) >= {"decode", "faces", "spectrogram"}


@pytest.mark.slow
def test_the_markdown_report_has_the_overview_and_a_table_per_step_that_ran(quick_report: tuple[dict, Path]) -> None:
    result, out = quick_report
    text = (out / "gpu_check.md").read_text()
    assert text.startswith("# GPU check: --device cpu") and "| step | status | s | summary or reason |" in text
    for step in result["steps"]:
        assert f"| {step['name']} | {step['status']} | {step['seconds']:.1f} |" in text
        assert (f"## {step['name']} ({step['status']})" in text) == bool(step["result"]), step["name"]
    assert "table not drawn" not in text
    for header in ("| what | value |", "| test | outcome | s | message |", "| AMP | first loss | last loss |",
                   "| candidate | max abs diff |", "| variant | batch 1 | TFLOP/s (best) |", "| calls | frames/s |",
                   "| run | clips | s | clips/s |"):  # fmt: skip
        assert header in text, header
    assert "| eager FP32 | " in text and "| torch.compile FP32 channels_last | skipped |" in text
    assert "| torch cpu FP32 | " in text and "| bf16 | " in text


# ---------------------------------------------------------------------------------------------------- the harness


def _check(tmp_path: Path, budget_s: float) -> Check:
    return Check("cpu", S, tmp_path, tmp_path, deadline=time.perf_counter() + budget_s)


def _step(name: str, run: Any, estimate_s: float = 0.0, probe: Any = None) -> Step:
    return Step(name, run, (estimate_s, estimate_s), lambda r: ["drawn"], probe)


def test_a_step_that_would_not_fit_the_budget_is_skipped_saying_what_it_needs(tmp_path: Path) -> None:
    ran: list[str] = []
    record = run_step(_check(tmp_path, RESERVE_S + 30), _step("big", lambda c: ran.append("big") or {}, 100.0), None, 0.0)
    assert ran == [] and record["status"] == "skipped" and record["result"] == {}
    assert record["reason"].startswith("would not fit the budget: needs about 100 s, ") and record["reason"].endswith(" s left")
    left = float(record["reason"].split(", ")[1].split(" ")[0])
    assert 25 <= left <= 30


def test_a_step_sees_its_share_of_the_budget_after_what_later_steps_need(tmp_path: Path) -> None:
    seen: dict[str, float] = {}
    check = _check(tmp_path, RESERVE_S + 100)
    run_step(check, _step("first", lambda c: seen.update(left=c.step_left()) or {}, 10.0), None, later_s=60.0)
    assert 35 <= seen["left"] <= 40  # 100 s left, 60 s kept for the later steps
    run_step(check, _step("greedy", lambda c: seen.update(left=c.step_left()) or {}, 80.0), None, later_s=60.0)
    assert 75 <= seen["left"] <= 80  # its own estimate wins over the later steps' share


def test_a_step_that_overruns_is_stopped_at_the_budget_keeping_what_it_measured(tmp_path: Path) -> None:
    def slow(check: Check) -> dict[str, Any]:
        check.begin()["measured"] = 1
        time.sleep(30)
        return {"never": True}

    start = time.perf_counter()
    record = run_step(_check(tmp_path, RESERVE_S + 1.5), _step("slow", slow), None, 0.0)
    assert time.perf_counter() - start < 10
    assert record["status"] == "failed" and "the budget ran out" in record["reason"] and record["result"] == {"measured": 1}


def test_outcomes_errors_probes_and_unselected_steps_each_get_their_record(tmp_path: Path) -> None:
    def absent(check: Check) -> dict[str, Any]:
        raise StepOutcome("absent", "no  such\nthing", {"looked": True})

    def broken(check: Check) -> dict[str, Any]:
        check.begin()["half"] = True
        raise ValueError("bad value")

    def no_probe(check: Check) -> tuple[str, str] | None:
        raise OSError("probe broke")

    records: list[dict] = []
    run_steps(_check(tmp_path, RESERVE_S + 60), [
        _step("absent", absent), _step("broken", broken), _step("blocked", dict, probe=lambda c: ("skipped", "needs CUDA")),
        _step("probe_fails", dict, probe=no_probe), _step("fine", lambda c: {"summary": "fine"}), _step("unselected", dict),
    ], ["absent", "broken", "blocked", "probe_fails", "fine"], records.append)  # fmt: skip
    got = {r["name"]: (r["status"], r["reason"], r["result"]) for r in records}
    assert got == {
        "absent": ("absent", "no such thing", {"looked": True}),
        "broken": ("failed", "ValueError: bad value", {"half": True}),
        "blocked": ("skipped", "needs CUDA", {}),
        "probe_fails": ("absent", "probe failed: OSError: probe broke", {}),
        "fine": ("ok", "", {"summary": "fine"}),
        "unselected": ("skipped", "not selected (--steps)", {}),
    }
    assert "ValueError: bad value" in records[1]["traceback"][-1]
    text = report.markdown({"device": "cpu", "started_utc": "now", "budget_s": 60, "command": ["x"], "steps": records},
                           {"absent": lambda r: r["missing"], "fine": lambda r: ["drawn"]})  # fmt: skip
    assert "## absent (absent)\n\n(table not drawn: KeyError: 'missing'; see gpu_check.json)" in text
    assert "## fine (ok)\n\ndrawn" in text and "| fine | ok | 0.0 | fine |" in text and "## broken" not in text


def test_parity_failures_name_the_candidate_outside_its_tolerance() -> None:
    reference = np.full((4, 6), 1 / 6)
    same = parity.parity_row(reference, reference.copy(), "fp32", "same")
    off = reference.copy()
    off[0, :2] += [1e-3, -1e-3]
    moved = parity.parity_row(reference, off, "fp32", "moved")
    assert same["passed"] and same["max_abs_diff"] == 0.0 and same["segments"] == 4
    assert not moved["passed"] and moved["max_abs_diff"] == pytest.approx(1e-3)
    assert parity.parity_failures([same, moved]) == [f"moved: {'; '.join(moved['failures'])}"] and moved["failures"]


def test_gpu_test_outcomes_decide_the_step(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text('<testsuite><testcase classname="t" name="a" time="0.5"/>'
                     '<testcase classname="t" name="b" time="0.1"><skipped message="needs a CUDA GPU"/></testcase>'
                     '<testcase classname="t" name="c"><failure message="boom">trace</failure></testcase></testsuite>')  # fmt: skip
    cases = gpu_tests.junit_cases(junit)
    assert [(c["test"], c["outcome"], c["seconds"], c["message"]) for c in cases] == [
        ("t::a", "passed", 0.5, ""), ("t::b", "skipped", 0.1, "needs a CUDA GPU"), ("t::c", "failed", 0.0, "boom")]
    with pytest.raises(StepOutcome) as failed:
        gpu_tests.verdict(cases, {})
    assert (failed.value.status, failed.value.reason) == ("failed", "1 failed: t::c")
    with pytest.raises(StepOutcome) as skipped:
        gpu_tests.verdict(cases[1:2], {})
    assert (skipped.value.status, skipped.value.reason) == ("skipped", "all 1 GPU-marked tests skipped (needs a CUDA GPU)")
    result: dict[str, Any] = {}
    gpu_tests.verdict(cases[:2], result)
    assert result["counts"] == {"passed": 1, "failed": 0, "error": 0, "skipped": 1} and result["summary"] == "1 passed, 1 skipped"


# ---------------------------------------------------------------------------------------------------- the command line


def test_a_budget_too_small_skips_every_step_saying_so(tmp_path: Path) -> None:
    run = run_script(tmp_path, "--device", "cpu", "--budget-s", "1", timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [s["name"] for s in result["steps"]] == NAMES
    for step in result["steps"]:
        assert step["status"] in ("skipped", "absent") and step["seconds"] == 0.0, step
        if step["status"] == "skipped":
            assert "would not fit the budget" in step["reason"] or "CUDA" in step["reason"], step


def test_the_folder_runs_as_a_script_too_and_bad_arguments_end_in_one_line(tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check"), "--out", str(tmp_path), "--device", "cpu",
                          "--steps", "environment,warp_drive"], capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert bad.returncode != 0 and "unknown step(s) ['warp_drive']" in bad.stderr and "Traceback" not in bad.stderr
    if not torch.cuda.is_available():
        no_gpu = run_script(tmp_path, "--device", "cuda", timeout=60)
        assert no_gpu.returncode != 0 and "sees no CUDA device" in no_gpu.stderr and "Traceback" not in no_gpu.stderr
