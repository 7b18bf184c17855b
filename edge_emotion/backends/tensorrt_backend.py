"""TensorRT at run time without torch: a generic engine runner (numpy in, numpy out) and the emotion-branch backend.

`EngineRunner` runs any engine file of ours (the emotion branch, MTCNN's PNet /
RNet / ONet): named numpy inputs -> numpy outputs in the engine's output order,
device buffers and a stream from libcudart through ctypes (cuda_runtime.py). It
picks, per call, the optimisation profile whose shape ranges hold the inputs.
`TensorRTBackend` is the Backend over a branch engine: S beyond the profile runs
in chunks.

UNVERIFIED ON A GPU: tensorrt cannot be installed on the development machines.
tests/test_tensorrt_api.py checks every TensorRT name, method and keyword used
here against the real TensorRT 11.4 Python bindings (pybind11 signatures); that
verifies names and signatures, not behaviour. The calls follow the TensorRT
10/11 name-based tensor API as Polygraphy's TrtRunner uses it. The header is
checked before any TensorRT call, so an engine for another TensorRT version or
GPU is refused with a message instead of a deserialization crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edge_emotion.backends.base import Backend
from edge_emotion.backends.cuda_runtime import DeviceBuffer, cuda_device_index, load_cudart
from edge_emotion.backends.engine_file import (
    EngineHeader,
    Profile,
    Shape,
    ShapeRange,
    check_platform,
    current_platform,
    read_engine,
    require_tensorrt,
)
from edge_emotion.contract import FACE_INPUT, OUTPUT, SPEC_INPUT
from edge_emotion.errors import ArtifactError


def chunk_bounds(total: int, largest: int) -> list[tuple[int, int]]:
    """[start, stop) slices of at most `largest` segments covering `total` (S beyond the profile runs in pieces)."""
    return [(start, min(start + largest, total)) for start in range(0, total, largest)]


def select_profile(profiles: Sequence[Profile], shapes: Mapping[str, Shape]) -> int:
    """Index of the profile whose ranges hold every input shape; the tightest one (smallest max volume) if several.

    A tighter profile was tuned for shapes nearer these; ValueError naming the
    shapes and every profile's ranges when none holds them.
    """
    fits = [i for i, p in enumerate(profiles) if all(n in p and p[n].contains(s) for n, s in shapes.items())]
    if not fits:
        ranges = "; ".join(
            f"profile {i}: " + ", ".join(f"{n} {r.describe()}" for n, r in p.items()) for i, p in enumerate(profiles)
        )
        raise ValueError(f"input shapes {dict(shapes)} fit no optimisation profile of the engine ({ranges})")
    return min(fits, key=lambda i: (sum(float(np.prod(r.max)) for r in profiles[i].values()), i))


def batch_range(profiles: Sequence[Profile], name: str) -> tuple[int, int]:
    """(smallest min, largest max) of axis 0 of input `name` over all profiles: how S may be chunked and padded."""
    return min(p[name].min[0] for p in profiles), max(p[name].max[0] for p in profiles)


class EngineRunner:
    """A deserialized engine with its context, stream and device buffers: run(named numpy inputs) -> numpy outputs.

    Inputs are cast to the engine's tensor dtypes (float32 -> float16 for an FP16-IO
    engine); outputs come back in the engine's dtypes, in the engine's output order.
    """

    def __init__(self, path: str | Path, header: EngineHeader, blob: bytes, device: str = "cuda:0") -> None:
        self.path = Path(path)
        self.header = header
        self.device = cuda_device_index(device)  # a user mistake (--device cpu) first, before any import
        trt = require_tensorrt()
        self._cuda = load_cudart()
        self._cuda.set_device(self.device)
        check_platform(header, current_platform(trt, self._cuda, self.device), self.path)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise ArtifactError(self.path, "TensorRT could not deserialize the engine (see the TensorRT log above)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ArtifactError(self.path, "TensorRT could not create an execution context (out of GPU memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        self.dtypes = {n: self._numpy_dtype(trt, n) for n in names}
        self.profiles = [self._profile(i) for i in range(self.engine.num_optimization_profiles)]
        self._buffers = {n: DeviceBuffer(self._cuda) for n in names}
        self.stream = self._cuda.stream_create()

    def _numpy_dtype(self, trt, name: str) -> np.dtype:
        """The numpy dtype of tensor `name`; ArtifactError for types numpy lacks (bfloat16, fp8, int4, fp4)."""
        dtype = self.engine.get_tensor_dtype(name)
        try:
            return np.dtype(trt.nptype(dtype))
        except TypeError as exc:
            raise ArtifactError(self.path, f"engine tensor {name} is {dtype}, which has no numpy type") from exc

    def _profile(self, index: int) -> dict[str, ShapeRange]:
        """The engine's own shape ranges of optimisation profile `index` (authoritative over the header)."""
        ranges = {}
        for name in self.input_names:
            lo, opt, hi = self.engine.get_tensor_profile_shape(name, index)
            ranges[name] = ShapeRange.of((lo, opt, hi))
        return ranges

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Copy in, pick the profile, execute_async_v3 on our stream, copy out, synchronize."""
        if set(inputs) != set(self.input_names):
            raise ValueError(f"{self.path}: engine inputs are {self.input_names}, got {sorted(inputs)}")
        arrays = {n: np.ascontiguousarray(inputs[n], dtype=self.dtypes[n]) for n in self.input_names}
        profile = select_profile(self.profiles, {n: a.shape for n, a in arrays.items()})
        self._cuda.set_device(self.device)
        self._use_profile(profile)
        for name, array in arrays.items():
            if not self.context.set_input_shape(name, array.shape):
                raise ValueError(f"{self.path}: TensorRT refused input {name} of shape {array.shape}")
            self._bind(name, array.nbytes)
            self._cuda.copy_to_device(self._buffers[name].ptr, array, self.stream)
        outputs = [np.empty(self._output_shape(n), dtype=self.dtypes[n]) for n in self.output_names]
        for name, host in zip(self.output_names, outputs):
            self._bind(name, host.nbytes)
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed (see the TensorRT log above)")
        for name, host in zip(self.output_names, outputs):
            self._cuda.copy_to_host(host, self._buffers[name].ptr, self.stream)
        self._cuda.stream_synchronize(self.stream)  # the host inputs stay referenced by `arrays` until here
        return outputs

    def _use_profile(self, index: int) -> None:
        """Switch the context to profile `index` (queued on our stream) unless it is active already."""
        if self.context.active_optimization_profile == index:
            return
        if not self.context.set_optimization_profile_async(index, self.stream):
            raise RuntimeError(f"{self.path}: TensorRT refused optimisation profile {index}")

    def _output_shape(self, name: str) -> tuple[int, ...]:
        shape = tuple(self.context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise ValueError(f"{self.path}: output {name} has a data-dependent shape {shape}, which this runner lacks")
        return shape

    def _bind(self, name: str, nbytes: int) -> None:
        if not self.context.set_tensor_address(name, self._buffers[name].reserve(nbytes)):
            raise RuntimeError(f"{self.path}: TensorRT refused the buffer address of {name}")

    def synchronize(self) -> None:
        self._cuda.stream_synchronize(self.stream)

    def close(self) -> None:
        """Free the buffers and the stream, then drop context and engine (in that order). Safe to call twice."""
        if self.stream:
            self._cuda.stream_synchronize(self.stream)
            for buffer in self._buffers.values():
                buffer.free()
            self._cuda.stream_destroy(self.stream)
            self.stream = 0
        self.context = None
        self.engine = None


def open_engine(path: str | Path, device: str = "cuda:0") -> EngineRunner:
    """Read, check and deserialize an engine file of ours (any net): the runner, header in `runner.header`."""
    header, blob = read_engine(path)
    return EngineRunner(path, header, blob, device)


class TensorRTBackend(Backend):
    """An emotion-branch engine with its contract in the header; S beyond the profiles' max runs in chunks."""

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        path = Path(path)
        header, blob = read_engine(path)
        try:
            contract = header.model_contract()
        except ValueError as exc:
            raise ArtifactError(path, f"engine header holds no valid contract ({exc})") from exc
        super().__init__(path, contract)
        self.runner = EngineRunner(path, header, blob, device)
        inputs, outputs = set(self.runner.input_names), self.runner.output_names
        if inputs != {FACE_INPUT, SPEC_INPUT} or outputs != [OUTPUT]:
            self.runner.close()
            raise ArtifactError(
                path,
                f"engine tensors {sorted(inputs)} -> {outputs} do not match the contract "
                f"({FACE_INPUT}, {SPEC_INPUT} -> {OUTPUT})",
            )
        self._smallest, self._largest = batch_range(self.runner.profiles, FACE_INPUT)

    def infer_impl(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
        parts = [self._run(faces[a:b], spectrograms[a:b]) for a, b in chunk_bounds(faces.shape[0], self._largest)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.contract.labels)), np.float32)

    def _run(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
        """One chunk; engines whose profile starts above S get zero segments appended, cut off again after."""
        n = faces.shape[0]
        faces, spectrograms = _pad_rows(faces, self._smallest), _pad_rows(spectrograms, self._smallest)
        (probs,) = self.runner.run({FACE_INPUT: faces, SPEC_INPUT: spectrograms})  # [S, K]
        return probs[:n].astype(np.float32)

    def synchronize(self) -> None:
        self.runner.synchronize()

    def close(self) -> None:
        self.runner.close()


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` with zero rows appended up to `rows` along axis 0 (unchanged if it has enough)."""
    missing = rows - array.shape[0]
    if missing <= 0:
        return array
    return np.concatenate([array, np.zeros((missing, *array.shape[1:]), array.dtype)])
