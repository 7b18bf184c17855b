"""Where a stream's results go (its sinks: one JSON line per window and person, through run/codec.py), and the
run's summary.

An event is run/result.py's `Result` of kind "stream" (the fields of a `score --window` row: path is the source,
n_windows null, t_start and t_end stream seconds, 0 at the run's first frame and going on across reconnects), with
its live fields (`Live`):
- epoch: 0, then +1 after each reconnect or gap in the video (a window never spans two epochs);
- t_wall_end: the wall-clock time of the window's end, ISO-8601 in UTC with milliseconds
  ("2025-06-01T12:00:03.250+00:00"): source.StreamClock.wall(t_end). For a live source that is when the
  window's last instant arrived by the least-delayed path seen so far; for a file read without --realtime,
  the run's start plus t_end (when it would have arrived at its own pace). It never decreases;
- latency_ms: wall time from the arrival of the window's last input (its last segment's frame or the end of
  that segment's audio window, d/2 after the frame) to the event being written;
- dropped_frames (cumulative).
With --faces all a window has one event per person.

Each line is one write() of a whole line, then fsync (0.2 ms here), so a killed
run leaves whole lines; a write that fails half way (a full disk) is cut back
to the last whole line before the error is raised. `read_events` skips a torn
last line all the same, should one ever exist.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np

from edge_emotion.errors import EdgeEmotionError
from edge_emotion.run.codec import FIELDS, LIVE_FIELDS, json_line
from edge_emotion.run.result import Result

EVENT_FIELDS = (*FIELDS, *LIVE_FIELDS)  # an event line's keys, in order


class EventWriter(Protocol):
    """A sink of results."""

    def write(self, event: Result) -> None: ...

    def close(self) -> None: ...


class EventsFile:
    """JSON lines at `path` (replaced at the start of the run), each written whole and flushed to disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise EdgeEmotionError(f"{self.path}: cannot write the events here ({exc.strerror or exc})") from exc
        if not stat.S_ISREG(os.fstat(self._fd).st_mode) and not stat.S_ISFIFO(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            raise EdgeEmotionError(f"{self.path}: the events must go to a regular file or a pipe")
        self._size = 0

    def write(self, event: Result) -> None:
        data = json_line(event).encode("utf-8")
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
            if stat.S_ISREG(os.fstat(self._fd).st_mode):
                os.fsync(self._fd)
        except OSError as exc:
            if written and stat.S_ISREG(os.fstat(self._fd).st_mode):
                os.ftruncate(self._fd, self._size)  # no torn line: back to the last whole one
            raise EdgeEmotionError(
                f"{self.path}: cannot write events ({exc.strerror or exc}); the lines already written are whole"
            ) from exc
        self._size += len(data)

    def close(self) -> None:
        os.close(self._fd)


class LineWriter:
    """JSON lines to a text stream (stdout in a pipe), flushed per line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def write(self, event: Result) -> None:
        self.stream.write(json_line(event))
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """The whole lines of an events file as JSON objects (codec.from_record makes them Results; a torn last line,
    if any, is left out)."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]  # after the last "\n": empty or torn


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 90, 99)) -> dict[str, float | None]:
    """{"p50": ..., ...} of `values` (None when there are none)."""
    if not values:
        return {f"p{q:g}": None for q in qs}
    return {f"p{q:g}": round(float(v), 1) for q, v in zip(qs, np.percentile(np.asarray(values, float), qs))}


@dataclass
class StreamSummary:
    """What a stream run did: events, stream time, work, latency, drops, and how much of real time inference used."""

    source: str = ""
    events: int = 0
    stream_s: float = 0.0  # stream seconds received
    segments: int = 0  # segments computed (frame, faces, spectrogram): each once
    backend_rows: int = 0  # face crops through the backend: each (segment, person) once
    latencies_ms: list[float] = field(default_factory=list)
    end_lags_ms: list[float] = field(default_factory=list)  # live: event written minus t_wall_end (per window)
    dropped_frames: int = 0
    skipped_windows: int = 0  # windows not reported because inference was behind
    processing_s: float = 0.0  # wall seconds of segments (frames, faces, spectrogram) + backend + consensus
    stages: dict[str, float] = field(default_factory=dict)  # the same, by stage
    epochs: int = 0  # window grids: 1 + reconnects + gaps in the video
    reconnects: int = 0
    ended: str = ""  # why the run ended
    wall_s: float = 0.0

    @property
    def real_time_margin(self) -> float | None:
        """Inference seconds per stream second: below 1 the machine keeps up with the stream."""
        return self.processing_s / self.stream_s if self.stream_s > 0 else None

    def to_dict(self) -> dict[str, Any]:
        margin = self.real_time_margin
        return {
            "source": self.source,
            "events": self.events,
            "stream_s": round(self.stream_s, 3),
            "segments": self.segments,
            "backend_rows": self.backend_rows,
            "latency_ms": percentiles(self.latencies_ms),
            "end_lag_ms": percentiles(self.end_lags_ms),
            "dropped_frames": self.dropped_frames,
            "skipped_windows": self.skipped_windows,
            "inference_s_per_stream_s": None if margin is None else round(margin, 4),
            "processing_s": round(self.processing_s, 3),
            "stages_s": {k: round(v, 3) for k, v in self.stages.items()},
            "epochs": self.epochs,
            "reconnects": self.reconnects,
            "ended": self.ended,
            "wall_s": round(self.wall_s, 3),
        }
