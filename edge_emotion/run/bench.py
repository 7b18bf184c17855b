"""Latency and throughput of backends and precisions, side by side, plus where the time of a clip goes.

Timing follows the usual rules (spaCy's benchmark_speed, trtexec): warm-up
iterations first, `synchronize()` after every call so a GPU's queued work is
counted, many iterations, percentiles rather than a single mean. Every requested
backend gets a row: one that cannot run says why (not installed, no artifact of
its kind given, failed to open) instead of disappearing from the table.

Agreement is the share of segments whose top-1 class equals the FP32 reference
(the first FP32 artifact that ran) on the same inputs: real segments when
videos are given, seeded random inputs otherwise.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_emotion.backends import BACKENDS, KIND_BY_SUFFIX, backend_for, open_backend
from edge_emotion.backends.base import Backend
from edge_emotion.contract import FACE_INPUT, SPEC_INPUT, ModelContract
from edge_emotion.deps import require
from edge_emotion.errors import EdgeEmotionError, MissingDependencyError
from edge_emotion.io.atomic import atomic_path
from edge_emotion.run.report import build_row, file_key
from edge_emotion.run.workers import InlinePreparer

BACKEND_MODULES = {"torch": "torch", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}
SUFFIX_BY_BACKEND = {backend: suffix for suffix, backend in KIND_BY_SUFFIX.items()}
STAGES = ("decode", "faces", "spectrogram", "inference", "consensus")


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per backend call."""

    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    min: float
    max: float
    iterations: int


def latency_stats(seconds: Sequence[float]) -> LatencyStats:
    """Summarise call times given in seconds; percentiles interpolate linearly (numpy's default)."""
    if not seconds:
        raise ValueError("no timings to summarise")
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    return LatencyStats(float(ms.mean()), float(p50), float(p90), float(p95), float(p99), float(ms.min()), float(ms.max()), len(ms))


def time_calls(backend: Backend, faces: np.ndarray, spectrograms: np.ndarray, iterations: int, warmup: int, max_seconds: float) -> LatencyStats:
    """Time `iterations` synchronised calls (at least 3, fewer if `max_seconds` runs out) after `warmup` calls."""
    for _ in range(warmup):
        backend.infer(faces, spectrograms)
    backend.synchronize()
    times: list[float] = []
    budget_end = time.perf_counter() + max_seconds
    for _ in range(max(1, iterations)):
        start = time.perf_counter()
        backend.infer(faces, spectrograms)
        backend.synchronize()
        times.append(time.perf_counter() - start)
        if len(times) >= 3 and time.perf_counter() > budget_end:
            break
    return latency_stats(times)


@dataclass
class BenchRow:
    """One backend x artifact x batch size."""

    backend: str
    artifact: str | None
    status: str  # ok | unavailable | skipped | failed
    reason: str = ""
    precision: str = "-"  # unknown until the artifact opens
    file_mb: float | None = None
    batch_size: int | None = None
    latency_ms: LatencyStats | None = None
    segments_per_s: float | None = None
    clips_per_s: float | None = None
    agreement: float | None = None  # top-1 agreement with the FP32 reference
    max_abs_diff: float | None = None  # largest probability difference from the reference


@dataclass
class StageTimes:
    """End-to-end time per clip by stage (one process, one clip at a time), over real videos."""

    clips: int
    failed: int
    media_seconds: float
    ms_per_clip: dict[str, float] = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        return sum(self.ms_per_clip.values())

    @property
    def times_real_time(self) -> float:
        return self.media_seconds / (self.total_ms * self.clips / 1e3) if self.clips and self.total_ms else 0.0


@dataclass
class BenchReport:
    rows: list[BenchRow]
    stages: StageTimes | None
    machine: dict[str, Any]
    inputs: str  # what the agreement inputs were

    def to_dict(self) -> dict[str, Any]:
        out = {"machine": self.machine, "inputs": self.inputs, "rows": [asdict(r) for r in self.rows], "stages": None}
        if self.stages is not None:
            out["stages"] = {**asdict(self.stages), "total_ms": self.stages.total_ms, "times_real_time": self.stages.times_real_time}
        return out


@dataclass(frozen=True)
class Target:
    """A backend and the artifact it should run, or the reason it cannot."""

    backend: str
    artifact: Path | None
    reason: str = ""


def plan_targets(artifacts: Sequence[Path], backends: Sequence[str] | None = None) -> list[Target]:
    """Pair requested backends with the artifacts of their kind (.pt torch, .onnx onnxruntime, .engine tensorrt).

    Without `backends`, each artifact runs on the backend its kind calls for.
    A requested backend without a matching artifact still gets a Target, with the reason.
    """
    if not backends:
        return [Target(backend_for(a), Path(a)) for a in artifacts]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
    targets: list[Target] = []
    for backend in backends:
        mine = [Path(a) for a in artifacts if Path(a).suffix.lower() == SUFFIX_BY_BACKEND[backend]]
        if mine:
            targets += [Target(backend, a) for a in mine]
        else:
            targets.append(Target(backend, None, f"no {SUFFIX_BY_BACKEND[backend]} artifact given (-m model{SUFFIX_BY_BACKEND[backend]})"))
    return targets


def _availability(backend: str) -> str:
    """'' if the backend's package imports, else the install hint."""
    try:
        require(BACKEND_MODULES[backend])
    except MissingDependencyError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a package that is installed but broken is 'unavailable' too
        return f"{BACKEND_MODULES[backend]} fails to import ({type(exc).__name__}: {exc})"
    return ""


def random_inputs(contract: ModelContract, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded standard-normal inputs in the contract's shapes: faces [S, 3, H, W], spectrograms [S, 1, F, T]."""
    rng = np.random.default_rng(seed)
    shapes = contract.input_shapes()
    faces = rng.standard_normal([count, *shapes[FACE_INPUT][1:]], dtype=np.float32)
    specs = rng.standard_normal([count, *shapes[SPEC_INPUT][1:]], dtype=np.float32)
    return faces, specs


def _take(array: np.ndarray, count: int) -> np.ndarray:
    """The first `count` items, repeating the array when it holds fewer."""
    reps = -(-count // array.shape[0])
    return np.ascontiguousarray(np.concatenate([array] * reps)[:count]) if reps > 1 else np.ascontiguousarray(array[:count])


def _infer_all(backend: Backend, faces: np.ndarray, specs: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([backend.infer(faces[i : i + batch], specs[i : i + batch]) for i in range(0, len(faces), batch)])


def bench_target(
    target: Target,
    batch_sizes: Sequence[int],
    iterations: int,
    warmup: int,
    device: str,
    inputs: tuple[np.ndarray, np.ndarray] | None,
    max_seconds: float,
) -> tuple[list[BenchRow], np.ndarray | None]:
    """Rows for one target (one per batch size, or one saying why not) and its probabilities on the agreement inputs."""
    artifact = None if target.artifact is None else str(target.artifact)
    missing = _availability(target.backend)
    if missing:
        return [BenchRow(target.backend, artifact, "unavailable", missing)], None
    if target.artifact is None:
        return [BenchRow(target.backend, None, "skipped", target.reason)], None
    size_mb = target.artifact.stat().st_size / 2**20 if target.artifact.is_file() else None
    try:
        backend = open_backend(target.artifact, target.backend, device)
    except (EdgeEmotionError, ValueError, RuntimeError, OSError, ImportError) as exc:
        return [BenchRow(target.backend, artifact, "failed", f"{type(exc).__name__}: {exc}", file_mb=size_mb)], None
    with backend:
        faces, specs = inputs if inputs is not None else random_inputs(backend.contract, max(batch_sizes))
        probs = _infer_all(backend, faces, specs, max(batch_sizes))  # [S, K]
        rows = []
        for batch in batch_sizes:
            stats = time_calls(backend, _take(faces, batch), _take(specs, batch), iterations, warmup, max_seconds)
            seg_s = batch / (stats.mean / 1e3)
            rows.append(
                BenchRow(
                    target.backend, artifact, "ok", "", backend.precision, size_mb, batch, stats,
                    seg_s, seg_s / backend.contract.n_segments,
                )
            )
        return rows, probs


def add_agreement(results: Sequence[tuple[list[BenchRow], np.ndarray | None]]) -> None:
    """Fill agreement and max |diff| of every target that ran, against the first FP32 one."""
    reference = next((probs for rows, probs in results if probs is not None and rows[0].precision == "fp32"), None)
    if reference is None:
        return
    for rows, probs in results:
        if probs is None or probs.shape != reference.shape:
            continue
        for row in rows:
            row.agreement = float(np.mean(probs.argmax(1) == reference.argmax(1)))
            row.max_abs_diff = float(np.abs(probs - reference).max())


def run_bench(
    targets: Sequence[Target],
    batch_sizes: Sequence[int] = (1, 10, 64),
    iterations: int = 50,
    warmup: int = 5,
    device: str = "auto",
    videos: Sequence[Path] = (),
    max_seconds: float = 20.0,
) -> BenchReport:
    """Benchmark every target (see plan_targets); with videos, use their segments as inputs and add the per-stage breakdown."""
    if not targets:
        raise ValueError("give at least one artifact")
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    stages, inputs = None, None
    if videos:
        stages, inputs = _video_inputs(targets, videos, device)
    results = [bench_target(t, batch_sizes, iterations, warmup, device, inputs, max_seconds) for t in targets]
    add_agreement(results)
    rows = [row for target_rows, _ in results for row in target_rows]
    described = f"{len(inputs[0])} segments of {stages.clips} videos" if inputs is not None else "seeded random inputs"
    return BenchReport(rows, stages, machine_info(), described)


def _video_inputs(targets: Sequence[Target], videos: Sequence[Path], device: str) -> tuple[StageTimes | None, tuple[np.ndarray, np.ndarray] | None]:
    """Stage breakdown with the first target that opens; its clips' segments become the agreement inputs."""
    for target in targets:
        if target.artifact is None or _availability(target.backend):
            continue
        try:
            backend = open_backend(target.artifact, target.backend, device)
        except (EdgeEmotionError, ValueError, RuntimeError, OSError, ImportError):
            continue
        with backend:
            return stage_breakdown(backend, videos)
    return None, None


def stage_breakdown(backend: Backend, videos: Sequence[Path]) -> tuple[StageTimes, tuple[np.ndarray, np.ndarray] | None]:
    """Time decode, faces, spectrogram, inference and consensus per clip, one clip at a time in this process.

    Returns the times and the concatenated segment inputs of the clips that decoded.
    """
    preparer = InlinePreparer(backend.contract.preprocess)
    list(preparer.run(list(videos[:1])))  # warm-up, untimed: MTCNN's first call pays one-off set-up costs
    totals = dict.fromkeys(STAGES, 0.0)
    faces, specs = [], []
    clips = failed = 0
    media = 0.0
    for prepared in preparer.run(list(videos)):
        if prepared.inputs is None:
            failed += 1
            continue
        if not clips:
            backend.infer(prepared.inputs.faces, prepared.inputs.spectrograms)  # warm-up, untimed
        start = time.perf_counter()
        probs = backend.infer(prepared.inputs.faces, prepared.inputs.spectrograms)  # [N, K]
        backend.synchronize()
        infer_s = time.perf_counter() - start
        start = time.perf_counter()
        build_row(prepared, probs, backend.contract.labels, file_key(prepared.path))
        consensus_s = time.perf_counter() - start
        for stage, seconds in {**prepared.stage_seconds(), "inference": infer_s, "consensus": consensus_s}.items():
            totals[stage] += seconds
        faces.append(prepared.inputs.faces)
        specs.append(prepared.inputs.spectrograms)
        clips += 1
        media += prepared.duration or 0.0
    per_clip = {k: v * 1e3 / clips for k, v in totals.items()} if clips else {}
    inputs = (np.concatenate(faces), np.concatenate(specs)) if faces else None
    return StageTimes(clips, failed, media, per_clip), inputs


def machine_info() -> dict[str, Any]:
    """Enough to tell two benchmark runs' machines apart."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    torch = sys.modules.get("torch")  # only when a torch backend ran: never imported just to be described
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    ort = sys.modules.get("onnxruntime")
    if ort is not None:
        info["onnxruntime"] = ort.__version__
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def plot_report(report: BenchReport, output: str | Path) -> None:
    """Throughput (segments/s) against batch size, one line per backend x artifact; PNG, written atomically."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    fig, ax = plt.subplots(figsize=(6, 4))
    series: dict[str, list[tuple[int, float]]] = {}
    for row in report.rows:
        if row.status == "ok":
            name = f"{row.backend} {row.precision} ({Path(row.artifact).name})"
            series.setdefault(name, []).append((row.batch_size, row.segments_per_s))
    for name, points in series.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (segments)")
    ax.set_ylabel("segments / s")
    ax.set_title("edge-emotion bench")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
