"""The bounded buffer between the decode threads and the inference loop: the last few seconds of a stream.

Decoded video and audio frames wait here with their stream time (seconds) and
their arrival time (time.monotonic()). Frames stay in PyAV's own decoded form:
only the N planned frames of a window are converted to RGB, by the loop.

Two policies, both with memory bounded by construction:
- live (a network stream, a device, a `--realtime` file): the decoder never
  waits; frames more than `span_s` behind the newest are evicted. When inference
  falls behind, the loop takes the newest complete window, and the frames of the
  windows it skipped count as dropped (`run.py`): nothing queues up.
- lossless (a file read as fast as it decodes): the decoder waits while the
  buffer is full and the loop's next window is already complete, so every
  window is evaluated.
A hard cap on the number of items (4 spans' worth) holds whatever the
timestamps say (a stream whose clock stands still, audio muxed seconds late).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

HARD_CAP_SPANS = 4  # items beyond this many spans are evicted even when still needed (counted as lost)


@dataclass(frozen=True)
class VideoItem:
    time: float  # stream seconds
    arrival: float  # time.monotonic() when it was decoded
    seq: int  # 0, 1, 2 ... over the whole run: counts frames even after they are evicted
    frame: Any  # av.VideoFrame


@dataclass(frozen=True)
class AudioItem:
    time: float  # stream seconds of the first sample
    end: float  # stream seconds after the last sample
    arrival: float
    frame: Any  # av.AudioFrame


@dataclass(frozen=True)
class Demand:
    """Lossless mode: what the loop's next window needs (stream seconds)."""

    keep_from: float  # frames before this are no longer needed
    video_until: float  # the window is complete once video reaches this time ...
    audio_until: float  # ... and audio this one


class LiveBuffer:
    """Thread-safe rings of video and audio items; `cond` wakes the loop on every push."""

    def __init__(self, span_s: float, fps: float, lossless: bool) -> None:
        if span_s <= 0 or fps <= 0:
            raise ValueError(f"need a positive span and frame rate, got span {span_s} s at {fps} fps")
        self.span_s = span_s
        self.lossless = lossless
        self.fps = fps
        self.max_video = int(span_s * fps) + 4  # lossless: the decoder waits beyond this
        self.cond = threading.Condition()
        self.video: deque[VideoItem] = deque()
        self.audio: deque[AudioItem] = deque()
        self.epoch = 0  # +1 on every reset (a reconnect): the loop restarts its schedule
        self.next_seq = 0
        self.last_arrival = time.monotonic()
        self.lost = 0  # lossless mode: needed frames evicted by the hard cap
        self.ended: dict[str, str] = {}  # role ("video" / "audio") -> why its decoder stopped
        self.error: BaseException | None = None  # an unexpected exception in a decode thread
        self.demand: Demand | None = None

    # ------------------------------------------------------------------ decoder side

    def push_video(self, t: float, frame: Any, halt: threading.Event) -> None:
        with self.cond:
            while self.lossless and len(self.video) >= self.max_video and self._demand_met() and not halt.is_set():
                self.cond.wait(0.1)
            now = time.monotonic()
            self.video.append(VideoItem(t, now, self.next_seq, frame))
            self.next_seq += 1
            self.last_arrival = now
            self._evict()
            self.cond.notify_all()

    def push_audio(self, t: float, end: float, frame: Any, halt: threading.Event) -> None:
        with self.cond:
            while self.lossless and self._audio_span() >= self.span_s and self._demand_met() and not halt.is_set():
                self.cond.wait(0.1)
            now = time.monotonic()
            self.audio.append(AudioItem(t, end, now, frame))
            self.last_arrival = now
            self._evict()
            self.cond.notify_all()

    def finish(self, role: str, reason: str) -> None:
        """A decoder stopped for good: `reason` says why (end of stream, no data, an error)."""
        with self.cond:
            self.ended.setdefault(role, reason)
            self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            self.error = self.error or exc
            self.cond.notify_all()

    def reset(self) -> None:
        """Forget everything buffered (the source was reopened: its old frames cannot join new windows)."""
        with self.cond:
            self.video.clear()
            self.audio.clear()
            self.demand = None
            self.epoch += 1
            self.cond.notify_all()

    # ------------------------------------------------------------------ loop side (hold `cond`)

    def set_demand(self, demand: Demand) -> None:
        self.demand = demand
        self._evict()
        self.cond.notify_all()

    def latest_video(self) -> float | None:
        return self.video[-1].time if self.video else None

    def latest_audio(self) -> float | None:
        return self.audio[-1].end if self.audio else None

    def seq_through(self, t: float) -> int:
        """Sequence number of the newest frame at or before stream time t (-1 before any; evicted ones assumed)."""
        for item in reversed(self.video):
            if item.time <= t:
                return item.seq
        return self.video[0].seq - 1 if self.video else self.next_seq - 1

    def window(self, t_start: float, video_until: float, audio_until: float) -> tuple[list[VideoItem], list[AudioItem]]:
        """Video items from the last one at or before t_start to video_until; audio items overlapping [t_start, audio_until)."""
        video = [v for v in self.video if v.time <= video_until]
        first = max((i for i, v in enumerate(video) if v.time <= t_start), default=0)
        audio = [a for a in self.audio if a.end > t_start and a.time < audio_until]
        return video[first:], audio

    # ------------------------------------------------------------------ internals

    def _audio_span(self) -> float:
        return self.audio[-1].end - self.audio[0].time if self.audio else 0.0

    def _demand_met(self) -> bool:
        """Whether the loop has what it needs for its next window (so waiting for it cannot deadlock)."""
        d = self.demand
        if d is None or not self.video:
            return False
        audio_done = "audio" in self.ended or (bool(self.audio) and self.audio[-1].end >= d.audio_until)
        return self.video[-1].time >= d.video_until and audio_done

    def _evict(self) -> None:
        cap = HARD_CAP_SPANS * self.max_video
        if self.lossless:
            keep_from = self.demand.keep_from - 2 / self.fps if self.demand else None
            while self.video and keep_from is not None and self.video[0].time < keep_from:
                self.video.popleft()
            while len(self.video) > cap:
                self.lost += 1
                self.video.popleft()
            while self.audio and keep_from is not None and self.audio[0].end < keep_from:
                self.audio.popleft()
            while self._audio_span() > HARD_CAP_SPANS * self.span_s:
                self.audio.popleft()
            return
        while self.video and (self.video[-1].time - self.video[0].time > self.span_s or len(self.video) > cap):
            self.video.popleft()
        while self.audio and self.audio[-1].end - self.audio[0].end > self.span_s:
            self.audio.popleft()
