"""The CUDA runtime wrapper without torch: device strings, libcudart loading and its errors, a round trip where a
GPU is present (skipped loudly otherwise), and no torch import on the engine runtime's path."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import engine_header

from edge_emotion.backends.cuda_runtime import CudaError, cuda_device_index, load_cudart
from edge_emotion.errors import MissingDependencyError
from edge_emotion.toolchain.export.tensorrt_build import write_engine

ROOT = Path(__file__).resolve().parents[1]


def test_device_strings():
    assert [cuda_device_index(d) for d in ("auto", "cuda", "cuda:0", "cuda:1")] == [0, 0, 0, 1]
    for bad in ("cpu", "cuda:x", "gpu1"):
        with pytest.raises(CudaError, match="a TensorRT engine runs on a CUDA GPU"):
            cuda_device_index(bad)


def test_open_backend_passes_the_device_to_tensorrt(tmp_path):
    """--device reaches the engine backend (it used to be dropped: always GPU 0); cpu is refused in one line."""
    from edge_emotion.backends import open_backend

    write_engine(tmp_path / "m.engine", engine_header(), b"E")
    with pytest.raises(CudaError, match="device 'cpu': a TensorRT engine runs on a CUDA GPU"):
        open_backend(tmp_path / "m.engine", device="cpu")


def test_missing_libcudart_is_one_clear_error():
    with pytest.raises(
        MissingDependencyError, match=r"libcudart \(the CUDA runtime\) not found; tried /nowhere/libcudart"
    ):
        load_cudart(["/nowhere/libcudart.so.99"])


def _cudart():
    try:
        return load_cudart()
    except MissingDependencyError as exc:
        pytest.skip(f"no libcudart on this machine ({exc}): CUDA wrapper unexercised")


def test_libcudart_without_a_gpu_is_one_clear_error():
    """The real libcudart (pip's nvidia wheel or the toolkit) loads, binds every call, and says why there is no GPU."""
    cuda = _cudart()
    try:
        count = cuda.device_count()
    except CudaError as exc:
        assert "cudaGetDeviceCount (is a GPU visible?) failed" in str(exc) and cuda.source in str(exc)
        with pytest.raises(CudaError, match="cudaGetDeviceCount"):
            cuda.set_device(0)
        return
    with pytest.raises(CudaError, match=rf"device cuda:{count} does not exist: {count} CUDA device"):
        cuda.set_device(count)


@pytest.mark.gpu
def test_cuda_round_trip_on_a_gpu():
    """Host -> device -> host through our ctypes wrapper: the bytes come back."""
    from edge_emotion.backends.cuda_runtime import DeviceBuffer

    cuda = _cudart()
    try:
        cuda.set_device(0)
    except CudaError as exc:
        pytest.skip(f"no usable CUDA GPU ({exc})")
    assert cuda.device_name(0) and cuda.compute_capability(0)[0] >= 3
    stream = cuda.stream_create()
    buffer = DeviceBuffer(cuda)
    data = np.arange(1000, dtype=np.float32).reshape(10, 100)  # [10, 100]
    back = np.empty_like(data)
    cuda.copy_to_device(buffer.reserve(data.nbytes), data, stream)
    cuda.copy_to_host(back, buffer.ptr, stream)
    cuda.stream_synchronize(stream)
    buffer.free()
    cuda.stream_destroy(stream)
    np.testing.assert_array_equal(back, data)


def test_engine_runtime_imports_no_torch():
    """Scoring an engine must not pay for torch: our runtime modules add no torch import to what they depend on."""
    code = (
        "import sys\n"
        "import edge_emotion.contract\n"
        "before = 'torch' in sys.modules\n"
        "import edge_emotion.backends.tensorrt_backend, edge_emotion.backends.engine_file\n"
        "import edge_emotion.backends.cuda_runtime\n"
        "print(before, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    before, after = result.stdout.split()
    for module in ("tensorrt_backend", "engine_file", "cuda_runtime"):  # no torch import anywhere in them, lazy or not
        tree = ast.parse((ROOT / "edge_emotion" / "backends" / f"{module}.py").read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in imported if m.split(".")[0] == "torch"], module
    assert before == "False", "edge_emotion.contract imports torch: the runtime's leaf must not (a layering bug)"
    assert after == "False", "the TensorRT runtime modules import torch"
