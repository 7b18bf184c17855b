"""The ONNX Runtime backend: an exported branch (FP32, FP16 or QDQ INT8) on the CPU, CUDA or TensorRT EP.

Execution providers: `provider="auto"` takes CUDA when onnxruntime-gpu offers
it and `device` allows, else the CPU; `provider="cuda"` / `"tensorrt"` ask for
that EP explicitly. A provider that is not available (plain onnxruntime) or
that fails to start (onnxruntime-gpu without CUDA libraries: ONNX Runtime then
drops to the CPU by itself) gives a warning naming what actually runs, never
a silent change.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from edge_emotion.backends.base import Backend
from edge_emotion.contract import FACE_INPUT, OUTPUT, SPEC_INPUT, ModelContract
from edge_emotion.deps import require
from edge_emotion.errors import ArtifactError

CPU_EP, CUDA_EP, TRT_EP = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")
ORT_TO_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def wanted_providers(provider: str, device: str) -> list[str]:
    """Execution providers to ask for, best first, the CPU always last (pure: no probing)."""
    if provider not in PROVIDER_CHOICES:
        raise ValueError(f"provider must be one of {PROVIDER_CHOICES}, got {provider!r}")
    if device == "cpu" or provider == "cpu":
        return [CPU_EP]
    if provider == "tensorrt":
        return [TRT_EP, CUDA_EP, CPU_EP]
    return [CUDA_EP, CPU_EP]


def available_providers(wanted: list[str], available: list[str], explicit: bool = False) -> list[str]:
    """The wanted providers this onnxruntime build has; an explicit request it cannot meet is warned about.

    "auto" on plain onnxruntime takes the CPU quietly: that is what auto means.
    """
    missing = [p for p in wanted if p not in available]
    if missing and explicit:
        warnings.warn(
            f"{', '.join(missing)} not available in this onnxruntime ({', '.join(available)}); "
            "install onnxruntime-gpu (not beside onnxruntime) for GPU execution. Falling back.",
            stacklevel=3,
        )
    return [p for p in wanted if p in available] or [CPU_EP]


def _device_id(device: str) -> int:
    return int(device.split(":")[1]) if device.startswith("cuda:") else 0


class OnnxRuntimeBackend(Backend):
    """An exported ONNX branch with its contract read from metadata_props."""

    name = "onnxruntime"

    def __init__(
        self, path: str | Path, device: str = "auto", provider: str = "auto", threads: int | None = None
    ) -> None:
        ort = require("onnxruntime")
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(path, "ONNX file not found")
        providers = available_providers(
            wanted_providers(provider, device), ort.get_available_providers(), provider != "auto"
        )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: EP fallbacks are reported by the warning below
        # No busy-waiting between runs: while scoring, the backend shares the cores with decoding and MTCNN, which
        # spinning threads would take CPU from. On 2 vCPUs the gain was within the machine's noise (benchmarks/README.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = _open_session(ort, path, options, providers, _device_id(device))
        contract = _contract(session, path)
        super().__init__(path, contract)
        self.session = session
        self.providers = session.get_providers()
        if self.providers[0] != providers[0]:
            warnings.warn(f"{path}: {providers[0]} failed to start; running on {self.providers[0]}", stacklevel=2)
        self._input_dtypes = {i.name: ORT_TO_NUMPY.get(i.type, np.float32) for i in session.get_inputs()}

    def infer_impl(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
        feed = {
            FACE_INPUT: np.ascontiguousarray(faces, dtype=self._input_dtypes[FACE_INPUT]),  # [S, 3, 224, 224]
            SPEC_INPUT: np.ascontiguousarray(spectrograms, dtype=self._input_dtypes[SPEC_INPUT]),  # [S, 1, 192, 120]
        }
        (probs,) = self.session.run([OUTPUT], feed)  # [S, K]
        return probs.astype(np.float32, copy=False)

    def close(self) -> None:
        self.session = None


def _open_session(ort, path: Path, options, providers: list[str], device_id: int):
    """InferenceSession, or ArtifactError naming the file when it is not a loadable ONNX model."""
    provider_options = [{"device_id": device_id} if p in (CUDA_EP, TRT_EP) else {} for p in providers]
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=providers, provider_options=provider_options
        )
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/InvalidGraph types (RuntimeError subclasses)
        raise ArtifactError(path, f"not a loadable ONNX model ({type(exc).__name__}: {exc})") from exc


def _contract(session, path: Path) -> ModelContract:
    """The contract in the file's metadata_props, checked against the graph's actual input and output names."""
    try:
        contract = ModelContract.from_metadata(dict(session.get_modelmeta().custom_metadata_map))
    except ValueError as exc:
        raise ArtifactError(path, f"{exc}; export it with `edge-emotion export`") from exc
    names = {i.name for i in session.get_inputs()}, {o.name for o in session.get_outputs()}
    if names != ({FACE_INPUT, SPEC_INPUT}, {OUTPUT}):
        raise ArtifactError(
            path,
            f"graph has inputs {sorted(names[0])} and outputs {sorted(names[1])}, the contract says "
            f"{[FACE_INPUT, SPEC_INPUT]} -> [{OUTPUT}]",
        )
    mismatches = _shape_mismatches(session, contract)
    if mismatches:
        raise ArtifactError(path, "the graph does not match its contract: " + "; ".join(mismatches))
    return contract


def _shape_mismatches(session, contract: ModelContract) -> list[str]:
    """Where the graph's fixed dimensions disagree with the contract's shapes (labels, face size, spectrogram)."""
    want: dict[str, list[int | str]] = {**contract.input_shapes(), OUTPUT: ["S", len(contract.labels)]}
    found = []
    for tensor in [*session.get_inputs(), *session.get_outputs()]:
        for axis, (have, expected) in enumerate(zip(tensor.shape[1:], want[tensor.name][1:]), start=1):
            if isinstance(have, int) and have != expected:
                found.append(f"{tensor.name} axis {axis} is {have} in the graph, {expected} in the contract")
    return found
