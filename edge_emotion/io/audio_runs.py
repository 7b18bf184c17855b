"""The one audio resampler of every reader: decoded frames -> float32 mono at the model's rate, placed by sample.

A run is one FFmpeg resampler fed frame after frame, so its samples are the ones a whole-file resampling gives
(`score`, `predict`, training and a file streamed get the same samples). Two options:

- `restart` (a live source): a frame that does not follow the previous one (it starts more than half a frame away
  from where that one ended, or changes format) flushes the run and starts a new one at its own time (lost packets,
  a jump). Without it there is one run, from the first frame.
- `cut` (a chunk decoded from a keyframe): its audio decoder starts without the previous frame's overlap, so the
  first frame after the seek is dropped, and the run is fed from the first sample that is a multiple of
  in_rate / gcd(in_rate, out_rate) into the recording, where the whole-file resampler is at the same phase; its
  first RESAMPLER_WARMUP output samples, computed on a silent history, are not usable (AudioBuffer.usable).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import av
import numpy as np

RESAMPLER_WARMUP = 64  # a cut's first resampled samples that its resampler's silent history reaches (it is ~30)


class SeekMissed(Exception):
    """A chunk's seek landed past its keyframe, or its audio started after what it needs: decode from the start."""


def mono_resampler(sample_rate: int) -> av.AudioResampler:
    """The one resampler setting of every driver: float32 mono at the model's rate."""
    return av.AudioResampler(format="flt", layout="mono", rate=sample_rate)


class AudioBuffer:
    """The resampled audio from sample `start` on, in the chunks it arrived in."""

    def __init__(self, start: int = 0) -> None:
        self.chunks: list[np.ndarray] = []
        self.start = self.end = start  # sample index of the first sample held / after the last sample received
        self.usable = start  # samples before this one are not the whole file's (a chunk's resampler warm-up)

    def append(self, samples: np.ndarray) -> None:
        self.chunks.append(samples)
        self.end += len(samples)

    def samples(self) -> np.ndarray:
        """[end - start] float32: everything held."""
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)

    def take(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) of the recording, cut at what has arrived; everything before `a` is dropped."""
        if a < self.usable:
            raise SeekMissed(f"audio from sample {a} is needed, the chunk's starts at {self.usable}")
        held = self.samples()  # samples [start, end)
        out = held[a - self.start : max(a, b) - self.start].copy()
        self.chunks, self.start = [held[a - self.start :]], a
        return out


class AudioRuns:
    """Audio frames -> (start sample, [S] float32 mono at `rate`) pieces; with `keep`, also held in `buffer`."""

    def __init__(self, rate: int, *, restart: bool = False, cut: bool = False, keep: bool = False) -> None:
        self.rate, self.restart = rate, restart
        self.resampler: av.AudioResampler | None = None
        self.expected: float | None = None  # time the next frame should start at (restart)
        self.shape: tuple[Any, ...] = ()  # (rate, format, layout) of the current run's frames
        self.position = 0  # sample index of the next resampled sample
        self.waiting = cut  # a cut's run is not placed yet (its first frame is dropped)
        self.dropped = 0
        self.buffer: AudioBuffer | None = AudioBuffer() if keep else None
        if cut and self.buffer is not None:  # nothing is usable before the run is placed (else: decode from the start)
            self.buffer.usable = sys.maxsize

    def add(self, frame: av.AudioFrame, t: float | None = None) -> list[tuple[int, np.ndarray]]:
        """The pieces the frame completes (maybe none yet: the resampler keeps a few). `t`: the frame's time in
        seconds, sample t x rate (a live source's stream clock; a cut's time into the recording)."""
        if self.waiting:
            aligned = self._aligned(frame, t)
            if aligned is None:
                return []
            frame, t = aligned, None
        pieces: list[tuple[int, np.ndarray]] = []
        if self.restart or self.resampler is None:  # one run from the first frame needs no bookkeeping per frame
            shape = (frame.sample_rate, frame.format.name, frame.layout.name)
            seconds = frame.samples / frame.sample_rate
            follows = self.resampler is not None and shape == self.shape and (
                t is None or self.expected is None or abs(t - self.expected) <= seconds / 2
            )
            if not follows:
                pieces += self.flush()
                self.resampler = mono_resampler(self.rate)
                self.shape = shape
                self.position = self.position if t is None else round(t * self.rate)
            if t is not None:
                self.expected = t + seconds
            elif self.expected is not None:
                self.expected += seconds
        assert self.resampler is not None
        return pieces + self._place(self.resampler.resample(frame))

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """The resampler's last samples (the end of a run)."""
        if self.resampler is None:
            return []
        pieces = self._place(self.resampler.resample(None))
        self.resampler, self.expected = None, None
        return pieces

    def _place(self, frames: list[av.AudioFrame]) -> list[tuple[int, np.ndarray]]:
        pieces = []
        for out in frames:
            samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)  # [S]
            pieces.append((self.position, samples))
            self.position += len(samples)
            if self.buffer is not None:
                self.buffer.append(samples)
        return pieces

    def _aligned(self, frame: av.AudioFrame, t: float | None) -> av.AudioFrame | None:
        """The frame from its first sample at the whole-file resampler's phase, the run placed there; None: wait."""
        self.dropped += 1
        if self.dropped == 1 or t is None or frame.pts is None or frame.time_base is None:
            return None
        rate_in = frame.sample_rate
        first = round(t * rate_in)  # input samples into the recording
        skip = -first % (rate_in // math.gcd(rate_in, self.rate))
        if skip >= frame.samples:
            return None
        data: Any = frame.to_ndarray()  # [channels, samples] planar, [1, samples x channels] packed
        step = 1 if frame.format.is_planar else len(frame.layout.channels)
        cut = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, skip * step :]), format=frame.format.name, layout=frame.layout.name)
        cut.sample_rate, cut.time_base = rate_in, frame.time_base
        cut.pts = frame.pts + round(skip / rate_in / frame.time_base)
        self.position = (first + skip) * self.rate // rate_in
        if self.buffer is not None:
            self.buffer = AudioBuffer(self.position)
            self.buffer.usable = self.position + RESAMPLER_WARMUP
        self.waiting = False
        return cut
