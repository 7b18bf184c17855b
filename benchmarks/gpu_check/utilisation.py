"""GPU utilisation sampled in a thread while a block runs (NVML, else nvidia-smi)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.gpu_check.harness import short


class GpuSampler:
    """GPU utilisation sampled in a thread while a block runs: NVML (nvidia-ml-py) if importable, else nvidia-smi.

    Utilisation is the driver's: the share of the last sample period in which any kernel ran, not of the SMs busy.
    """

    def __init__(self, enabled: bool, interval_s: float = 0.1) -> None:
        self.enabled, self.interval_s = enabled, interval_s
        self.samples: list[tuple[float, float]] = []  # (utilisation %, memory used MiB)
        self.source, self.error = "", ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _reader(self) -> Callable[[], tuple[float, float]]:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.source = "nvml"
            return lambda: (float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                            pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20)  # fmt: skip
        except Exception:  # noqa: BLE001 - no NVML: try the command line tool
            query = ["nvidia-smi", "-i", "0", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
            self.source = "nvidia-smi"

            def read() -> tuple[float, float]:
                fields = subprocess.run(query, capture_output=True, text=True, timeout=5, check=True).stdout.split(",")
                return float(fields[0]), float(fields[1])

            return read

    def _loop(self, read: Callable[[], tuple[float, float]]) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(read())
            except Exception as exc:  # noqa: BLE001 - the sampler reports, it never stops the step
                self.error = short(exc)
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, args=(self._reader(),), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> dict[str, Any]:
        if not self.enabled:
            return {"status": "absent", "reason": "no CUDA device (--device cpu)"}
        if not self.samples:
            return {"status": "failed", "reason": self.error or "no samples", "source": self.source}
        util = [u for u, _ in self.samples]
        return {"status": "ok", "source": self.source, "samples": len(util), "mean_percent": float(np.mean(util)),
                "max_percent": float(max(util)), "memory_used_mib_max": float(max(m for _, m in self.samples))}  # fmt: skip

