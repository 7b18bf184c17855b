"""The environment step: GPU, driver, CUDA / cuDNN / torch / onnxruntime versions, TF32 switches, which packages import."""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import subprocess
from typing import Any

from benchmarks.gpu_check.harness import Check, short
from benchmarks.gpu_check.report import table
from edge_emotion.run.bench.machine import machine_info

PACKAGES = (
    "numpy", "torch", "torchvision", "onnx", "onnxruntime", "av", "PIL", "typer", "rich", "matplotlib",
    "pytest", "tensorrt", "pynvml",
)  # fmt: skip


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
        python=platform.python_version(), platform=platform.platform(),
        cpu=machine_info().get("cpu") or platform.processor() or "unknown", cpus=os.cpu_count(),
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


def md_environment(r: dict[str, Any]) -> list[str]:
    rows = [[k, r.get(k)] for k in ("python", "platform", "cpu", "cpus", "torch", "torch_cuda", "cudnn", "torch_threads")]
    rows += [[f"gpu {k}", v] for k, v in (r.get("gpu") or {}).items()]
    rows += [["TF32", r.get("tf32")], ["onnxruntime providers", r.get("onnxruntime_providers")]]
    rows += [[f"package {k}", v] for k, v in (r.get("packages") or {}).items()]
    return table(["what", "value"], rows)
