"""What a bench run returns: one row per backend x artifact x batch size, the stage times, the machine."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edge_emotion.run.bench.timing import LatencyStats

STAGES = ("decode", "faces", "spectrogram", "inference", "consensus")


@dataclass
class BenchRow:
    """One backend x artifact x batch size."""

    backend: str
    artifact: str | None
    status: str  # ok | unavailable | skipped | failed
    reason: str = ""
    precision: str = "-"  # unknown until the artifact opens
    file_mb: float | None = None
    batch_size: int | None = None
    latency_ms: LatencyStats | None = None
    segments_per_s: float | None = None
    clips_per_s: float | None = None
    agreement: float | None = None  # top-1 agreement with the FP32 reference
    max_abs_diff: float | None = None  # largest probability difference from the reference


@dataclass
class StageTimes:
    """End-to-end time per clip by stage (one process, one clip at a time), over real videos."""

    clips: int
    failed: int
    media_seconds: float
    ms_per_clip: dict[str, float] = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        return sum(self.ms_per_clip.values())

    @property
    def times_real_time(self) -> float:
        return self.media_seconds / (self.total_ms * self.clips / 1e3) if self.clips and self.total_ms else 0.0


@dataclass
class BenchReport:
    rows: list[BenchRow]
    stages: StageTimes | None
    machine: dict[str, Any]
    inputs: str  # what the agreement inputs were

    def to_dict(self) -> dict[str, Any]:
        out = {"machine": self.machine, "inputs": self.inputs, "rows": [asdict(r) for r in self.rows], "stages": None}
        if self.stages is not None:
            out["stages"] = {**asdict(self.stages), "total_ms": self.stages.total_ms, "times_real_time": self.stages.times_real_time}
        return out
