"""INT8: calibrate activation ranges on real segments, cache them, write a QDQ ONNX (per-channel weights).

Why calibrate in chunks ourselves (create_calibrator + collect_data per chunk)
instead of one quantize_static call over all data: ONNX Runtime's calibrators
keep every intermediate output of one collect_data call in memory (about 5 MB
per segment for this net, 2.5 GB for 500 segments); chunking bounds it.
MinMax gives exactly the one-call ranges (min/max merge); Entropy and
Percentile merge their histograms across calls (re-binned as ranges grow).

Why a cache of our own (JSON, ranges per tensor): a rebuild (other output
path, engine from the same ONNX, tweaked tolerance) skips the calibration
pass; the cache records the FP32 graph's digest, the method and the segment
selection, so a cache from another model or method is ignored, never misused.

Why symmetric INT8 for activations and weights (QInt8, zero point 0): it is
what TensorRT's explicit-quantization path expects from a Q/DQ ONNX; ONNX
Runtime's CPU kernels run it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import TensorData, TensorsData, create_calibrator, save_tensors_data

from edge_emotion.contract import FACE_INPUT, SPEC_INPUT
from edge_emotion.errors import MissingDependencyError
from edge_emotion.io.atomic import atomic_write_text

CACHE_FORMAT = "edge-emotion-calibration/1"
METHODS: dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
PASSTHROUGH = frozenset({"Cast", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"})  # between head and softmax
BATCH_SEGMENTS = 8  # segments per calibration inference
CHUNK_SEGMENTS = 32  # segments per collect_data call: bounds the calibrator's memory (~160 MB)


class SegmentDataReader(CalibrationDataReader):
    """Feeds (faces, spectrograms) batches to ONNX Runtime's calibrators / quantize_static as input dicts."""

    def __init__(self, batches: Iterable[tuple[np.ndarray, np.ndarray]], batch_size: int = BATCH_SEGMENTS) -> None:
        self._batches = _rebatch(batches, batch_size)

    def get_next(self) -> dict[str, np.ndarray] | None:
        nxt = next(self._batches, None)
        if nxt is None:
            return None
        faces, specs = nxt
        return {FACE_INPUT: faces, SPEC_INPUT: specs}  # [B, 3, 224, 224], [B, 1, 192, 120] float32


def _rebatch(batches: Iterable[tuple[np.ndarray, np.ndarray]], size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per-clip batches of any length -> batches of `size` (the last may be smaller), float32, contiguous."""
    faces_buf: list[np.ndarray] = []
    specs_buf: list[np.ndarray] = []
    held = 0
    for faces, specs in batches:
        faces_buf.append(faces)
        specs_buf.append(specs)
        held += faces.shape[0]
        while held >= size:
            f, s = np.concatenate(faces_buf), np.concatenate(specs_buf)
            yield np.ascontiguousarray(f[:size], np.float32), np.ascontiguousarray(s[:size], np.float32)
            faces_buf, specs_buf, held = [f[size:]], [s[size:]], held - size
    if held:
        yield (
            np.ascontiguousarray(np.concatenate(faces_buf), np.float32),
            np.ascontiguousarray(np.concatenate(specs_buf), np.float32),
        )


@dataclass
class CalibrationCache:
    """Activation ranges per tensor, and what they were computed from."""

    method: str
    model_digest: str  # sha256 of the FP32 graph (weights and structure, not metadata)
    selection: str  # how segments were chosen (count, per clip, seed): SegmentSource.selection()
    clips: list[str]
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    format: str = CACHE_FORMAT
    segments: int = 0  # calibration segments the ranges came from (fewer than asked from a small folder; 0: not recorded)

    def matches(self, method: str, model_digest: str, selection: str) -> bool:
        """Usable for this build: same format, method, FP32 graph and segment selection."""
        return (self.format, self.method, self.model_digest, self.selection) == (
            CACHE_FORMAT,
            method,
            model_digest,
            selection,
        )


def graph_digest(path: str | Path) -> str:
    """sha256 of an ONNX file's graph (metadata excluded, so re-stamping the contract keeps the digest)."""
    return hashlib.sha256(onnx.load(str(path)).graph.SerializeToString(deterministic=True)).hexdigest()


def save_cache(path: str | Path, cache: CalibrationCache) -> None:
    atomic_write_text(path, json.dumps(asdict(cache), indent=1, sort_keys=True) + "\n")


def load_cache(path: str | Path) -> CalibrationCache | None:
    """The cache at `path`, or None if absent or unreadable (then calibration simply runs again)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        data["ranges"] = {k: (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
        return CalibrationCache(**data)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        warnings.warn(f"{path}: unreadable calibration cache ({exc}); calibrating again", stacklevel=2)
        return None


def compute_ranges(
    fp32_path: str | Path,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    method: str = "minmax",
    percentile: float = 99.999,
) -> dict[str, tuple[float, float]]:
    """Run the calibrator chunk by chunk over `batches` -> {tensor: (low, high)}."""
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {sorted(METHODS)}, got {method!r}")
    # entropy: 2048 histogram bins searched for the best 128-bin threshold, as TensorRT's entropy calibrator does
    # (ONNX Runtime's default of 128 bins leaves a single candidate: the MinMax range)
    options = (
        {"percentile": percentile}
        if method == "percentile"
        else {"num_bins": 2048, "num_quantized_bins": 128}
        if method == "entropy"
        else {}
    )
    with tempfile.TemporaryDirectory(prefix="edge-emotion-calib.") as tmp:
        calibrator = create_calibrator(
            Path(fp32_path),
            None,  # every float tensor: ranges the quantizer does not need are ignored
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=METHODS[method],
            extra_options=options,
        )
        for chunk in _chunks(_rebatch(batches, BATCH_SEGMENTS), CHUNK_SEGMENTS // BATCH_SEGMENTS):
            calibrator.collect_data(SegmentDataReader(chunk, BATCH_SEGMENTS))
        data = calibrator.compute_data()
        del calibrator
    return {name: (_scalar(td.range_value[0]), _scalar(td.range_value[1])) for name, td in data.items()}


def _scalar(value: object) -> float:
    """Ranges come as 0-d or [1] arrays depending on the method: one float either way."""
    return float(np.ravel(np.asarray(value))[0])


def _chunks(
    batches: Iterable[tuple[np.ndarray, np.ndarray]], per_chunk: int
) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    """Group up to `per_chunk` consecutive batches of equal size into one list.

    Why equal sizes: the histogram calibrators stack one call's outputs with
    np.asarray, which fails on a ragged last batch; it goes to a call of its own.
    """
    chunk: list[tuple[np.ndarray, np.ndarray]] = []
    for batch in batches:
        if chunk and (len(chunk) == per_chunk or batch[0].shape[0] != chunk[0][0].shape[0]):
            yield chunk
            chunk = []
        chunk.append(batch)
    if chunk:
        yield chunk


def classifier_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the softmax and the nodes back to the linear classifier feeding it: kept in float.

    Why: the logits span the classes' common offsets (e.g. -90..40) while
    decisions hang on differences of a few units; one INT8 scale over that span
    (~0.7 per step) blurs them, and quantizing probabilities themselves adds
    1/127 steps for nothing. The head is 256x6 MACs: nothing to gain in INT8.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    names: list[str] = []
    for node in (n for n in model.graph.node if n.op_type == "Softmax"):
        names.append(node.name)
        current = producer.get(node.input[0])
        while current is not None:
            names.append(current.name)
            if current.op_type in ("Gemm", "MatMul") or current.op_type not in PASSTHROUGH:
                break
            current = producer.get(current.input[0])
    return names


def quantize_qdq(
    fp32_path: str | Path, out_path: str | Path, ranges: dict[str, tuple[float, float]], method: str
) -> None:
    """Write a QDQ ONNX from `fp32_path` and precomputed ranges: symmetric INT8, per-channel weights, float classifier."""
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise MissingDependencyError(
            "this onnxruntime's quantize_static cannot take precomputed ranges (no calibration_cache_path): "
            "pip install -U onnxruntime"
        )
    tensors = TensorsData(
        METHODS[method],
        {
            k: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
            for k, (lo, hi) in ranges.items()
        },
    )
    with tempfile.TemporaryDirectory(prefix="edge-emotion-quant.") as tmp:
        ort_cache = Path(tmp) / "ranges.json"
        save_tensors_data(tensors, ort_cache)
        with _quiet_root_logger():  # it logs a generic "consider pre-processing" hint on every call
            quantize_static(
                str(fp32_path),
                str(out_path),
                calibration_data_reader=None,
                calibration_cache_path=str(ort_cache),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=METHODS[method],
                nodes_to_exclude=classifier_nodes(onnx.load(str(fp32_path))),
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            )


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer logs through the root logger; silence it below ERROR for the call only."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Fraction of segments whose argmax class is the same ([S, K] each)."""
    return float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))
