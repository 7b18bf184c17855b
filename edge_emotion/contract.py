"""The model contract: what a scorer must know to feed a model, carried inside every artifact.

An exported branch takes `face` [S, 3, 224, 224] and `spectrogram` [S, 1, 192, 120]
(S = any number of segments) and returns `probabilities` [S, 6] (softmax applied
inside the graph). The consensus over N segments stays outside, in numpy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from edge_emotion import LABELS, __version__
from edge_emotion.config import PreprocessConfig

FACE_INPUT = "face"
SPEC_INPUT = "spectrogram"
OUTPUT = "probabilities"
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ModelContract:
    """Labels, inputs and preprocessing of one artifact; round-trips through string metadata."""

    labels: tuple[str, ...] = LABELS
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    precision: str = "fp32"
    io_dtype: str = "float32"  # dtype of the artifact's inputs and output
    modality: str = "both"
    package_version: str = __version__
    config_hash: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # e.g. opset, calibration report

    @property
    def n_segments(self) -> int:
        return self.preprocess.n_segments

    def input_shapes(self) -> dict[str, list[int | str]]:
        size = self.preprocess.face.size
        freq, time = self.preprocess.audio.shape
        return {FACE_INPUT: ["S", 3, size, size], SPEC_INPUT: ["S", 1, freq, time]}

    def to_metadata(self) -> dict[str, str]:
        """Flat string -> string map, as ONNX metadata_props and engine headers hold it."""
        meta = {
            "edge_emotion.labels": json.dumps(list(self.labels)),
            "edge_emotion.n_segments": str(self.n_segments),
            "edge_emotion.preprocess": json.dumps(self.preprocess.to_dict(), sort_keys=True),
            "edge_emotion.inputs": json.dumps(self.input_shapes()),
            "edge_emotion.output": json.dumps({OUTPUT: ["S", len(self.labels)], "kind": "softmax probabilities"}),
            "edge_emotion.precision": self.precision,
            "edge_emotion.io_dtype": self.io_dtype,
            "edge_emotion.modality": self.modality,
            "edge_emotion.package_version": self.package_version,
            "edge_emotion.config_hash": self.config_hash,
        }
        meta.update({f"edge_emotion.extra.{k}": v for k, v in self.extra.items()})
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ModelContract:
        """Parse and validate; raise ValueError saying which field is missing or wrong."""
        required = ["labels", "n_segments", "preprocess", "precision", "io_dtype"]
        missing = [k for k in required if f"edge_emotion.{k}" not in meta]
        if missing:
            raise ValueError(f"no edge-emotion contract (missing metadata: {', '.join(missing)})")
        try:
            labels = tuple(json.loads(meta["edge_emotion.labels"]))
            preprocess = PreprocessConfig.from_dict(json.loads(meta["edge_emotion.preprocess"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed contract metadata ({exc})") from exc
        if not labels or not all(isinstance(x, str) for x in labels):
            raise ValueError(f"contract labels must be a non-empty list of strings, got {labels!r}")
        if str(preprocess.n_segments) != meta["edge_emotion.n_segments"] or preprocess.n_segments < 1:
            raise ValueError("contract n_segments disagrees with its preprocessing config")
        if meta["edge_emotion.precision"] not in PRECISIONS:
            raise ValueError(f"contract precision must be one of {PRECISIONS}, got {meta['edge_emotion.precision']!r}")
        if meta["edge_emotion.io_dtype"] not in ("float32", "float16"):
            raise ValueError(f"contract io_dtype must be float32 or float16, got {meta['edge_emotion.io_dtype']!r}")
        prefix = "edge_emotion.extra."
        return cls(
            labels=labels,
            preprocess=preprocess,
            precision=meta["edge_emotion.precision"],
            io_dtype=meta["edge_emotion.io_dtype"],
            modality=meta.get("edge_emotion.modality", "both"),
            package_version=meta.get("edge_emotion.package_version", ""),
            config_hash=meta.get("edge_emotion.config_hash", ""),
            extra={k[len(prefix) :]: v for k, v in meta.items() if k.startswith(prefix)},
        )
