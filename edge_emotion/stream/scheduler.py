"""Which window the loop evaluates next, and what it drops when inference falls behind a live source.

Behind a live source the scheduler hands out the newest complete window instead of the next
one: latency stays bounded and the frames of the skipped windows are counted as dropped,
oldest first. A file read as fast as it decodes (a lossless buffer) evaluates every window:
the scheduler tells the buffer which frames the next window needs (Demand) and counts the
ones it lost all the same. A reopened source starts a new epoch: a new Schedule from its
first frame. The stream ends here too: the source's end, --duration, a stop request, or
the watchdog's stall check.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_emotion.stream.buffer import AudioItem, Demand, LiveBuffer, VideoItem
from edge_emotion.stream.events import StreamSummary
from edge_emotion.stream.options import StreamOptions
from edge_emotion.stream.window import Schedule

WATCHDOG_GRACE_S = 2.0  # the loop's own stall check, should the decoder's read timeout never fire


@dataclass(frozen=True)
class DueWindow:
    """A complete window to evaluate: window k of `schedule`, with its frames and its sound."""

    k: int
    schedule: Schedule
    video: list[VideoItem]
    audio: list[AudioItem]


class WindowScheduler:
    """The consumer's side of the buffer: waits for complete windows and hands them out, skipping when behind.

    Counts drops, skipped windows and reconnects in `summary`; `shape` gives fps, frames per window and hop
    (its t0 is replaced by each epoch's first frame).
    """

    def __init__(self, buffer: LiveBuffer, shape: Schedule, options: StreamOptions, live: bool,
                 summary: StreamSummary, stop: threading.Event, log: Callable[[str], None]) -> None:
        self.buffer, self.shape, self.options, self.live = buffer, shape, options, live
        self.summary, self.stop, self.log = summary, stop, log
        self.schedule: Schedule | None = None
        self.epoch = 0
        self.k_due = 0  # the next window to evaluate
        self.covered_seq = -1  # newest frame that belonged to an evaluated window
        self.lost_seen = 0
        self.done_s = 0.0  # stream seconds of earlier epochs (before a reconnect)
        self.duration_end: float | None = None
        self.audio_end_told = False

    def next_window(self) -> DueWindow | str:
        """The next window to evaluate, or why the stream ended; blocks (holding the buffer's lock while it looks)."""
        b = self.buffer
        with b.cond:
            while True:
                if b.error is not None:
                    raise b.error
                if self.stop.is_set():
                    return "interrupted"
                if b.epoch != self.epoch:
                    self._new_epoch()
                if self.schedule is None and b.video:
                    self._start_schedule(b.video[0])
                if self.schedule is not None:
                    due = self._ready()
                    if due is not None:
                        return due
                if "video" in b.ended:
                    return b.ended["video"]
                if "audio" in b.ended and not self.audio_end_told:
                    self.audio_end_told = True
                    self.log(f"the sound ended ({b.ended['audio']}); going on without it (windows count as silent)")
                if self.live and not self.options.reconnect and time.monotonic() - b.last_arrival > self.options.timeout + WATCHDOG_GRACE_S:
                    return f"no data for {self.options.timeout:g} s: the source stopped or was lost"
                b.cond.wait(0.1)

    def stream_seconds(self) -> float:
        """Stream seconds received so far, over every epoch."""
        return self.done_s + self._epoch_seconds()

    def _ready(self) -> DueWindow | str | None:
        """The window to evaluate now, a reason to end, or None (wait)."""
        b, s = self.buffer, self.schedule
        assert s is not None
        last_k = math.inf
        if self.duration_end is not None:
            last_k = math.floor((self.duration_end + s.tolerance - s.frames / s.fps - s.t0) / s.hop + 1e-9)
            if self.k_due > last_k:
                return f"--duration {self.options.duration:g} s reached"
        k = min(s.newest_complete(b.latest_video(), b.latest_audio(), "audio" in b.ended), last_k)
        if k < self.k_due:
            return None
        k = int(k) if self.live else self.k_due
        if k > self.k_due:  # behind: skip to the newest window; the frames of the skipped ones are dropped
            through = b.seq_through(s.last_slot(k - 1) + s.tolerance)
            self.summary.dropped_frames += max(0, through - self.covered_seq)
            self.summary.skipped_windows += k - self.k_due
        video, audio = b.window(s.start(k), s.last_slot(k) + s.tolerance, s.end(k))
        self.covered_seq = max(self.covered_seq, b.seq_through(s.last_slot(k) + s.tolerance))
        self.k_due = k + 1
        if b.lossless:
            b.set_demand(Demand(s.start(k + 1), s.last_slot(k + 1) - s.tolerance, s.end(k + 1)))
            self.summary.dropped_frames += b.lost - self.lost_seen
            self.lost_seen = b.lost
        if not video or video[-1].time < s.start(k) - s.tolerance:
            return None  # a gap in the stream: no frame inside this window
        return DueWindow(k, s, video, audio)

    def _start_schedule(self, first: VideoItem) -> None:
        self.schedule = Schedule(first.time, self.shape.fps, self.shape.frames, self.shape.hop)
        self.k_due, self.covered_seq = 0, first.seq - 1
        if self.duration_end is None and self.options.duration is not None:
            self.duration_end = first.time + self.options.duration
        if self.buffer.lossless:
            s = self.schedule
            self.buffer.set_demand(Demand(s.start(0), s.last_slot(0) - s.tolerance, s.end(0)))

    def _new_epoch(self) -> None:
        """The source was reopened: its old frames are gone; a new schedule starts at its first frame."""
        self.done_s += self._epoch_seconds()
        self.epoch = self.buffer.epoch
        self.schedule = None
        self.summary.reconnects += 1

    def _epoch_seconds(self) -> float:
        latest = self.buffer.latest_video()
        if self.schedule is None or latest is None:
            return 0.0
        return max(0.0, latest - self.schedule.t0 + 1 / self.schedule.fps)
