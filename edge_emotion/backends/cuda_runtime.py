"""A tiny ctypes wrapper over libcudart: device buffers, streams and copies for the TensorRT runtime, without torch.

After Polygraphy's polygraphy/cuda/cuda.py: only the calls a TensorRT runner needs
(cudaSetDevice, cudaGetDeviceCount, cudaGetDeviceProperties for the name,
cudaDeviceGetAttribute for the compute capability, cudaMalloc / cudaFree,
cudaStreamCreate / Synchronize / Destroy, cudaMemcpyAsync), each with explicit
ctypes argument types. The library is loaded when a runner is built, never at
import; a missing library is a MissingDependencyError saying what was tried.
Host arrays are plain (pageable) numpy arrays; the copies are queued on the
runner's stream and complete at its synchronize.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_emotion.errors import EdgeEmotionError, MissingDependencyError

SONAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")
HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2  # cudaMemcpyKind
ATTR_CC_MAJOR, ATTR_CC_MINOR = 75, 76  # cudaDevAttrComputeCapabilityMajor / Minor
PROPS_BYTES = 8192  # >= sizeof(cudaDeviceProp) in CUDA 11-13 (about 1 KB); `name` is its first field, char[256]
NAME_BYTES = 256
INSTALL_HINT = "install the CUDA runtime (the CUDA toolkit, or pip install nvidia-cuda-runtime-cu12) and a GPU driver"

_VOID_P, _INT, _SIZE_T = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
#: the functions we call: name -> argument types (each returns cudaError_t, an int)
SIGNATURES: dict[str, list[type]] = {
    "cudaGetDeviceCount": [ctypes.POINTER(_INT)],
    "cudaSetDevice": [_INT],
    "cudaDeviceGetAttribute": [ctypes.POINTER(_INT), _INT, _INT],
    "cudaMalloc": [ctypes.POINTER(_VOID_P), _SIZE_T],
    "cudaFree": [_VOID_P],
    "cudaStreamCreate": [ctypes.POINTER(_VOID_P)],
    "cudaStreamSynchronize": [_VOID_P],
    "cudaStreamDestroy": [_VOID_P],
    "cudaMemcpyAsync": [_VOID_P, _VOID_P, _SIZE_T, _INT, _VOID_P],
}
#: CUDA 12 headers map cudaGetDeviceProperties to the _v2 symbol; CUDA 13 has only the plain one
PROPERTY_SYMBOLS = ("cudaGetDeviceProperties_v2", "cudaGetDeviceProperties")


class CudaError(EdgeEmotionError):
    """A CUDA runtime call failed (no GPU, no driver, out of memory, a bad device index)."""


def library_candidates() -> list[str]:
    """Where libcudart may be, best first: one already mapped into this process, sonames, pip's nvidia wheels, CUDA_HOME."""
    found = _loaded_cudart()
    found += list(SONAMES)
    spec = importlib.util.find_spec("nvidia")  # pip's CUDA wheels (nvidia-cuda-runtime-cu12, torch's nvidia/cu13)
    for root in list(spec.submodule_search_locations or []) if spec else []:
        found += sorted(str(p) for p in Path(root).glob("*/lib/libcudart.so*"))
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            found += sorted(str(p) for p in Path(home).glob("lib*/libcudart.so*"))
    return list(dict.fromkeys(found))


def _loaded_cudart() -> list[str]:
    """libcudart files this process has mapped already (e.g. by TensorRT or ONNX Runtime): share their runtime."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = (line.split()[-1] for line in maps.splitlines() if "libcudart.so" in line)
    return list(dict.fromkeys(p for p in paths if p.startswith("/")))


def load_cudart(candidates: Sequence[str] | None = None) -> CudaRuntime:
    """The first libcudart of `candidates` (default: library_candidates()) that loads, bound and ready."""
    tried = list(candidates) if candidates is not None else library_candidates()
    for name in tried:
        try:
            return CudaRuntime(ctypes.CDLL(name), name)
        except OSError:
            continue
    raise MissingDependencyError(f"libcudart (the CUDA runtime) not found; tried {', '.join(tried)}: {INSTALL_HINT}")


def visible_devices() -> int:
    """CUDA devices this process can use, through libcudart (no torch); 0 without a CUDA runtime or a GPU."""
    try:
        return load_cudart().device_count()
    except (MissingDependencyError, CudaError):
        return 0


def cuda_device_index(device: str) -> int:
    """'auto' / 'cuda' -> 0, 'cuda:1' -> 1; anything else (e.g. 'cpu') is a CudaError: engines run on a GPU."""
    if device in ("auto", "cuda"):
        return 0
    prefix, _, index = device.partition(":")
    if prefix != "cuda" or not index.isdigit():
        raise CudaError(
            f"device {device!r}: a TensorRT engine runs on a CUDA GPU (use auto, cuda or cuda:N; "
            "run an .onnx artifact for the CPU)"
        )
    return int(index)


class CudaRuntime:
    """libcudart's few calls, each checked: a failure raises CudaError with CUDA's own message."""

    def __init__(self, lib: ctypes.CDLL, source: str) -> None:
        self.source = source
        self._lib = lib
        for name, argtypes in SIGNATURES.items():
            self._bind(name, argtypes)
        self._props = self._bind(next((s for s in PROPERTY_SYMBOLS if hasattr(lib, s)), PROPERTY_SYMBOLS[-1]))
        self._props.argtypes = [ctypes.c_char_p, _INT]
        self._lib.cudaGetErrorString.restype = ctypes.c_char_p
        self._lib.cudaGetErrorString.argtypes = [_INT]

    def _bind(self, name: str, argtypes: list[type] | None = None):
        try:
            func = getattr(self._lib, name)
        except AttributeError as exc:
            raise MissingDependencyError(
                f"{self.source} has no {name}: not a usable libcudart ({INSTALL_HINT})"
            ) from exc
        func.restype = _INT
        if argtypes is not None:
            func.argtypes = argtypes
        return func

    def check(self, status: int, what: str) -> None:
        if status != 0:
            message = self._lib.cudaGetErrorString(status).decode("utf-8", "replace")
            raise CudaError(f"CUDA {what} failed: {message} (cudaError {status}, {self.source})")

    def device_count(self) -> int:
        count = _INT(0)
        self.check(self._lib.cudaGetDeviceCount(ctypes.byref(count)), "cudaGetDeviceCount (is a GPU visible?)")
        return count.value

    def set_device(self, index: int) -> None:
        """Make GPU `index` current for this thread; CudaError naming the count if it does not exist."""
        count = self.device_count()
        if not 0 <= index < count:
            raise CudaError(f"device cuda:{index} does not exist: {count} CUDA device(s) visible")
        self.check(self._lib.cudaSetDevice(index), f"cudaSetDevice({index})")

    def device_name(self, index: int) -> str:
        props = ctypes.create_string_buffer(PROPS_BYTES)
        self.check(self._props(props, index), f"cudaGetDeviceProperties({index})")
        return props.raw[:NAME_BYTES].split(b"\0", 1)[0].decode("utf-8", "replace")

    def compute_capability(self, index: int) -> tuple[int, int]:
        major, minor = _INT(0), _INT(0)
        self.check(
            self._lib.cudaDeviceGetAttribute(ctypes.byref(major), ATTR_CC_MAJOR, index), "cudaDeviceGetAttribute"
        )
        self.check(
            self._lib.cudaDeviceGetAttribute(ctypes.byref(minor), ATTR_CC_MINOR, index), "cudaDeviceGetAttribute"
        )
        return major.value, minor.value

    def malloc(self, nbytes: int) -> int:
        ptr = _VOID_P()
        self.check(self._lib.cudaMalloc(ctypes.byref(ptr), nbytes), f"cudaMalloc({nbytes} bytes)")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        self.check(self._lib.cudaFree(ptr), "cudaFree")

    def stream_create(self) -> int:
        stream = _VOID_P()
        self.check(self._lib.cudaStreamCreate(ctypes.byref(stream)), "cudaStreamCreate")
        return int(stream.value or 0)

    def stream_synchronize(self, stream: int) -> None:
        self.check(self._lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream: int) -> None:
        self.check(self._lib.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def copy_to_device(self, dst: int, host: np.ndarray, stream: int) -> None:
        """Queue host -> device; `host` must be C-contiguous and stay alive until the stream is synchronized."""
        if host.nbytes:
            status = self._lib.cudaMemcpyAsync(dst, host.ctypes.data, host.nbytes, HOST_TO_DEVICE, stream)
            self.check(status, "cudaMemcpyAsync (host to device)")

    def copy_to_host(self, host: np.ndarray, src: int, stream: int) -> None:
        """Queue device -> host into C-contiguous `host`; its contents are valid after the stream is synchronized."""
        if host.nbytes:
            status = self._lib.cudaMemcpyAsync(host.ctypes.data, src, host.nbytes, DEVICE_TO_HOST, stream)
            self.check(status, "cudaMemcpyAsync (device to host)")


class DeviceBuffer:
    """One device allocation that grows when a larger tensor comes (never shrinks), freed by `free`."""

    def __init__(self, cuda: CudaRuntime) -> None:
        self._cuda = cuda
        self.ptr = 0
        self.capacity = 0

    def reserve(self, nbytes: int) -> int:
        """A device pointer to at least `nbytes` (>= 1, so TensorRT never gets a null address)."""
        if nbytes > self.capacity or not self.ptr:
            self.free()
            size = max(int(nbytes), 1)
            self.ptr = self._cuda.malloc(size)
            self.capacity = size
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr, self.capacity = self.ptr, 0, 0
            self._cuda.free(ptr)
