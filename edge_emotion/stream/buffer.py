"""The bounded buffer between the decode threads and the inference loop: the last few seconds of a stream.

Decoded video frames wait here with their stream time (seconds) and their arrival time
(time.monotonic()), in PyAV's own decoded form: only the frame of each segment is converted to
RGB, by the loop. The sound waits as float32 mono samples at the model's rate, already resampled by
the decode thread (source.py), placed by sample index on the stream clock (sample i is stream time
i / rate), so a segment's audio window is a slice, whatever the source's packets were.

Two policies, both with memory bounded by construction:
- live (a network stream, a device, a `--realtime` file): the decoder never waits; what is
  more than `span_s` behind the newest is evicted, and so is what the loop no longer needs (Demand).
  When inference falls behind, the loop goes to the newest complete window (scheduler.py).
- lossless (a file read as fast as it decodes): the decoder waits while the buffer is full and the
  loop's next segment is already complete, so every segment and window is evaluated.
A hard cap on the number of items (4 spans' worth) holds whatever the timestamps say (a stream whose
clock stands still, audio muxed seconds late).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

HARD_CAP_SPANS = 4  # items beyond this many spans are evicted even when still needed (counted as lost)


@dataclass(frozen=True)
class VideoItem:
    time: float  # stream seconds
    arrival: float  # time.monotonic() when it was decoded
    seq: int  # 0, 1, 2 ... over the whole run: counts frames even after they are evicted
    frame: Any  # av.VideoFrame


@dataclass(frozen=True)
class AudioChunk:
    start: int  # sample index on the stream clock of samples[0]
    samples: np.ndarray  # [S] float32 mono at the model's rate
    arrival: float

    @property
    def end(self) -> int:
        return self.start + len(self.samples)


@dataclass(frozen=True)
class Demand:
    """What the loop's next segment needs: frames from video_from and samples from audio_from are kept; it is
    complete once video reaches video_until and the sound audio_until."""

    video_from: float
    audio_from: int
    video_until: float
    audio_until: int


class LiveBuffer:
    """Thread-safe rings of video frames and sound; `cond` wakes the loop on every push."""

    def __init__(self, span_s: float, fps: float, sample_rate: int, lossless: bool) -> None:
        if span_s <= 0 or fps <= 0 or sample_rate <= 0:
            raise ValueError(f"need a positive span, frame rate and sample rate, got {span_s} s, {fps} fps, {sample_rate} Hz")
        self.span_s = span_s
        self.lossless = lossless
        self.fps = fps
        self.sample_rate = sample_rate
        self.max_video = int(span_s * fps) + 4  # lossless: the decoder waits beyond this
        self.cond = threading.Condition()
        self.video: deque[VideoItem] = deque()
        self.audio: deque[AudioChunk] = deque()
        self.epoch = 0  # +1 on every reset (a reconnect): the loop restarts its grid
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

    def push_audio(self, start: int, samples: np.ndarray, halt: threading.Event) -> None:
        """Samples from sample index `start`; what overlaps sound already held is left out (the first copy stays)."""
        with self.cond:
            while self.lossless and self._audio_span() >= self.span_s * self.sample_rate and self._demand_met() and not halt.is_set():
                self.cond.wait(0.1)
            end = self.audio[-1].end if self.audio else start
            if start < end:
                samples, start = samples[end - start :], end
            now = time.monotonic()
            if len(samples):
                self.audio.append(AudioChunk(start, samples, now))
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

    def audio_end(self) -> int | None:
        """Sample index after the newest sample held (None before any)."""
        return self.audio[-1].end if self.audio else None

    def seq_through(self, t: float) -> int:
        """Sequence number of the newest frame at or before stream time t (-1 before any; evicted ones assumed)."""
        for item in reversed(self.video):
            if item.time <= t:
                return item.seq
        return self.video[0].seq - 1 if self.video else self.next_seq - 1

    def take_audio(self, a: int, b: int, floor: int) -> tuple[np.ndarray, float | None]:
        """[b - a] float32 samples [a, b), zeros where none are held or before `floor`; and the arrival of the chunk
        holding the last sample there is (None without any)."""
        out = np.zeros(b - a, np.float32)
        arrival = None
        lo = max(a, floor)
        for chunk in self.audio:
            s, e = max(lo, chunk.start), min(b, chunk.end)
            if s < e:
                out[s - a : e - a] = chunk.samples[s - chunk.start : e - chunk.start]
                arrival = chunk.arrival
        return out, arrival

    # ------------------------------------------------------------------ internals

    def _audio_span(self) -> int:
        return self.audio[-1].end - self.audio[0].start if self.audio else 0

    def _demand_met(self) -> bool:
        """Whether the loop has what it needs for its next segment (so waiting for it cannot deadlock)."""
        d = self.demand
        if d is None or not self.video:
            return False
        audio_done = "audio" in self.ended or (bool(self.audio) and self.audio[-1].end >= d.audio_until)
        return self.video[-1].time >= d.video_until and audio_done

    def _evict(self) -> None:
        d, cap = self.demand, HARD_CAP_SPANS * self.max_video
        video_from = d.video_from if d else -float("inf")
        audio_from = d.audio_from if d else -(1 << 62)
        if not self.lossless:  # live: also whatever is a span behind the newest
            if self.video:
                video_from = max(video_from, self.video[-1].time - self.span_s)
            if self.audio:
                audio_from = max(audio_from, self.audio[-1].end - round(self.span_s * self.sample_rate))
        while len(self.video) > 1 and self.video[1].time <= video_from:  # keep the frame on screen at video_from
            self.video.popleft()
        while len(self.video) > cap:
            if self.lossless:
                self.lost += 1
            self.video.popleft()
        while self.audio and self.audio[0].end <= audio_from:
            self.audio.popleft()
        while self._audio_span() > HARD_CAP_SPANS * self.span_s * self.sample_rate:
            self.audio.popleft()
