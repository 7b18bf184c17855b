"""The gpu_tests step: the suite's gpu- and tensorrt-marked tests (pytest -m "gpu or tensorrt"), case by case."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from benchmarks.gpu_check.harness import RESERVE_S, Check, StepOutcome
from benchmarks.gpu_check.inputs import REPO
from benchmarks.gpu_check.report import table

GPU_MARKS = re.compile(r"mark\.(gpu|tensorrt)\b")


def junit_cases(path: Path) -> list[dict[str, Any]]:
    """Per test case: name, outcome (passed | failed | error | skipped), seconds and the message, from JUnit XML."""
    cases = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                message = " ".join((element.get("message") or element.text or "").split())[:300]
                break
        cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "seconds": float(case.get("time") or 0.0), "message": message})  # fmt: skip
    return cases


def marked_test_files() -> list[str]:
    """Test modules that use the gpu or tensorrt marker: only these are collected, so that a module importing
    something the device lacks cannot stop the GPU tests at collection."""
    found = [p for p in sorted((REPO / "tests").glob("test_*.py")) if GPU_MARKS.search(p.read_text(encoding="utf-8"))]
    return [str(p.relative_to(REPO)) for p in found]


def verdict(cases: list[dict[str, Any]], result: dict[str, Any]) -> None:
    """Count the outcomes into `result`; raise the step's outcome unless at least one test passed and none failed."""
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    result.update(counts=counts, cases=cases)
    result["summary"] = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no tests collected"
    if counts["failed"] or counts["error"]:
        bad = [c["test"] for c in cases if c["outcome"] in ("failed", "error")]
        raise StepOutcome("failed", f"{len(bad)} failed: {', '.join(bad)[:300]}", result)
    if not counts["passed"]:
        why = next((c["message"] for c in cases if c["outcome"] == "skipped"), "no tests")
        raise StepOutcome("skipped", f"all {len(cases)} GPU-marked tests skipped ({why})", result)


def step_gpu_tests(check: Check) -> dict[str, Any]:
    result = check.begin()
    junit, log = check.work / "gpu_tests.xml", check.out / "gpu_tests.log"
    files = marked_test_files()
    if not files:
        raise StepOutcome("failed", "no test module uses the gpu or tensorrt marker", result)
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu or tensorrt", "-p", "no:cacheprovider",
               f"--junitxml={junit}", *files]  # fmt: skip
    result["command"] = " ".join(command[1:])
    timeout = max(5.0, min(check.step_left(), check.left() - RESERVE_S))
    try:
        run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        log.write_text(str(exc.stdout or "") + str(exc.stderr or ""))
        raise StepOutcome("failed", f"pytest ran past {timeout:.0f} s (output in gpu_tests.log)", result) from exc
    log.write_text(run.stdout + run.stderr)
    result["exit_code"] = run.returncode
    if not junit.exists():
        tail = " ".join((run.stdout + run.stderr).split())[-300:]
        raise StepOutcome("failed", f"pytest exited {run.returncode} without a report (gpu_tests.log): ...{tail}", result)
    verdict(junit_cases(junit), result)
    return result


def md_gpu_tests(r: dict[str, Any]) -> list[str]:
    return table(["test", "outcome", "s", "message"], [[c["test"], c["outcome"], c["seconds"], c["message"][:120]]
                                                       for c in r.get("cases", [])])  # fmt: skip
