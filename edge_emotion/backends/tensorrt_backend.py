"""The TensorRT backend: a header-checked engine run with the TensorRT 10/11 tensor API, torch CUDA tensors as buffers.

UNVERIFIED ON A GPU (no tensorrt on the development machines): the calls follow
the TensorRT Python bindings (Runtime.deserialize_cuda_engine,
ICudaEngine.num_io_tensors / get_tensor_name / get_tensor_mode / get_tensor_dtype,
IExecutionContext.set_input_shape / set_tensor_address / get_tensor_shape /
execute_async_v3) as Polygraphy's TrtRunner uses them. The header is checked
before any TensorRT call, so an engine for another TensorRT version or GPU is
refused with a message instead of a deserialization crash.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_emotion.backends.base import Backend
from edge_emotion.contract import FACE_INPUT, OUTPUT, SPEC_INPUT
from edge_emotion.errors import ArtifactError
from edge_emotion.export.tensorrt_build import (
    EngineHeader,
    check_platform,
    current_platform,
    read_engine,
    require_tensorrt,
)


def chunk_bounds(total: int, largest: int) -> list[tuple[int, int]]:
    """[start, stop) slices of at most `largest` segments covering `total` (S beyond the profile runs in pieces)."""
    return [(start, min(start + largest, total)) for start in range(0, total, largest)]


class TensorRTBackend(Backend):
    """A serialized engine with our JSON header; S larger than the profile's max runs in chunks."""

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda:0") -> None:
        import torch

        path = Path(path)
        header, blob = read_engine(path)
        try:
            contract = header.model_contract()
        except ValueError as exc:
            raise ArtifactError(path, f"engine header holds no valid contract ({exc})") from exc
        super().__init__(path, contract)
        trt = require_tensorrt()
        if device == "auto":
            device = "cuda:0"
        check_platform(header, current_platform(trt, device), path)
        self.header: EngineHeader = header
        self.device = torch.device(device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise ArtifactError(path, "TensorRT could not deserialize the engine (see the TensorRT log above)")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        self._dtypes = {name: _torch_dtype(trt, self.engine.get_tensor_dtype(name)) for name in self._io_names(trt)}

    def _io_names(self, trt) -> list[str]:
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = {n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT}
        if inputs != {FACE_INPUT, SPEC_INPUT} or set(names) - inputs != {OUTPUT}:
            raise ArtifactError(
                self.path, f"engine tensors {names} do not match the contract ({FACE_INPUT}, {SPEC_INPUT} -> {OUTPUT})"
            )
        return names

    def infer(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
        self.check_inputs(faces, spectrograms)
        bounds = chunk_bounds(faces.shape[0], self.header.profile.max)
        parts = [self._run(faces[a:b], spectrograms[a:b]) for a, b in bounds]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.contract.labels)), np.float32)

    def _run(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
        """One chunk (min <= S <= max after padding): copy in, execute_async_v3 on our stream, copy out."""
        import torch

        n = faces.shape[0]
        pad = max(0, self.header.profile.min - n)  # engines with min > 1 get zero segments appended, then cut
        with torch.cuda.stream(self.stream):
            inputs = {FACE_INPUT: faces, SPEC_INPUT: spectrograms}
            buffers = {}
            for name, array in inputs.items():
                tensor = torch.from_numpy(np.ascontiguousarray(array)).to(
                    self.device, self._dtypes[name], non_blocking=False
                )
                if pad:
                    tensor = torch.cat([tensor, tensor.new_zeros((pad, *tensor.shape[1:]))])
                buffers[name] = tensor.contiguous()  # [S, C, H, W]
                if not self.context.set_input_shape(name, tuple(tensor.shape)):
                    raise ValueError(
                        f"{self.path}: {name} shape {tuple(tensor.shape)} is outside the engine's profile {self.header.profile}"
                    )
                self._set_address(name, buffers[name])
            out = torch.empty(
                tuple(self.context.get_tensor_shape(OUTPUT)), dtype=self._dtypes[OUTPUT], device=self.device
            )
            self._set_address(OUTPUT, out)  # [S, K]
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"{self.path}: TensorRT execution failed (see the TensorRT log)")
            self.stream.synchronize()
        return out[:n].float().cpu().numpy()

    def _set_address(self, name: str, tensor) -> None:
        if not self.context.set_tensor_address(name, tensor.data_ptr()):
            raise RuntimeError(f"{self.path}: TensorRT refused the buffer address of {name}")

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.context = None
        self.engine = None


def _torch_dtype(trt, dtype):
    """TensorRT tensor dtype -> torch dtype (float inputs/outputs only in our contract)."""
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    if dtype not in table:
        raise ValueError(f"engine tensor dtype {dtype} is not float32/float16")
    return table[dtype]
