"""The step harness: every step timed and guarded, its record (status, reason, seconds, result) kept whatever happens.

Statuses: ok; failed (it raised, overran, or found a problem); skipped (not selected, would not fit the budget, or
needs something this device lacks); absent (the thing it checks is not installed). A step that would not fit what is
left of the budget is skipped, saying so; one that overruns is stopped at the budget's end by SIGALRM.
"""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.sizes import Sizes

STATUSES = ("ok", "failed", "skipped", "absent")
RESERVE_S = 4.0  # kept back from every step's hard limit for writing the reports


class StepOutcome(Exception):
    """Ends a step with a status other than ok (failed, skipped, absent), keeping what it measured."""

    def __init__(self, status: str, reason: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.result = status, " ".join(reason.split()), result or {}


class StepTimeout(BaseException):
    """Raised by the alarm at a step's hard limit; a BaseException so that no `except Exception` inside swallows it."""


@dataclass
class Check:
    """What the steps share: the device, the sizes, the clock and the artifacts earlier steps made."""

    device: str  # "cuda" | "cpu"
    sizes: Sizes
    work: Path  # scratch folder, removed at the end
    out: Path
    deadline: float  # time.perf_counter() by which everything must be done
    step_end: float = 0.0  # soft end of the running step: its loops stop there, leaving later steps their time
    state: dict[str, Any] = field(default_factory=dict)
    partial: dict[str, Any] = field(default_factory=dict)  # the running step's result so far (kept on a timeout)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def step_left(self) -> float:
        return self.step_end - time.perf_counter()

    def begin(self) -> dict[str, Any]:
        """The running step's result dict, registered so that a timeout keeps what it already holds."""
        self.partial = {}
        return self.partial

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()


Record = dict[str, Any]  # {"name", "status", "reason", "seconds", "result"} (+ "traceback" when it raised)
Renderer = Callable[[dict[str, Any]], list[str]]  # a step's result -> its markdown lines


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Check], dict[str, Any]]
    estimate_s: tuple[float, float]  # (cuda, cpu): what it needs to be worth starting
    render: Renderer  # its section of gpu_check.md
    probe: Callable[[Check], tuple[str, str] | None] | None = None  # (status, reason) when it cannot run here

    def estimate(self, check: Check) -> float:
        return self.estimate_s[0] if check.cuda else self.estimate_s[1]


def short(exc: BaseException, limit: int = 400) -> str:
    """An exception as one line: `Type: message`, cut at `limit` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def hard_limit(seconds: float) -> Iterator[None]:
    """Raise StepTimeout in the main thread after `seconds` (SIGALRM; a long C call ends first)."""

    def fire(_signum: int, _frame: object) -> None:
        raise StepTimeout(f"stopped after {seconds:.0f} s: the budget ran out")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def probe(check: Check, step: Step) -> tuple[str, str] | None:
    """(status, reason) when the step cannot run here, else None; a probe that breaks means it cannot."""
    if step.probe is None:
        return None
    try:
        return step.probe(check)
    except Exception as exc:  # noqa: BLE001 - a probe that breaks means the thing cannot run here
        return "absent", f"probe failed: {short(exc)}"


def run_step(check: Check, step: Step, blocked: tuple[str, str] | None, later_s: float) -> Record:
    """One step, timed and guarded: whatever it raises becomes its record, and the next step runs.

    `later_s` is what the selected steps after it are estimated to need: the step's loops stop early enough
    (check.step_end) to leave it them, unless the step's own estimate needs more."""
    record: Record = {"name": step.name, "status": "ok", "reason": "", "seconds": 0.0, "result": {}}
    left, need = check.left() - RESERVE_S, step.estimate(check)
    if blocked is not None:
        record.update(status=blocked[0], reason=blocked[1])
        return record
    if left < need:
        record.update(status="skipped", reason=f"would not fit the budget: needs about {need:.0f} s, {max(0.0, left):.0f} s left")
        return record
    start = time.perf_counter()
    check.step_end = start + max(need, left - later_s)
    print(f"[gpu_check] {step.name} ...", flush=True)
    try:
        with hard_limit(left):
            record["result"] = step.run(check)
    except StepOutcome as outcome:
        record.update(status=outcome.status, reason=outcome.reason, result=outcome.result)
    except StepTimeout as exc:
        record.update(status="failed", reason=str(exc), result=check.partial)
    except Exception as exc:  # noqa: BLE001 - recorded; the next step still runs
        record.update(status="failed", reason=short(exc), result=check.partial,
                      traceback=traceback.format_exc().splitlines()[-12:])  # fmt: skip
    record["seconds"] = time.perf_counter() - start
    print(f"[gpu_check] {step.name}: {record['status']} {record['reason'][:200]} ({record['seconds']:.1f} s)", flush=True)
    if check.cuda:
        import torch

        torch.cuda.empty_cache()
    return record


def run_steps(check: Check, steps: Sequence[Step], selected: Sequence[str], after_each: Callable[[Record], None]) -> None:
    """Every step in order, a record for each (the unselected ones too); `after_each` sees each record as it lands."""
    blocked = {s.name: probe(check, s) for s in steps}
    for i, step in enumerate(steps):
        if step.name not in selected:
            record: Record = {"name": step.name, "status": "skipped", "reason": "not selected (--steps)", "seconds": 0.0, "result": {}}
        else:
            later = sum(s.estimate(check) for s in steps[i + 1 :] if s.name in selected and blocked[s.name] is None)
            record = run_step(check, step, blocked[step.name], later)
        after_each(record)
