"""What a scoring run did, for the CLI's closing lines: counts over the whole results file, speed of this run.

Apart from the results file because the local and the Ray scorer fill it the same
way, and counting needs nothing but rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Summary:
    """What a scoring run did: counts over the whole results file, speed over this run."""

    rows: int = 0
    scored: int = 0  # clips scored by this run
    skipped: int = 0  # clips already in the file (resume)
    labels: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # error cause -> count
    seconds: float = 0.0  # wall time of this run
    media_seconds: float = 0.0  # duration of the clips this run scored
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage, summed over this run's clips

    @property
    def clips_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    @property
    def times_real_time(self) -> float:
        return self.media_seconds / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "scored": self.scored,
            "skipped": self.skipped,
            "labels": self.labels,
            "statuses": self.statuses,
            "failures": self.failures,
            "seconds": round(self.seconds, 3),
            "clips_per_second": round(self.clips_per_second, 3),
            "times_real_time": round(self.times_real_time, 3),
            "stages_s": {k: round(v, 3) for k, v in self.stages.items()},
        }

