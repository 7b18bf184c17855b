"""Export orchestration as plain functions: checkpoint -> checked ONNX (FP32 | FP16 | INT8) -> optional engine.

Every artifact is built at a temporary path beside its destination, parity-checked
against torch on real segments, and only then renamed into place (atomic.atomic_path):
a refused export leaves no file at the output path.

    report = export_onnx_artifact("ckpt.pt", "model.onnx", inputs)                    # FP32
    report = export_onnx_artifact("ckpt.pt", "model.fp16.onnx", inputs, precision="fp16")
    report = export_onnx_artifact("ckpt.pt", "model.int8.onnx", inputs, precision="int8",
                                  calibration=CalibrationOptions(Path("videos/")))
    report = export_engine_artifact("model.fp16.onnx", "model.engine", "ckpt.pt", inputs)
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from edge_emotion.contract import ModelContract
from edge_emotion.io.atomic import atomic_path
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.toolchain.calibration.data import (
    DEFAULT_HOLDOUT,
    DEFAULT_SEGMENTS,
    SegmentBatch,
    SegmentSource,
    shortfall_warning,
    video_folder_source,
)
from edge_emotion.toolchain.calibration.int8 import (
    CalibrationCache,
    compute_ranges,
    graph_digest,
    load_cache,
    quantize_qdq,
    save_cache,
)
from edge_emotion.toolchain.checkpoint import build_branch, config_hash, load_checkpoint, preprocess_config
from edge_emotion.toolchain.export.fp16 import convert_to_fp16, fp32_op_types
from edge_emotion.toolchain.export.onnx_export import DEFAULT_OPSET, export_onnx, write_checked
from edge_emotion.toolchain.export.parity import ParityReport, Tolerance, compare, require_parity, run_parity
from edge_emotion.toolchain.export.tensorrt_build import DEFAULT_PROFILE, DEFAULT_WORKSPACE, ShapeProfile, build_engine

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class CalibrationOptions:
    """Where INT8 calibration segments come from and how ranges are computed."""

    data: Path  # folder of videos (CREMA-D root or VideoFlash/ or any folder of videos)
    method: str = "minmax"  # minmax | entropy | percentile
    segments: int = DEFAULT_SEGMENTS
    per_clip: int | None = None  # segments per clip; None = the model's N
    holdout: int = DEFAULT_HOLDOUT
    cache: Path | None = None  # calibration cache (ranges per tensor); None = beside the output
    prepare_cache: Path | None = None  # the prepare cache: cached face boxes instead of MTCNN
    seed: int = 0


@dataclass
class CalibrationSummary:
    """What INT8 calibration did; stored in the artifact's metadata as well."""

    method: str
    segments: int
    clips: int
    reused_cache: bool
    cache: str
    holdout_segments: int
    holdout_origin: str
    holdout_agreement: float
    holdout_decisive_agreement: float  # on segments whose FP32 top-1 leads by >= the INT8 decisive margin
    holdout_decisive_segments: int
    holdout_max_abs_diff: float
    segments_asked: int = 0  # `segments` is what calibration used: fewer than this from a small folder

    def metadata(self) -> dict[str, str]:
        return {
            "calibration_method": self.method,
            "calibration_segments": str(self.segments),
            "calibration_segments_asked": str(self.segments_asked),
            "calibration_clips": str(self.clips),
            "int8_holdout_segments": str(self.holdout_segments),
            "int8_holdout_origin": self.holdout_origin,
            "int8_vs_fp32_top1_agreement": f"{self.holdout_agreement:.4f}",
            "int8_vs_fp32_decisive_agreement": f"{self.holdout_decisive_agreement:.4f}",
            "int8_vs_fp32_decisive_segments": str(self.holdout_decisive_segments),
            "int8_vs_fp32_max_abs_diff": f"{self.holdout_max_abs_diff:.4g}",
        }

    def summary(self) -> str:
        how = "ranges from cache" if self.reused_cache else "calibrated"
        return (
            f"int8 ({self.method}, {self.segments} segments of {self.clips} clips, {how}; cache {self.cache}): "
            f"INT8 vs FP32 on {self.holdout_segments} held-out segments ({self.holdout_origin}): "
            f"top-1 agreement {self.holdout_agreement:.3f} (decisive: {self.holdout_decisive_agreement:.3f} on "
            f"{self.holdout_decisive_segments}), max |diff| {self.holdout_max_abs_diff:.3g}"
        )


@dataclass
class ExportResult:
    """The artifact written, its parity report, and the calibration summary for INT8."""

    path: Path
    report: ParityReport
    calibration: CalibrationSummary | None = None


def checkpoint_contract(
    state: dict, precision: str = "fp32", io_dtype: str = "float32", extra: dict[str, str] | None = None
) -> ModelContract:
    """The contract an artifact of this checkpoint carries."""
    return ModelContract(
        labels=tuple(state["labels"]),
        preprocess=preprocess_config(state),
        precision=precision,
        io_dtype=io_dtype,
        modality=state["model_config"]["modality"],
        config_hash=config_hash(state),
        extra=dict(extra or {}),
    )


def build_onnx(
    state: dict,
    path: Path,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    calibration: CalibrationOptions | None = None,
    detector: FaceDetector | None = None,
    cache_default: Path | None = None,
    source: SegmentSource | None = None,
) -> CalibrationSummary | None:
    """Write the checked ONNX of `state` at `path` in the given precision (no parity here: see export_onnx_artifact).

    INT8 takes its segments from `source` if given (e.g. pre-extracted ones), else from `calibration.data`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    branch = build_branch(state)
    if precision == "fp32":
        export_onnx(branch, checkpoint_contract(state), path, opset)
        return None
    with tempfile.TemporaryDirectory(prefix="edge-emotion-export.") as tmp:
        fp32 = export_onnx(branch, checkpoint_contract(state), Path(tmp) / "fp32.onnx", opset)
        if precision == "fp16":
            half = convert_to_fp16(onnx.load(str(fp32)))
            extra = {"output_dtype": "float32", "fp32_ops": ",".join(fp32_op_types(half))}
            write_checked(half, checkpoint_contract(state, "fp16", "float16", extra), path)
            return None
        if calibration is None:
            raise ValueError("INT8 export needs calibration data (CalibrationOptions / --calib DIR)")
        if source is None:
            source = video_folder_source(
                calibration.data,
                preprocess_config(state),
                detector,
                calibration.segments,
                calibration.per_clip,
                calibration.seed,
                calibration.prepare_cache,
            )
        summary = _quantize(fp32, path, calibration, source, cache_default)
        contract = checkpoint_contract(state, "int8", "float32", summary.metadata())
        write_checked(onnx.load(str(path)), contract, path)
        return summary


def _quantize(
    fp32: Path, out: Path, options: CalibrationOptions, source: SegmentSource, cache_default: Path | None
) -> CalibrationSummary:
    """Ranges from the cache when it matches this graph, method and segment count, else calibrate; QDQ; held-out check."""
    cache_path = options.cache or cache_default or out.with_suffix(".calib.json")
    digest = graph_digest(fp32)
    cache = load_cache(cache_path)
    selection = source.selection()
    reused = cache is not None and cache.matches(options.method, digest, selection)
    if cache is not None and reused:
        source.skip_calibration(cache.clips)
    else:
        ranges = compute_ranges(fp32, ((b.faces, b.spectrograms) for b in source.batches()), options.method)
        cache = CalibrationCache(options.method, digest, selection, list(source.used), ranges, segments=source.taken)
        save_cache(cache_path, cache)
    used = cache.segments or source.segments  # caches written before `segments` was recorded: all were there
    quantize_qdq(fp32, out, cache.ranges, options.method)
    held, origin = source.holdout(options.holdout)
    held_report = compare(_ort_probs(fp32, held), _ort_probs(out, held), "int8")  # INT8 vs its own FP32 graph
    short = shortfall_warning(used, source.segments, len(cache.clips), held_report.top1_agreement, len(held))
    if short:
        warnings.warn(short, stacklevel=2)
    return CalibrationSummary(
        method=options.method,
        segments=used,
        clips=len(cache.clips),
        reused_cache=reused,
        cache=str(cache_path),
        holdout_segments=len(held),
        holdout_origin=origin,
        holdout_agreement=held_report.top1_agreement,
        holdout_decisive_agreement=held_report.decisive_agreement,
        holdout_decisive_segments=held_report.decisive_segments,
        holdout_max_abs_diff=held_report.max_abs_diff,
        segments_asked=source.segments,
    )


def _ort_probs(path: Path, batch: SegmentBatch) -> np.ndarray:
    """Probabilities of a (possibly contract-less, intermediate) ONNX file on the CPU: [S, K]."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"face": batch.faces, "spectrogram": batch.spectrograms})[0]


def export_onnx_artifact(
    checkpoint: str | Path,
    output: str | Path,
    inputs: SegmentBatch,
    precision: str = "fp32",
    calibration: CalibrationOptions | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance: Tolerance | None = None,
    detector: FaceDetector | None = None,
    source: SegmentSource | None = None,
) -> ExportResult:
    """Checkpoint -> ONNX at `output`, kept only if parity against torch on `inputs` passes (else ArtifactError)."""
    output = Path(output)
    state = load_checkpoint(checkpoint)
    with atomic_path(output) as tmp:
        summary = build_onnx(
            state, tmp, precision, opset, calibration, detector, output.with_suffix(".calib.json"), source
        )
        report = replace(
            run_parity(tmp, checkpoint, inputs, backend="onnxruntime", tolerance=tolerance, device="cpu"),
            artifact=str(output),
        )
        require_parity(report, output)
    return ExportResult(output, report, summary)


def export_engine_artifact(
    onnx_path: str | Path,
    output: str | Path,
    checkpoint: str | Path,
    inputs: SegmentBatch,
    profile: ShapeProfile = DEFAULT_PROFILE,
    workspace_bytes: int = DEFAULT_WORKSPACE,
    timing_cache: str | Path | None = None,
    tolerance: Tolerance | None = None,
) -> ExportResult:
    """A checked ONNX -> TensorRT engine at `output` (header + engine), kept only if its parity against torch passes."""
    output = Path(output)
    with atomic_path(output) as tmp:
        build_engine(onnx_path, tmp, profile, workspace_bytes, timing_cache)
        report = replace(
            run_parity(tmp, checkpoint, inputs, backend="tensorrt", tolerance=tolerance), artifact=str(output)
        )
        require_parity(report, output)
    return ExportResult(output, report)
