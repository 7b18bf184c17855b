"""What ran a benchmark: enough to tell two runs' machines apart."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """Platform, Python, CPUs and model; torch / onnxruntime versions only when a backend already imported them."""
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
