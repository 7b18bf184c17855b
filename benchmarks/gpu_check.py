"""Every GPU path of the toolkit, checked and timed in one process, so a short device session is spent running, not debugging.

On the device (the workplace's `run` tool; its image has torch + CUDA, torchvision, onnx, onnxruntime (CPU), pillow,
pytest, nvidia-ml-py, but no PyAV, no facenet-pytorch, no tensorrt, no onnxruntime-gpu and no network):

    carry: [".whl"]    timeout_s: 500    command (one line):
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg || exit; python3 benchmarks/gpu_check.py --device cuda --out $OUT --budget-s 420

Its files come back from $OUT: gpu_check.json, gpu_check.md, gpu_tests.log. To rerun a failed step with the minutes
left, add e.g. `--steps throughput --budget-s 200`. Fill .whl/ here first; it is ignored by git and travels through
`carry`. The device's python3 is 3.12; av's wheel is abi3 (cp311+), facenet-pytorch's pure Python:

    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      -d .whl av==18.1.0 facenet-pytorch==2.6.0

    av 18.1.0           35.8 MB  decoding, the synthetic corpus, the tests' videos (not in the image)
    facenet-pytorch     1.9 MB   FaceDetector's MTCNN while faces.py uses it (its torchvision, requests,
                                 tqdm, pillow are in the image); not needed once the packaged ONNX detector lands
    together 37.7 MB of the 64 MiB that travel (the working tree itself is about 1.5 MB)

A dependency that is still missing there fails the steps that need it, with the install hint, and the others run.

Here, on any CPU (CI runs this through tests/test_gpu_check.py with a small budget, so it cannot rot):

    python benchmarks/gpu_check.py --device cpu --out /tmp/gpu-check            # every step a CPU can run, < 3 min

Steps, in order, each timed and guarded (a failing step is recorded and the next one runs); `--steps a,b` runs some:
    environment    GPU, compute capability, driver, CUDA/cuDNN/torch/onnxruntime versions, free memory, packages
    gpu_tests      the test suite's gpu- and tensorrt-marked tests (pytest -m "gpu or tensorrt")
    train          synthetic corpus -> prepare cache -> `train` on the device; then AMP off / FP16 / BF16 on one
                   fixed batch (BatchNorm statistics, GradScaler): loss finite and falling
    parity         the torch backend on the device vs on the CPU, real fixture segments: FP32, FP32 without TF32,
                   FP16 autocast
    throughput     branch segments/s for batch 1..4096: eager FP32 (NCHW, channels_last), FP16 autocast,
                   torch.compile, CUDA graphs, the torch backend with numpy in and out; FLOPs per segment
                   (model.branch_cost) and the share of the measured matmul ceiling and of the datasheet peak
    face_detector  FaceDetector on the device: frames/s, boxes against the CPU's
    score          score_folder end to end on copies of the fixture clips: clips/s, x real time, GPU utilisation
    onnxruntime_cuda   ONNX Runtime's CUDA provider (FP32, FP16 ONNX) if onnxruntime-gpu is there, else absent
    tensorrt       FP16 and INT8 (Q/DQ) engines built and run if tensorrt is importable, else absent

Writes OUT/gpu_check.json (every step with status ok | failed | skipped | absent, its reason, seconds and values)
and OUT/gpu_check.md (the tables) after every step, so a run cut short still leaves what it measured, and
OUT/gpu_tests.log (pytest's output). Steps that would not fit the rest of --budget-s are skipped, saying so; a step
that overruns is stopped at the budget's end.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
FORMAT = "edge-emotion-gpu-check/1"
GPU_MARKS = re.compile(r"mark\.(gpu|tensorrt)\b")
RESERVE_S = 4.0  # kept back from every step's hard limit for writing the reports
# Dense (no sparsity) TFLOP/s from NVIDIA's H100 / H200 SXM datasheets, by torch's device name; other GPUs: none.
DATASHEET_TFLOPS: dict[str, dict[str, float]] = {
    "NVIDIA H200": {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4},
    "NVIDIA H100 80GB HBM3": {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4},
}
PACKAGES = (
    "numpy", "torch", "torchvision", "onnx", "onnxruntime", "av", "PIL", "typer", "rich", "matplotlib",
    "pytest", "facenet_pytorch", "tensorrt", "pynvml",
)  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    """How much each step does on one kind of device: full sizes on a GPU, small ones that finish on 2 CPU cores."""

    batches: tuple[int, ...]  # branch throughput batch sizes
    compile_batches: tuple[int, ...]  # torch.compile recompiles per shape: only these
    compile_cell_s: float  # estimated seconds of one compiled cell (compile + timing)
    cell_s: float  # minimum timed seconds per throughput cell
    synth_actors: int
    synth_clips_per_class: int
    detect_every: int  # prepare: detect every k-th frame
    train_segments: int  # N for training
    train_batch: int  # clips per step of `train`
    amp_clips: int  # clips in the fixed AMP batch
    amp_steps: int
    parity_segments: int  # N per fixture clip for parity
    detector_frames: int  # frames of the fixture clips for the detector (0: all)
    score_clips: int  # copies of the fixture clips scored end to end
    score_workers: int
    score_batch: int


CUDA_SIZES = Sizes(
    batches=(1, 4, 16, 64, 256, 1024, 4096), compile_batches=(1, 256, 4096), compile_cell_s=45.0, cell_s=0.4,
    synth_actors=3, synth_clips_per_class=2, detect_every=3, train_segments=10, train_batch=8, amp_clips=16,
    amp_steps=12, parity_segments=32, detector_frames=0, score_clips=128,
    score_workers=max(1, min(8, (os.cpu_count() or 2) - 2)), score_batch=256,
)  # fmt: skip
CPU_SIZES = Sizes(
    batches=(1, 8), compile_batches=(1,), compile_cell_s=40.0, cell_s=0.2,
    synth_actors=2, synth_clips_per_class=1, detect_every=10, train_segments=2, train_batch=2, amp_clips=2,
    amp_steps=4, parity_segments=4, detector_frames=5, score_clips=3, score_workers=0, score_batch=64,
)  # fmt: skip


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


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Check], dict[str, Any]]
    estimate_s: tuple[float, float]  # (cuda, cpu): what it needs to be worth starting
    probe: Callable[[Check], tuple[str, str] | None] | None = None  # (status, reason) when it cannot run here

    def estimate(self, check: Check) -> float:
        return self.estimate_s[0] if check.cuda else self.estimate_s[1]


# ---------------------------------------------------------------------------------------------------- helpers


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


def latency(seconds: Sequence[float]) -> dict[str, float]:
    """Milliseconds per call: percentiles over synchronised calls (edge_emotion.run.bench's are tied to its decoder imports)."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(ms.mean()),
            "min": float(ms.min()), "max": float(ms.max()), "calls": int(ms.size)}  # fmt: skip


def time_calls(call: Callable[[], object], sync: Callable[[], None], min_seconds: float, warmup: int = 3,
               min_calls: int = 5, max_calls: int = 300) -> dict[str, float]:  # fmt: skip
    """Warm up, then time synchronised calls for at least `min_seconds` and `min_calls`."""
    for _ in range(warmup):
        call()
    sync()
    times: list[float] = []
    end = time.perf_counter() + min_seconds
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() < end):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return latency(times)


def short(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def tf32(enabled: bool | None) -> Iterator[None]:
    """Set cuDNN's and cuBLAS's TF32 switches for the block (None: leave them), restoring them after."""
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if enabled is not None:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def cudnn_flags_kept() -> Iterator[None]:
    """`train` sets cudnn.deterministic / benchmark for the whole process: put them back for the steps after it."""
    import torch

    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def fixture_clips() -> list[Path]:
    """The two real CREMA-D clips (FLV, VP6F 480x360, MP3)."""
    return sorted(FIXTURES.glob("*.flv"))


def face_detector(params: Any, device: str) -> tuple[Any | None, str]:
    """(FaceDetector, '') or (None, why) when it cannot be built here (e.g. its package is missing)."""
    from edge_emotion.preprocess.faces import FaceDetector

    try:
        return FaceDetector(params, device=device), ""
    except ImportError as exc:  # MissingDependencyError is one, with the install hint
        return None, short(exc)


def fresh_checkpoint(check: Check) -> Path:
    """An untrained checkpoint of the real architecture (N = 10), BatchNorm statistics from 3 random batches.

    Speed does not depend on the weights; non-trivial statistics keep parity from comparing near-identity BNs.
    """
    path = check.work / "fresh.pt"
    if path.exists():
        return path
    import torch

    from edge_emotion import LABELS
    from edge_emotion.build.checkpoint import save_checkpoint
    from edge_emotion.build.model import WIDTHS, SegmentBranch
    from edge_emotion.config import PreprocessConfig

    torch.manual_seed(0)
    branch = SegmentBranch()
    with torch.no_grad():
        for _ in range(3):
            branch(torch.randn(4, 3, 224, 224), torch.randn(4, 1, 192, 120))
    state = {"model": branch.state_dict(), "model_config": {"n_classes": len(LABELS), "modality": "both",
             "widths": list(WIDTHS)}, "labels": list(LABELS), "preprocess": PreprocessConfig().to_dict(),
             "train_config": {"note": "gpu_check: untrained weights"}}  # fmt: skip
    save_checkpoint(path, state)
    return path


def model_checkpoint(check: Check) -> tuple[Path, str]:
    """The checkpoint `train` wrote in this run if any (trained weights), else a fresh one; and which it is."""
    trained = check.state.get("trained_checkpoint")
    if trained is not None and Path(trained).exists():
        return Path(trained), "trained by the train step"
    return fresh_checkpoint(check), "untrained (fresh) weights"


def fixture_segments(check: Check, config: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Real segments of the fixture clips, faces from the CPU detector (centre crops if it cannot be built).

    Returns faces [S, 3, 224, 224], spectrograms [S, 1, 192, 120] float32, and how the faces were cut.
    """
    from edge_emotion.io.decode import open_clip
    from edge_emotion.preprocess.segments import extract, plan_clip

    detector, why = face_detector(config.face, "cpu")
    faces, specs = [], []
    for path in fixture_clips():
        clip = open_clip(path, config.audio.sample_rate)
        segments = plan_clip(clip, config)
        if detector is not None:
            inputs = extract(clip, segments, config, detector=detector)
        else:
            inputs = extract(clip, segments, config, boxes=[None] * len(segments))
        faces.append(inputs.faces)
        specs.append(inputs.spectrograms)
    how = "faces from FaceDetector on the CPU" if detector is not None else f"centre crops ({why})"
    return np.concatenate(faces), np.concatenate(specs), how


def reference_inputs(check: Check) -> dict[str, Any]:
    """Fixture segments and the torch CPU FP32 probabilities of the run's checkpoint on them (made once)."""
    if "reference" in check.state:
        return check.state["reference"]
    from edge_emotion.backends import open_backend

    checkpoint, weights = model_checkpoint(check)
    with open_backend(checkpoint, "torch", device="cpu") as backend:
        config = replace(backend.contract.preprocess, n_segments=check.sizes.parity_segments)
        faces, specs, how = fixture_segments(check, config)
        probs = backend.infer(faces, specs)  # [S, K]
    check.state["reference"] = {"checkpoint": checkpoint, "weights": weights, "faces": faces, "specs": specs,
                                "how": how, "probs": probs}  # fmt: skip
    return check.state["reference"]


def parity_row(reference: np.ndarray, candidate: np.ndarray, precision: str, label: str) -> dict[str, Any]:
    """export.parity.compare with the precision's default tolerance, as a JSON-able row."""
    from edge_emotion.build.export.parity import compare

    report = compare(reference, candidate, precision)
    return {"candidate": label, "precision": precision, "segments": report.segments,
            "max_abs_diff": report.max_abs_diff, "mean_abs_diff": report.mean_abs_diff,
            "top1_agreement": report.top1_agreement, "tolerance_max_abs": report.tolerance.max_abs,
            "passed": report.passed, "failures": report.failures}  # fmt: skip


class GpuSampler:
    """GPU utilisation sampled in a thread while a block runs: NVML (nvidia-ml-py) if importable, else nvidia-smi.

    Utilisation is the driver's: the share of the last sample period in which any kernel ran, not of the SMs busy.
    """

    def __init__(self, enabled: bool, interval_s: float = 0.1) -> None:
        self.enabled, self.interval_s = enabled, interval_s
        self.samples: list[tuple[float, float]] = []  # (utilisation %, memory used MiB)
        self.source, self.error = "", ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _reader(self) -> Callable[[], tuple[float, float]]:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.source = "nvml"
            return lambda: (float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                            pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20)  # fmt: skip
        except Exception:  # noqa: BLE001 - no NVML: try the command line tool
            query = ["nvidia-smi", "-i", "0", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
            self.source = "nvidia-smi"

            def read() -> tuple[float, float]:
                fields = subprocess.run(query, capture_output=True, text=True, timeout=5, check=True).stdout.split(",")
                return float(fields[0]), float(fields[1])

            return read

    def _loop(self, read: Callable[[], tuple[float, float]]) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(read())
            except Exception as exc:  # noqa: BLE001 - the sampler reports, it never stops the step
                self.error = short(exc)
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, args=(self._reader(),), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> dict[str, Any]:
        if not self.enabled:
            return {"status": "absent", "reason": "no CUDA device (--device cpu)"}
        if not self.samples:
            return {"status": "failed", "reason": self.error or "no samples", "source": self.source}
        util = [u for u, _ in self.samples]
        return {"status": "ok", "source": self.source, "samples": len(util), "mean_percent": float(np.mean(util)),
                "max_percent": float(max(util)), "memory_used_mib_max": float(max(m for _, m in self.samples))}  # fmt: skip


# ---------------------------------------------------------------------------------------------------- environment


def package_versions() -> dict[str, str]:
    """Version of each package the steps may use, or 'absent (why)': what the device image lacks shows here."""
    found = {}
    for name in PACKAGES:
        try:
            module = importlib.import_module(name)
            found[name] = str(getattr(module, "__version__", "present"))
        except Exception as exc:  # noqa: BLE001 - a broken install is as absent as a missing one
            found[name] = f"absent ({short(exc, 160)})"
    return found


def driver_version() -> str:
    """The NVIDIA driver's version: from NVML (nvidia-ml-py) if it answers, else from nvidia-smi."""
    with contextlib.suppress(Exception):
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    try:
        run = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True)  # fmt: skip
        return run.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        return f"unknown ({short(exc, 120)})"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_facts() -> dict[str, Any]:
    import torch

    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info(0)
    return {"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count, "memory_total_gib": round(total / 2**30, 2),
            "memory_free_gib": round(free / 2**30, 2), "driver": driver_version(),
            "devices": torch.cuda.device_count()}  # fmt: skip


def step_environment(check: Check) -> dict[str, Any]:
    import torch

    result = check.begin()
    result.update(
        python=platform.python_version(), platform=platform.platform(), cpu=cpu_model(), cpus=os.cpu_count(),
        torch=torch.__version__, torch_cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
        torch_threads=torch.get_num_threads(), cuda_available=torch.cuda.is_available(),
        tf32={"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
              "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32},
        packages=package_versions(),
    )  # fmt: skip
    try:
        import onnxruntime

        result["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError as exc:
        result["onnxruntime_providers"] = f"absent ({short(exc)})"
    if check.cuda:
        result["gpu"] = gpu_facts()
    missing = [name for name, v in result["packages"].items() if v.startswith("absent")]
    where = result["gpu"]["name"] if check.cuda else f"CPU: {result['cpu']}"
    result["summary"] = f"{where}; torch {torch.__version__}; absent: {', '.join(missing) or 'nothing'}"
    return result


# ---------------------------------------------------------------------------------------------------- gpu tests


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
    cases = junit_cases(junit)
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    result.update(counts=counts, cases=cases)
    result["summary"] = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no tests collected"
    if counts["failed"] or counts["error"]:
        bad = [c["test"] for c in cases if c["outcome"] in ("failed", "error")]
        raise StepOutcome("failed", f"{len(bad)} failed: {', '.join(bad)[:300]}", result)
    if not counts["passed"]:
        why = next((c["message"] for c in cases if c["outcome"] == "skipped"), "no tests")
        raise StepOutcome("skipped", f"all {len(cases)} GPU-marked tests skipped ({why})", result)
    return result


# ---------------------------------------------------------------------------------------------------- training


def library_train(check: Check, corpus: Path, cache: Path) -> dict[str, Any]:
    """edge_emotion.build.train.loop.train on the device: one epoch of the paper recipe, then its evaluation."""
    import torch

    from edge_emotion.build.checkpoint import load_checkpoint
    from edge_emotion.build.train.loop import recipe_config, train

    s = check.sizes
    config = recipe_config("paper", n_segments=s.train_segments, epochs=1, batch_size=s.train_batch,
                           n_folds=s.synth_actors, fold=0, eval_each_epoch=False, device=check.device)  # fmt: skip
    run_dir = check.work / "train-run"
    start = time.perf_counter()
    with cudnn_flags_kept():
        outcome = train(corpus, cache, run_dir, config)
    seconds = time.perf_counter() - start
    steps = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines() if line.strip()]
    state = load_checkpoint(run_dir / "checkpoint.pt")
    bn = {k: v for k, v in state["model"].items() if k.endswith(("running_mean", "running_var"))}
    check.state["trained_checkpoint"] = run_dir / "checkpoint.pt"
    losses = [row["loss"] for row in steps]
    return {
        "config": {"recipe": "paper", "n_segments": s.train_segments, "batch_size": s.train_batch, "epochs": 1},
        "steps": len(steps), "losses": losses, "finite": bool(np.isfinite(losses).all()) if losses else False,
        "seconds_with_eval": seconds, "test_accuracy": outcome.accuracy,
        "training_segments_per_s": len(steps) * s.train_batch * s.train_segments / seconds,
        "bn_statistics_finite": all(bool(torch.isfinite(v).all()) for v in bn.values()),
        "cuda_rng_saved": bool(state.get("cuda_rng")) if check.cuda else None,
    }  # fmt: skip


def fixed_batch(check: Check, corpus: Path, cache: Path | None) -> tuple[Any, Any, Any, str]:
    """One batch of synthetic clips on the device: faces [B, N, 3, 224, 224], spectrograms [B, N, 1, 192, 120], labels [B].

    From the prepare cache (the training dataset itself) when there is one, else centre crops through segments.extract.
    """
    import torch

    from edge_emotion.build.train.box_cache import cache_face_params
    from edge_emotion.build.train.crema import index_corpus
    from edge_emotion.build.train.dataset import CachedClips
    from edge_emotion.config import PreprocessConfig
    from edge_emotion.io.decode import open_clip
    from edge_emotion.preprocess.segments import extract, plan_clip

    s = check.sizes
    items = index_corpus(corpus)[0][: s.amp_clips]
    if cache is not None:
        config = PreprocessConfig(n_segments=s.train_segments, face=cache_face_params(cache))
        dataset = CachedClips(items, str(cache), config, "train", seed=0)
        samples, how = [dataset[i] for i in range(len(items))], "prepare cache (CachedClips)"
    else:
        config, samples = PreprocessConfig(n_segments=s.train_segments), []
        for k, item in enumerate(items):
            clip = open_clip(item.path, config.audio.sample_rate)
            segments = plan_clip(clip, config, "train", np.random.default_rng([0, k]))
            inputs = extract(clip, segments, config, boxes=[None] * len(segments))
            samples.append((torch.from_numpy(inputs.faces), torch.from_numpy(inputs.spectrograms), item.label))
        how = "centre crops (no prepare cache)"
    device = torch.device(check.device)
    faces = torch.stack([f for f, _, _ in samples]).to(device)
    specs = torch.stack([a for _, a, _ in samples]).to(device)
    labels = torch.tensor([y for _, _, y in samples], device=device)
    return faces, specs, labels, how


def amp_run(check: Check, batch: tuple[Any, Any, Any], mode: str) -> dict[str, Any]:
    """`amp_steps` optimizer steps on one fixed batch with autocast off / fp16 (+ GradScaler) / bf16."""
    import torch

    from edge_emotion.build.model import clip_loss
    from edge_emotion.build.train.config import make_optimizer
    from edge_emotion.build.train.loop import build_model, recipe_config

    faces, specs, labels = batch
    device = torch.device(check.device)
    config = recipe_config("modern", n_segments=faces.shape[1], batch_size=faces.shape[0])
    model = build_model(config).to(device).train()
    optimizer = make_optimizer(config, model.parameters())
    dtype = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[mode]
    scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16")
    if check.cuda:
        torch.cuda.reset_peak_memory_stats()
    losses, times = [], []
    for _ in range(check.sizes.amp_steps):
        start = time.perf_counter()
        autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with autocast:
            logits = model.segment_logits(faces, specs)  # [B, N, K]
        loss = clip_loss(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))  # waits for the step
        times.append(time.perf_counter() - start)
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    step_s = float(np.median(times[1:])) if len(times) > 1 else times[0]
    return {
        "mode": mode, "losses": losses, "first_loss": losses[0], "last_loss": losses[-1],
        "finite": bool(np.isfinite(losses).all()), "falling": bool(losses[-1] < losses[0]),
        "step_ms": 1e3 * step_s, "first_step_ms": 1e3 * times[0],
        "training_segments_per_s": faces.shape[0] * faces.shape[1] / step_s,
        "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if check.cuda else None,
        "bn_statistics_finite": all(bool(torch.isfinite(m.running_mean).all() and torch.isfinite(m.running_var).all())
                                    for m in bn),
        "bn_statistics_float32": all(m.running_mean.dtype == torch.float32 for m in bn),
        "bn_updates": sorted({int(m.num_batches_tracked) for m in bn}),
        "grad_scale": float(scaler.get_scale()) if scaler.is_enabled() else None,
    }  # fmt: skip


def amp_problems(run: dict[str, Any]) -> list[str]:
    problems = []
    if not run["finite"]:
        problems.append(f"AMP {run['mode']}: loss not finite {run['losses']}")
    elif not run["falling"]:
        problems.append(f"AMP {run['mode']}: loss did not fall ({run['first_loss']:.4f} -> {run['last_loss']:.4f})")
    if not run["bn_statistics_finite"]:
        problems.append(f"AMP {run['mode']}: BatchNorm statistics not finite")
    return problems


def step_train(check: Check) -> dict[str, Any]:
    from edge_emotion.build.synth import make_corpus
    from edge_emotion.build.train.prepare import prepare_corpus

    result = check.begin()
    s, problems = check.sizes, []
    corpus, cache = check.work / "synth", check.work / "synth-cache"
    start = time.perf_counter()
    paths = make_corpus(corpus, actors=s.synth_actors, clips_per_class=s.synth_clips_per_class, seed=0)
    result["corpus"] = {"clips": len(paths), "seconds": time.perf_counter() - start}
    start = time.perf_counter()
    try:
        report = prepare_corpus(corpus, cache, every=s.detect_every)
        result["prepare"] = {"summary": report.summary(), "seconds": time.perf_counter() - start}
        prepared = not report.failed
    except ImportError as exc:  # MissingDependencyError: no face detector here
        result["prepare"] = {"error": short(exc)}
        prepared = False
    if prepared:
        result["library_train"] = library_train(check, corpus, cache)
        if not result["library_train"]["finite"]:
            problems.append(f"train: loss not finite {result['library_train']['losses']}")
    else:
        result["library_train"] = {"status": "skipped", "reason": f"no prepare cache: {result['prepare']}"}
        problems.append("train (the library's loop) did not run: no prepare cache")
    faces, specs, labels, how = fixed_batch(check, corpus, cache if prepared else None)
    result["amp_batch"] = {"clips": int(faces.shape[0]), "segments": int(faces.shape[1]), "inputs": how}
    modes = ("off", "fp16", "bf16") if check.cuda else ("off", "bf16")
    result["amp"] = []
    for mode in modes:
        result["amp"].append(amp_run(check, (faces, specs, labels), mode))
        problems += amp_problems(result["amp"][-1])
    result["summary"] = "; ".join(f"AMP {r['mode']}: loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}, "
                                  f"{r['step_ms']:.0f} ms/step" for r in result["amp"])  # fmt: skip
    if problems:
        raise StepOutcome("failed", "; ".join(problems), result)
    return result


# ---------------------------------------------------------------------------------------------------- parity


def step_parity(check: Check) -> dict[str, Any]:
    from edge_emotion.backends import open_backend

    result = check.begin()
    ref = reference_inputs(check)
    result.update(weights=ref["weights"], inputs=ref["how"], segments=len(ref["probs"]),
                  reference="torch backend, CPU, FP32")  # fmt: skip
    candidates: list[tuple[str, bool | None, str]] = [("fp32", None, f"torch {check.device} FP32")]
    if check.cuda:
        candidates = [("fp32", None, "torch cuda FP32 (TF32 as the defaults set it)"),
                      ("fp32", False, "torch cuda FP32, TF32 off"), ("fp16", None, "torch cuda FP16 autocast")]  # fmt: skip
    else:
        result["note"] = "--device cpu: the candidate is the CPU too, so this checks the code path, not a GPU"
    result["rows"] = []
    for precision, allow_tf32, label in candidates:
        with tf32(allow_tf32), open_backend(ref["checkpoint"], "torch", device=check.device, precision=precision) as b:
            probs = b.infer(ref["faces"], ref["specs"])
        result["rows"].append(parity_row(ref["probs"], probs, precision, label))
    failed = [f"{r['candidate']}: {'; '.join(r['failures'])}" for r in result["rows"] if not r["passed"]]
    result["summary"] = "; ".join(f"{r['candidate']}: max |diff| {r['max_abs_diff']:.2g}" for r in result["rows"])
    if failed:
        raise StepOutcome("failed", "; ".join(failed), result)
    return result


# ---------------------------------------------------------------------------------------------------- throughput


@dataclass(frozen=True)
class Variant:
    """One way of running the branch: kind eager | compile | graph | backend."""

    name: str
    kind: str
    precision: str  # fp32 | fp16
    channels_last: bool


def variants(check: Check) -> list[Variant]:
    if not check.cuda:
        return [Variant("eager FP32", "eager", "fp32", False), Variant("eager FP32 channels_last", "eager", "fp32", True),
                Variant("torch.compile FP32 channels_last", "compile", "fp32", True),
                Variant("torch backend FP32 (numpy in/out)", "backend", "fp32", True)]  # fmt: skip
    return [Variant("eager FP32", "eager", "fp32", False), Variant("eager FP32 channels_last", "eager", "fp32", True),
            Variant("eager FP16 autocast channels_last", "eager", "fp16", True),
            Variant("torch.compile FP16 autocast channels_last", "compile", "fp16", True),
            Variant("CUDA graph FP16 autocast channels_last", "graph", "fp16", True),
            Variant("torch backend FP16 (numpy in/out)", "backend", "fp16", True)]  # fmt: skip


def matmul_ceiling_tflops(check: Check) -> dict[str, float]:
    """Measured dense matmul TFLOP/s per precision: the ceiling the branch's FLOP rate is compared with."""
    import torch

    device = torch.device(check.device)
    n, reps = (8192, 10) if check.cuda else (1024, 5)
    kinds = {"fp32": (torch.float32, False), "tf32": (torch.float32, True), "fp16": (torch.float16, None)}
    ceilings = {}
    for name, (dtype, allow) in kinds.items() if check.cuda else [("fp32", (torch.float32, None))]:
        pair = torch.randn(2, n, n, device=device, dtype=dtype)
        with tf32(allow):
            stats = time_calls(lambda p=pair: p[0] @ p[1], check.sync, min_seconds=0.0, warmup=2, min_calls=reps,
                               max_calls=reps)  # fmt: skip
        ceilings[name] = 2 * n**3 / (stats["p50"] / 1e3) / 1e12
    return ceilings


def branch_runner(variant: Variant, model: Any, face: Any, spec: Any, device: Any) -> Callable[[], Any]:
    """A call that runs the branch on the batch (inputs already on the device) and returns logits."""
    import torch

    fp16 = variant.precision == "fp16"
    if variant.kind == "graph":
        return cuda_graph_runner(model, face, spec)

    def call() -> Any:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=fp16):
            return model(face, spec)

    return call


def cuda_graph_runner(model: Any, face: Any, spec: Any) -> Callable[[], Any]:
    """Capture one FP16-autocast forward in a CUDA graph (autocast's weight cache off, as capture requires); replay it."""
    import torch

    def forward() -> Any:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
            return model(face, spec)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            forward()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = forward()

    def replay() -> Any:
        graph.replay()
        return out

    return replay


def probabilities(output: Any) -> np.ndarray:
    """Logits (a tensor) or a backend's probabilities (numpy) -> float64 probabilities [S, K] on the host."""
    if isinstance(output, np.ndarray):
        return output.astype(np.float64)
    return output.float().softmax(dim=1).cpu().numpy().astype(np.float64)


@dataclass
class Models:
    """The branch in each form the variants need, made once per throughput step."""

    nchw: Any
    channels_last: Any
    compiled: Any
    backend: Any  # a torch Backend over a fresh checkpoint (numpy in/out), or why it did not open (str)


def make_models(check: Check) -> Models:
    """The branch straight from model.py (it needs torch alone); the backend row also needs the checkpoint stack
    (PyAV among it): if that fails, its reason stands in for the backend and the other rows still run."""
    import torch

    from edge_emotion.build.model import SegmentBranch

    torch.manual_seed(0)
    nchw = SegmentBranch().eval()
    try:
        from edge_emotion.backends import open_backend
        from edge_emotion.build.checkpoint import load_checkpoint

        checkpoint = fresh_checkpoint(check)
        nchw.load_state_dict(load_checkpoint(checkpoint)["model"])  # the backend's weights: outputs comparable
        precision = "fp16" if check.cuda else "fp32"
        backend: Any = open_backend(checkpoint, "torch", device=check.device, precision=precision)
    except Exception as exc:  # noqa: BLE001 - recorded in the backend row's cells
        backend = f"the torch backend did not open: {short(exc)}"
    nchw = nchw.to(torch.device(check.device))
    cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    return Models(nchw, cl, torch.compile(cl, dynamic=False), backend)


def batch_inputs(check: Check, batch: int) -> dict[str, Any]:
    """Seeded random inputs of the contract's shapes on the device (speed does not depend on the values)."""
    import torch

    device = torch.device(check.device)
    gen = torch.Generator(device=device).manual_seed(batch)
    face = torch.randn(batch, 3, 224, 224, device=device, generator=gen)  # [S, 3, 224, 224]
    spec = torch.randn(batch, 1, 192, 120, device=device, generator=gen)  # [S, 1, 192, 120]
    inputs = {"face": face, "spec": spec, "face_cl": face.contiguous(memory_format=torch.channels_last),
              "spec_cl": spec.contiguous(memory_format=torch.channels_last)}  # fmt: skip
    return inputs


def run_cell(check: Check, variant: Variant, models: Models, inputs: dict[str, Any], reference: np.ndarray) -> dict[str, Any]:
    """Time one variant at one batch size; its probabilities against eager FP32 on the same inputs."""
    import torch

    device = torch.device(check.device)
    cell: dict[str, Any] = {}
    if variant.kind == "backend":
        face_np, spec_np = inputs["face"].cpu().numpy(), inputs["spec"].cpu().numpy()
        def call() -> Any:
            return models.backend.infer(face_np, spec_np)
    else:
        model = {"eager": models.channels_last if variant.channels_last else models.nchw, "compile": models.compiled,
                 "graph": models.channels_last}[variant.kind]  # fmt: skip
        face, spec = (inputs["face_cl"], inputs["spec_cl"]) if variant.channels_last else (inputs["face"], inputs["spec"])
        if variant.kind == "compile":
            start = time.perf_counter()
            branch_runner(variant, model, face, spec, device)()
            check.sync()
            cell["compile_s"] = time.perf_counter() - start
        call = branch_runner(variant, model, face, spec, device)
    out = probabilities(call())
    cell["max_abs_diff_vs_eager_fp32"] = float(np.abs(out - reference).max())
    cell["finite"] = bool(np.isfinite(out).all())
    cell["latency_ms"] = time_calls(call, check.sync, check.sizes.cell_s)
    cell["segments_per_s"] = inputs["face"].shape[0] / (cell["latency_ms"]["p50"] / 1e3)
    return cell


def peak_shares(cell: dict[str, Any], variant: Variant, flops: int, ceilings: dict[str, float], datasheet: dict | None,
                tf32_convs: bool) -> None:  # fmt: skip
    """Add achieved TFLOP/s and its share of the measured matmul ceiling and of the datasheet peak of its precision."""
    kind = "fp16" if variant.precision == "fp16" else ("tf32" if tf32_convs and "tf32" in ceilings else "fp32")
    achieved = cell["segments_per_s"] * flops / 1e12
    cell.update(tflops=achieved, peak_kind=kind, share_of_measured_ceiling=achieved / ceilings[kind])
    cell["share_of_datasheet_peak"] = achieved / datasheet[kind] if datasheet else None


def throughput_cells(check: Check, models: Models, found: list[Variant], ceilings: dict[str, float],
                     flops: int, result: dict[str, Any]) -> None:  # fmt: skip
    """Fill result['cells'] batch by batch; cells that do not fit the step's time are recorded as skipped."""
    import torch

    datasheet = DATASHEET_TFLOPS.get(torch.cuda.get_device_name(0)) if check.cuda else None
    tf32_convs = check.cuda and bool(torch.backends.cudnn.allow_tf32)
    broken: dict[str, str] = {}
    for batch in check.sizes.batches:
        inputs = batch_inputs(check, batch)
        reference = probabilities(branch_runner(found[0], models.nchw, inputs["face"], inputs["spec"], inputs["face"].device)())
        for variant in found:
            cell: dict[str, Any] = {"variant": variant.name, "batch": batch}
            result["cells"].append(cell)
            need = check.sizes.compile_cell_s if variant.kind == "compile" else 2 * check.sizes.cell_s + 1
            if variant.kind == "compile" and batch not in check.sizes.compile_batches:
                cell.update(status="skipped", reason=f"compiled only at batches {list(check.sizes.compile_batches)}")
            elif variant.kind == "backend" and isinstance(models.backend, str):
                cell.update(status="failed", reason=models.backend)
            elif variant.name in broken:
                cell.update(status="skipped", reason=broken[variant.name])
            elif check.step_left() < need:
                cell.update(status="skipped", reason=f"would not fit: needs about {need:.0f} s, {check.step_left():.0f} s left")
            else:
                try:
                    cell.update(run_cell(check, variant, models, inputs, reference), status="ok")
                    peak_shares(cell, variant, flops, ceilings, datasheet, tf32_convs)
                except Exception as exc:  # noqa: BLE001 - one cell (OOM, a compiler missing) must not end the table
                    cell.update(status="failed", reason=short(exc))
                    broken[variant.name] = f"failed at batch {batch}"
                    if check.cuda:
                        torch.cuda.empty_cache()
        del inputs
        if check.cuda:
            torch.cuda.empty_cache()


def step_throughput(check: Check) -> dict[str, Any]:
    import torch

    from edge_emotion.build.model import SegmentBranch, branch_cost

    result = check.begin()
    cost = branch_cost(SegmentBranch())
    result.update(flops_per_segment=cost["flops"], parameters=cost["parameters"],
                  inputs="seeded random tensors on the device", threads=torch.get_num_threads())  # fmt: skip
    result["matmul_ceiling_tflops"] = matmul_ceiling_tflops(check)
    if check.cuda:
        result["datasheet_tflops"] = DATASHEET_TFLOPS.get(torch.cuda.get_device_name(0))
        result["cudnn_tf32"] = bool(torch.backends.cudnn.allow_tf32)
    found = variants(check)
    result["variants"] = [v.name for v in found]
    if not check.cuda:
        result["not_on_cpu"] = ["FP16 autocast (the torch backend's fp16 needs CUDA)", "CUDA graphs"]
    result["cells"] = []
    models = make_models(check)
    try:
        throughput_cells(check, models, found, result["matmul_ceiling_tflops"], cost["flops"], result)
    finally:
        if not isinstance(models.backend, str):
            models.backend.close()
    ok = [c for c in result["cells"] if c["status"] == "ok"]
    if not ok:
        raise StepOutcome("failed", "no cell ran", result)
    best = max(ok, key=lambda c: c["segments_per_s"])
    result["summary"] = (f"best {best['segments_per_s']:.0f} segments/s ({best['variant']}, batch {best['batch']}) = "
                         f"{best['tflops']:.3g} TFLOP/s, {100 * best['share_of_measured_ceiling']:.2g} % of the measured "
                         f"{best['peak_kind']} matmul ceiling")  # fmt: skip
    failed = [f"{c['variant']} @ {c['batch']}: {c['reason']}" for c in result["cells"] if c["status"] == "failed"]
    if failed:
        raise StepOutcome("failed", "; ".join(failed)[:600], result)
    return result


# ---------------------------------------------------------------------------------------------------- face detector


def fixture_frames(limit: int) -> list[np.ndarray]:
    """Frames of the fixture clips, [H, W, 3] uint8: all of them when limit is 0, else the first `limit` of each clip."""
    from edge_emotion.io.decode import open_clip, read_frames

    frames: list[np.ndarray] = []
    for path in fixture_clips():
        clip = open_clip(path)
        decoded = read_frames(clip, range(min(clip.frame_count, limit or clip.frame_count)))
        frames += [decoded[i] for i in sorted(decoded)]
    return frames


def step_face_detector(check: Check) -> dict[str, Any]:
    from edge_emotion.config import FaceParams
    from edge_emotion.preprocess.faces import box_iou

    result = check.begin()
    params = FaceParams()
    frames = fixture_frames(check.sizes.detector_frames)
    with warnings.catch_warnings(record=True) as caught:  # a detector that falls back to the CPU says so here
        warnings.simplefilter("always")
        detector, why = face_detector(params, check.device)
    result["warnings"] = [" ".join(str(w.message).split())[:300] for w in caught]
    if detector is None:
        raise StepOutcome("failed", f"no face detector: {why}", result)
    result.update(detector=f"{type(detector).__module__}.{type(detector).__name__}", frames=len(frames),
                  frame_size=list(frames[0].shape[:2]), params=params.to_dict())  # fmt: skip
    per_call = 10  # scoring detects the N = 10 planned frames of a clip in one call
    chunks = [frames[i : i + per_call] for i in range(0, len(frames) - per_call + 1, per_call)]
    plans = {f"{per_call} frames per call (as score calls it)": chunks}
    if len(frames) > per_call:
        plans[f"{len(frames)} frames in one call"] = [frames]
    result["calls"] = {}
    for label, calls in plans.items():
        if check.step_left() < 3:
            result["calls"][label] = {"status": "skipped", "reason": "step time used"}
            continue
        turn = iter(range(10**9))
        stats = time_calls(lambda c=calls, t=turn: detector.detect(c[next(t) % len(c)]), check.sync,
                           min_seconds=1.0 if check.cuda else 0.3, warmup=2 if check.cuda else 1, min_calls=3)  # fmt: skip
        result["calls"][label] = {"latency_ms": stats, "frames_per_s": len(calls[0]) / (stats["p50"] / 1e3)}
    boxes = detector.detect(frames)
    result["faces_found"] = sum(b is not None for b in boxes)
    if check.cuda:
        cpu, _ = face_detector(params, "cpu")
        sample = frames[:: max(1, len(frames) // 20)]
        cpu_boxes = cpu.detect(sample) if cpu is not None else []
        ious = [box_iou(a, b) for a, b in zip(detector.detect(sample), cpu_boxes)]
        result["iou_vs_cpu"] = {"frames": len(ious), "mean": float(np.mean(ious)), "min": float(np.min(ious))} if ious else None
    rate = max(c.get("frames_per_s", 0.0) for c in result["calls"].values())
    result["summary"] = f"{rate:.0f} frames/s best; faces on {result['faces_found']}/{len(frames)} frames"
    if result["faces_found"] < len(frames) // 2:
        raise StepOutcome("failed", f"faces found on only {result['faces_found']} of {len(frames)} frames", result)
    return result


# ---------------------------------------------------------------------------------------------------- score


def clip_folder(root: Path, count: int) -> Path:
    """`count` copies of the fixture clips (about 2 s each) under root."""
    root.mkdir(parents=True, exist_ok=True)
    sources = fixture_clips()
    for i in range(count):
        shutil.copy(sources[i % len(sources)], root / f"{i:04d}_{sources[i % len(sources)].name}")
    return root


def score_run(check: Check, folder: Path, checkpoint: Path, name: str) -> dict[str, Any]:
    """score_folder over `folder` into a fresh JSONL, GPU utilisation sampled meanwhile."""
    from edge_emotion.run.score import ScoreOptions, score_folder

    s = check.sizes
    options = ScoreOptions(device=check.device, face_device=check.device, workers=s.score_workers,
                           batch_size=s.score_batch)  # fmt: skip
    with GpuSampler(check.cuda) as sampler:
        summary = score_folder(folder, checkpoint, check.work / f"{name}.jsonl", options)
    return {"clips": summary.scored, "seconds": summary.seconds, "media_seconds": summary.media_seconds,
            "clips_per_s": summary.clips_per_second, "times_real_time": summary.times_real_time,
            "statuses": summary.statuses, "failures": summary.failures,
            "stage_ms_per_clip": {k: 1e3 * v / max(1, summary.scored) for k, v in summary.stages.items()},
            "gpu_utilisation": sampler.summary()}  # fmt: skip


def step_score(check: Check) -> dict[str, Any]:
    result = check.begin()
    s = check.sizes
    checkpoint = fresh_checkpoint(check)  # N = 10, the CREMA-D setting: speed does not depend on the weights
    result.update(artifact="checkpoint (torch backend)", n_segments=10, workers=s.score_workers,
                  batch_size=s.score_batch, device=check.device, face_device=check.device)  # fmt: skip
    result["one_clip"] = score_run(check, clip_folder(check.work / "score-1", 1), checkpoint, "score-1")
    result["folder"] = score_run(check, clip_folder(check.work / "score-n", s.score_clips), checkpoint, "score-n")
    one, many = result["one_clip"], result["folder"]
    if many["clips"] > 1 and many["seconds"] > one["seconds"]:
        # the one-clip run is almost all start-up (backend, detector, worker pool): the difference is the steady state
        steady = (many["clips"] - 1) / (many["seconds"] - one["seconds"])
        result["steady_clips_per_s_est"] = steady
        result["steady_times_real_time_est"] = steady * many["media_seconds"] / many["clips"]
    util = many["gpu_utilisation"]
    result["summary"] = (f"{many['clips']} clips in {many['seconds']:.1f} s: {many['clips_per_s']:.2f} clips/s, "
                         f"{many['times_real_time']:.1f}x real time (start-up included)"
                         + (f", GPU busy {util['mean_percent']:.0f} % (mean)" if util["status"] == "ok" else ""))  # fmt: skip
    bad = {k: v for k, v in many["statuses"].items() if k == "error"}
    if bad or many["clips"] != s.score_clips:
        raise StepOutcome("failed", f"{many['clips']} of {s.score_clips} clips scored; failures {many['failures']}", result)
    return result


# ---------------------------------------------------------------------------------------------------- onnxruntime cuda


def probe_ort_cuda(check: Check) -> tuple[str, str] | None:
    try:
        import onnxruntime
    except ImportError as exc:
        return "absent", f"onnxruntime is not importable ({short(exc)})"
    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return "absent", (f"onnxruntime {onnxruntime.__version__} offers {providers}: no CUDAExecutionProvider "
                          "(onnxruntime-gpu is not installed)")  # fmt: skip
    if not check.cuda:
        return "skipped", "needs a CUDA device (--device cpu)"
    return None


def artifact_throughput(check: Check, backend: Any, faces: np.ndarray, specs: np.ndarray,
                        batches: Sequence[int]) -> list[dict[str, Any]]:  # fmt: skip
    """segments/s of a Backend (numpy in/out) at each batch size, the fixture segments repeated to fill it."""
    rows = []
    for batch in batches:
        if check.step_left() < 3:
            rows.append({"batch": batch, "status": "skipped", "reason": "step time used"})
            continue
        reps = -(-batch // len(faces))
        f, a = np.concatenate([faces] * reps)[:batch], np.concatenate([specs] * reps)[:batch]
        stats = time_calls(lambda f=f, a=a: backend.infer(f, a), backend.synchronize, check.sizes.cell_s)
        rows.append({"batch": batch, "status": "ok", "latency_ms": stats, "segments_per_s": batch / (stats["p50"] / 1e3)})
    return rows


def step_onnxruntime_cuda(check: Check) -> dict[str, Any]:
    from edge_emotion.backends import open_backend
    from edge_emotion.build.checkpoint import load_checkpoint
    from edge_emotion.build.export.pipeline import build_onnx

    result = check.begin()
    ref = reference_inputs(check)
    state = load_checkpoint(ref["checkpoint"])
    result["rows"], problems = [], []
    for precision in ("fp32", "fp16"):
        path = check.work / f"model.{precision}.onnx"
        build_onnx(state, path, precision)
        with open_backend(path, "onnxruntime", device="cuda", provider="cuda") as backend:
            row = {"precision": precision, "providers": backend.providers}
            row["parity"] = parity_row(ref["probs"], backend.infer(ref["faces"], ref["specs"]), precision, f"ORT CUDA {precision}")
            row["throughput"] = artifact_throughput(check, backend, ref["faces"], ref["specs"], (1, 64, 1024))
        result["rows"].append(row)
        if row["providers"][0] != "CUDAExecutionProvider":
            problems.append(f"{precision}: the CUDA provider did not start (running on {row['providers'][0]})")
        if not row["parity"]["passed"]:
            problems.append(f"{precision}: {'; '.join(row['parity']['failures'])}")
    result["summary"] = "; ".join(f"{r['precision']}: max |diff| {r['parity']['max_abs_diff']:.2g}" for r in result["rows"])
    if problems:
        raise StepOutcome("failed", "; ".join(problems), result)
    return result


# ---------------------------------------------------------------------------------------------------- tensorrt


def probe_tensorrt(check: Check) -> tuple[str, str] | None:
    from edge_emotion.build.export.tensorrt_build import require_tensorrt

    try:
        require_tensorrt()
    except Exception as exc:  # noqa: BLE001 - missing, too old, or its libraries absent: all mean no TensorRT here
        return "absent", short(exc)
    if not check.cuda:
        return "skipped", "needs a CUDA device (--device cpu)"
    return None


def int8_onnx(check: Check, state: dict, fp32: Path, ref: dict[str, Any]) -> Path:
    """A Q/DQ INT8 ONNX, its ranges calibrated on the fixture segments (TensorRT 10+ reads precision from the file)."""
    import onnx

    from edge_emotion.build.calibration.int8 import compute_ranges, quantize_qdq
    from edge_emotion.build.export.onnx_export import write_checked
    from edge_emotion.build.export.pipeline import checkpoint_contract

    path = check.work / "model.int8.onnx"
    ranges = compute_ranges(fp32, [(ref["faces"], ref["specs"])], "minmax")
    quantize_qdq(fp32, path, ranges, "minmax")
    write_checked(onnx.load(str(path)), checkpoint_contract(state, "int8"), path)
    return path


def step_tensorrt(check: Check) -> dict[str, Any]:
    from edge_emotion.backends import open_backend
    from edge_emotion.build.checkpoint import load_checkpoint
    from edge_emotion.build.export.pipeline import build_onnx
    from edge_emotion.build.export.tensorrt_build import ShapeProfile, build_engine

    result = check.begin()
    ref = reference_inputs(check)
    state = load_checkpoint(ref["checkpoint"])
    fp32, fp16 = check.work / "trt.fp32.onnx", check.work / "trt.fp16.onnx"
    build_onnx(state, fp32, "fp32")
    build_onnx(state, fp16, "fp16")
    sources = {"fp16": fp16, "int8": int8_onnx(check, state, fp32, ref)}
    result["rows"], problems = [], []
    for precision, onnx_path in sources.items():
        engine = check.work / f"model.{precision}.engine"
        start = time.perf_counter()
        build_engine(onnx_path, engine, ShapeProfile(1, 64, 1024))
        row: dict[str, Any] = {"precision": precision, "build_s": time.perf_counter() - start}
        with open_backend(engine) as backend:
            row["parity"] = parity_row(ref["probs"], backend.infer(ref["faces"], ref["specs"]), precision, f"TensorRT {precision}")
            row["throughput"] = artifact_throughput(check, backend, ref["faces"], ref["specs"], (1, 64, 1024))
        result["rows"].append(row)
        if not row["parity"]["passed"]:
            problems.append(f"{precision}: {'; '.join(row['parity']['failures'])}")
    result["summary"] = "; ".join(f"{r['precision']}: max |diff| {r['parity']['max_abs_diff']:.2g}" for r in result["rows"])
    if problems:
        raise StepOutcome("failed", "; ".join(problems), result)
    return result


STEPS = (
    Step("environment", step_environment, (15, 4)),
    Step("gpu_tests", step_gpu_tests, (90, 12)),
    Step("train", step_train, (45, 12)),
    Step("parity", step_parity, (15, 5)),
    Step("throughput", step_throughput, (120, 20)),
    Step("face_detector", step_face_detector, (20, 6)),
    Step("score", step_score, (45, 15)),
    Step("onnxruntime_cuda", step_onnxruntime_cuda, (40, 10), probe_ort_cuda),
    Step("tensorrt", step_tensorrt, (150, 30), probe_tensorrt),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------- running


def probe(check: Check, step: Step) -> tuple[str, str] | None:
    if step.probe is None:
        return None
    try:
        return step.probe(check)
    except Exception as exc:  # noqa: BLE001 - a probe that breaks means the thing cannot run here
        return "absent", f"probe failed: {short(exc)}"


def run_step(check: Check, step: Step, blocked: tuple[str, str] | None, later_s: float) -> dict[str, Any]:
    """One step, timed and guarded: whatever it raises becomes its record, and the next step runs."""
    record: dict[str, Any] = {"name": step.name, "status": "ok", "reason": "", "seconds": 0.0, "result": {}}
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


def run_all(check: Check, selected: Sequence[str], report: dict[str, Any]) -> None:
    blocked = {s.name: probe(check, s) for s in STEPS}
    for i, step in enumerate(STEPS):
        if step.name not in selected:
            record = {"name": step.name, "status": "skipped", "reason": "not selected (--steps)", "seconds": 0.0, "result": {}}
        else:
            later = sum(s.estimate(check) for s in STEPS[i + 1 :] if s.name in selected and blocked[s.name] is None)
            record = run_step(check, step, blocked[step.name], later)
        report["steps"].append(record)
        write_reports(check.out, report)


# ---------------------------------------------------------------------------------------------------- reports


def write_reports(out: Path, report: dict[str, Any]) -> None:
    from edge_emotion.io.atomic import atomic_write_text

    atomic_write_text(out / "gpu_check.json", json.dumps(report, indent=1, default=str) + "\n")
    atomic_write_text(out / "gpu_check.md", markdown(report))


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]


def md_environment(r: dict[str, Any]) -> list[str]:
    rows = [[k, r.get(k)] for k in ("python", "platform", "cpu", "cpus", "torch", "torch_cuda", "cudnn", "torch_threads")]
    rows += [[f"gpu {k}", v] for k, v in (r.get("gpu") or {}).items()]
    rows += [["TF32", r.get("tf32")], ["onnxruntime providers", r.get("onnxruntime_providers")]]
    rows += [[f"package {k}", v] for k, v in (r.get("packages") or {}).items()]
    return table(["what", "value"], rows)


def md_gpu_tests(r: dict[str, Any]) -> list[str]:
    return table(["test", "outcome", "s", "message"], [[c["test"], c["outcome"], c["seconds"], c["message"][:120]]
                                                       for c in r.get("cases", [])])  # fmt: skip


def md_train(r: dict[str, Any]) -> list[str]:
    lines = []
    lib = r.get("library_train") or {}
    if "losses" in lib:
        lines += [(f"`train` on the device: {lib['steps']} steps, losses {', '.join(f'{x:.3f}' for x in lib['losses'])}; "
                   f"{lib['training_segments_per_s']:.0f} training segments/s with data loading and the evaluation; "
                   f"BN statistics finite: {lib['bn_statistics_finite']}; CUDA RNG saved: {lib['cuda_rng_saved']}"), ""]  # fmt: skip
    rows = [[a["mode"], a["first_loss"], a["last_loss"], a["falling"], a["step_ms"], a["training_segments_per_s"],
             a["peak_memory_mib"], a["bn_statistics_finite"], a["grad_scale"]] for a in r.get("amp", [])]  # fmt: skip
    batch = r.get("amp_batch", {})
    lines.append(f"One fixed batch ({batch.get('clips')} clips x N = {batch.get('segments')}, {batch.get('inputs')}):")
    lines.append("")
    return lines + table(["AMP", "first loss", "last loss", "falling", "ms/step", "segments/s", "peak MiB",
                          "BN finite", "grad scale"], rows)  # fmt: skip


def md_parity(r: dict[str, Any]) -> list[str]:
    lines = [f"Reference: {r.get('reference')}; {r.get('segments')} segments ({r.get('inputs')}); {r.get('weights')}.", ""]
    rows = [[x["candidate"], x["max_abs_diff"], x["mean_abs_diff"], x["top1_agreement"], x["tolerance_max_abs"],
             x["passed"]] for x in r.get("rows", [])]  # fmt: skip
    return lines + table(["candidate", "max abs diff", "mean abs diff", "top-1 agreement", "tolerance", "passed"], rows)


def md_throughput(r: dict[str, Any]) -> list[str]:
    cells = r.get("cells", [])
    batches = sorted({c["batch"] for c in cells})
    by = {(c["variant"], c["batch"]): c for c in cells}
    rows = []
    for name in r.get("variants", []):
        row: list[Any] = [name]
        for b in batches:
            c = by.get((name, b), {})
            row.append(f"{c['segments_per_s']:.0f}" if c.get("status") == "ok" else c.get("status", "-"))
        ok = [c for (v, _), c in by.items() if v == name and c.get("status") == "ok"]
        best = max(ok, key=lambda c: c["segments_per_s"]) if ok else None
        row += [fmt(best["tflops"]) if best else "-", f"{100 * best['share_of_measured_ceiling']:.2g} %" if best else "-",
                f"{100 * best['share_of_datasheet_peak']:.2g} %" if best and best.get("share_of_datasheet_peak") else "-"]  # fmt: skip
        rows.append(row)
    lines = [(f"{r.get('flops_per_segment', 0) / 1e6:.1f} MFLOPs per segment; measured matmul ceilings (TFLOP/s): "
              f"{ {k: round(v, 1) for k, v in (r.get('matmul_ceiling_tflops') or {}).items()} }; datasheet: "
              f"{r.get('datasheet_tflops')}. Segments/s at the median call:"), ""]  # fmt: skip
    header = ["variant", *[f"batch {b}" for b in batches], "TFLOP/s (best)", "of measured ceiling", "of datasheet"]
    return lines + table(header, rows)


def md_face_detector(r: dict[str, Any]) -> list[str]:
    rows = [[label, c.get("frames_per_s"), (c.get("latency_ms") or {}).get("p50"), (c.get("latency_ms") or {}).get("p99")]
            for label, c in (r.get("calls") or {}).items()]  # fmt: skip
    lines = [f"{r.get('detector')} on {r.get('frames')} frames {r.get('frame_size')}; IoU vs CPU: {r.get('iou_vs_cpu')}; "
             f"warnings when built: {r.get('warnings') or 'none'}", ""]  # fmt: skip
    return lines + table(["calls", "frames/s", "p50 ms", "p99 ms"], rows)


def md_score(r: dict[str, Any]) -> list[str]:
    rows = []
    for label in ("one_clip", "folder"):
        x = r.get(label)
        if x:
            util = x["gpu_utilisation"]
            busy = f"{util['mean_percent']:.0f} / {util['max_percent']:.0f}" if util["status"] == "ok" else util["status"]
            rows.append([label, x["clips"], x["seconds"], x["clips_per_s"], x["times_real_time"], busy,
                         ", ".join(f"{k} {v:.0f}" for k, v in x["stage_ms_per_clip"].items())])  # fmt: skip
    lines = [(f"{r.get('artifact')}, N = {r.get('n_segments')}, workers {r.get('workers')}, batch {r.get('batch_size')}; "
              f"steady state (est.): {fmt(r.get('steady_clips_per_s_est'))} clips/s, "
              f"{fmt(r.get('steady_times_real_time_est'))}x real time"), ""]  # fmt: skip
    return lines + table(["run", "clips", "s", "clips/s", "x real time", "GPU % mean / max", "ms per clip by stage"], rows)


def md_artifacts(r: dict[str, Any]) -> list[str]:
    rows = []
    for x in r.get("rows", []):
        speeds = ", ".join(f"{t['batch']}: {t['segments_per_s']:.0f}" for t in x.get("throughput", []) if t["status"] == "ok")
        rows.append([x["precision"], x["parity"]["max_abs_diff"], x["parity"]["passed"], speeds])
    return table(["precision", "max abs diff vs torch CPU", "passed", "segments/s by batch"], rows)


MD_SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "environment": md_environment, "gpu_tests": md_gpu_tests, "train": md_train, "parity": md_parity,
    "throughput": md_throughput, "face_detector": md_face_detector, "score": md_score,
    "onnxruntime_cuda": md_artifacts, "tensorrt": md_artifacts,
}  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# GPU check: --device {report['device']}", "",
             f"Started {report['started_utc']}, budget {report['budget_s']:.0f} s; `{' '.join(report['command'])}`.", "",
             "| step | status | s | summary or reason |", "|---|---|---|---|"]  # fmt: skip
    for step in report["steps"]:
        text = step["reason"] or step["result"].get("summary", "")
        lines.append(f"| {step['name']} | {step['status']} | {step['seconds']:.1f} | {' '.join(text.split()).replace('|', '/')[:300]} |")
    for step in report["steps"]:
        if step["result"] and step["name"] in MD_SECTIONS:
            try:
                body = MD_SECTIONS[step["name"]](step["result"])
            except (KeyError, TypeError, ValueError) as exc:  # a partial result (a step cut short) still gets its JSON
                body = [f"(table not drawn: {short(exc)}; see gpu_check.json)"]
            lines += ["", f"## {step['name']} ({step['status']})", "", *body]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json, gpu_check.md, gpu_tests.log")
    parser.add_argument("--budget-s", type=float, default=420.0, help="wall-clock seconds for the whole run")
    parser.add_argument("--steps", default=",".join(s.name for s in STEPS), help="comma-separated subset of the steps")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    unknown = set(args.steps.split(",")) - {s.name for s in STEPS}
    if unknown:
        raise SystemExit(f"gpu_check: unknown step(s) {sorted(unknown)}; choose from {[s.name for s in STEPS]}")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"gpu_check: --device cuda but torch {torch.__version__} sees no CUDA device; use --device cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"format": FORMAT, "device": args.device, "budget_s": args.budget_s, "command": sys.argv,
              "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "steps": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edge-emotion-gpu-check.") as work:
        check = Check(args.device, CUDA_SIZES if args.device == "cuda" else CPU_SIZES, Path(work), args.out,
                      deadline=started + args.budget_s)  # fmt: skip
        run_all(check, args.steps.split(","), report)
    report["elapsed_s"] = time.perf_counter() - started
    write_reports(args.out, report)
    print(markdown(report).split("\n## ")[0], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
