"""One pass over a media file (from its first packet, or from a keyframe cut): the planned frames, in order, and the
audio resampled as it arrives, placed by sample in the recording.

A cut decodes from its keyframe (every frame from there is the frame a decoding from the start gives). Its
audio decoder starts without the previous frame's overlap, so the first audio frame after the seek is
dropped, and FFmpeg's resampler is fed from the first sample that is a multiple of in_rate / gcd(in_rate,
out_rate) into the recording, where the whole-file resampler is at the same phase; its first
RESAMPLER_WARMUP output samples, computed on a silent history, are never used. A seek that lands past the
keyframe, or audio that starts too late, raises SeekMissed: the caller decodes from the first packet.
The frames and samples are the ones open_clip and read_frames give (the same packets, the same resampler
fed the same audio frames in the same order).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np

from edge_emotion import defaults
from edge_emotion.config import SpectrogramParams
from edge_emotion.errors import VideoError
from edge_emotion.io.decode import DECODE_ERRORS, open_container, reason, upright
from edge_emotion.io.frame_times import FrameTimes
from edge_emotion.io.probe import Cut
from edge_emotion.preprocess.plan import Segment

MAX_AV_SKEW_S = defaults.MAX_AV_SKEW_S  # video this far past the audio: the audio ended early (the rest is silent)
RESAMPLER_WARMUP = 64  # a cut's first resampled samples that its resampler's silent history reaches (it is ~30)


class SeekMissed(Exception):
    """A chunk's seek landed past its keyframe, or its audio started after what it needs: decode from the start."""


class AudioBuffer:
    """The resampled audio from sample `start` on, in the chunks it arrived in."""

    def __init__(self, start: int = 0) -> None:
        self.chunks: list[np.ndarray] = []
        self.start = self.end = start  # sample index of the first sample held / after the last sample received
        self.usable = start  # samples before this one are not the whole file's (a chunk's resampler warm-up)

    def append(self, samples: np.ndarray) -> None:
        self.chunks.append(samples)
        self.end += len(samples)

    def take(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) of the recording, cut at what has arrived; everything before `a` is dropped."""
        if a < self.usable:
            raise SeekMissed(f"audio from sample {a} is needed, the chunk's starts at {self.usable}")
        held = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)  # samples [start, end)
        out = held[a - self.start : max(a, b) - self.start].copy()
        self.chunks, self.start = [held[a - self.start :]], a
        return out


class AudioFeed:
    """Decoded audio frames -> the resampler -> the buffer; for a chunk, from an aligned sample on (see module doc)."""

    def __init__(self, rate: int, origin: float | None, chunked: bool) -> None:
        self.rate, self.origin = rate, origin
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        self.buffer = AudioBuffer()
        self.waiting = chunked  # a chunk: not fed yet (the first frame after the seek is dropped)
        self.dropped = 0
        if chunked:  # no sample is usable before the buffer is placed in the recording (else: decode from the start)
            self.buffer.usable = sys.maxsize

    def add(self, frame: av.AudioFrame) -> None:
        if self.waiting:
            aligned = self._aligned(frame)
            if aligned is None:
                return
            frame = aligned
        for out in self.resampler.resample(frame):
            self.buffer.append(out.to_ndarray().reshape(-1))

    def flush(self) -> None:
        if self.waiting:
            return
        for out in self.resampler.resample(None):
            self.buffer.append(out.to_ndarray().reshape(-1))

    def _aligned(self, frame: av.AudioFrame) -> av.AudioFrame | None:
        """The frame from its first sample at the whole-file resampler's phase, the buffer placed there; None: wait."""
        self.dropped += 1
        if self.dropped == 1 or frame.pts is None or frame.time_base is None or self.origin is None:
            return None
        rate_in = frame.sample_rate
        first = round((float(frame.pts * frame.time_base) - self.origin) * rate_in)  # input samples into the recording
        period = rate_in // math.gcd(rate_in, self.rate)
        skip = -first % period
        if skip >= frame.samples:
            return None
        data: Any = frame.to_ndarray()  # [channels, samples] planar, [1, samples x channels] packed
        step = 1 if frame.format.is_planar else len(frame.layout.channels)
        cut = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, skip * step :]), format=frame.format.name, layout=frame.layout.name)
        cut.sample_rate, cut.time_base = rate_in, frame.time_base
        cut.pts = frame.pts + round(skip / rate_in / frame.time_base)
        start = (first + skip) * self.rate // rate_in
        self.buffer = AudioBuffer(start)
        self.buffer.usable = start + RESAMPLER_WARMUP
        self.waiting = False
        return cut


class FramePass:
    """One pass over a recording (from its first packet or a cut): the planned frames of `positions`, in order."""

    def __init__(self, path: Path, times: FrameTimes, segments: Sequence[Segment], positions: range, audio: SpectrogramParams,
                 start: Cut | None, origin: float | None, audio_until: int) -> None:
        """`audio_until`: the sample after the last one the scored segments need; the pass stops there once the
        frames are in too (a chunk early in a long file never reads the rest of it)."""
        self.path, self.times, self.start, self.audio_until = path, times, start, audio_until
        self.has_audio = True  # False once the file shows it has no audio stream: its segments are silent
        self.segments = segments  # per position: its planned frame and audio centre
        self.positions = positions
        self.rate = audio.sample_rate
        self.wanted: dict[int, list[int]] = {}  # planned frame -> its positions (a very short file repeats frames)
        for p in positions:
            self.wanted.setdefault(self.segments[p].frame, []).append(p)
        self.audio = AudioFeed(self.rate, origin, start is not None)
        self.decoded = start.frame if start else 0  # index of the next video frame out of the decoder
        self.newest: np.ndarray | None = None  # read_frames' stand-in for frames a truncated file lacks
        self.first_frame: np.ndarray | None = None
        self.last_frame = max(self.wanted)
        self.ended = False  # the pass is over: everything it needs has arrived, or the file ended

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(position, [H, W, 3] uint8 RGB frame) for every position, in order; VideoError where open_clip raises."""
        container = open_container(self.path)
        try:
            video = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio else None
            self.has_audio = audio is not None
            if self.start is not None:
                container.seek(self.start.pts, stream=video, backward=True, any_frame=False)
            target = None if self.start is None else self.start.pts  # skip the packets before this one
            video_ok = True
            for packet in container.demux(*[s for s in (video, audio) if s is not None]):
                if packet.stream is video:
                    if target is not None:
                        if packet.pts is not None and packet.pts > target:
                            raise SeekMissed("the seek landed past the keyframe")
                        if packet.pts != target:
                            continue
                        target = None
                    if video_ok:
                        video_ok, frames = self._decode_video(packet)
                        yield from frames
                elif packet.size:  # as open_clip: the audio decoder is never flushed with an empty packet
                    for sound in packet.decode():
                        assert isinstance(sound, av.AudioFrame)  # an audio packet decodes to audio
                        self.audio.add(sound)
                if self._has_all():
                    break
            else:
                self.audio.flush()
            if target is not None:
                raise SeekMissed("the keyframe never came after the seek")
        except (VideoError, SeekMissed):
            raise
        except DECODE_ERRORS as exc:
            raise VideoError(self.path, f"corrupt or truncated stream ({reason(exc)})") from exc
        finally:
            container.close()
        self.ended = True
        if self.first_frame is None:
            raise VideoError(self.path, "video frames do not decode")
        stand_in = self.newest if self.newest is not None else self.first_frame
        for frame in sorted(f for f in self.wanted if f >= self.decoded):
            for p in self.wanted[frame]:
                yield p, stand_in

    def _decode_video(self, packet: av.Packet) -> tuple[bool, list[tuple[int, np.ndarray]]]:
        """Decode one video packet, converting planned frames; False once the video stops decoding (as read_frames)."""
        out: list[tuple[int, np.ndarray]] = []
        try:
            for frame in packet.decode():
                if self.decoded in self.wanted or self.first_frame is None:
                    image = upright(frame)
                    self.first_frame = image if self.first_frame is None else self.first_frame
                    if self.decoded in self.wanted:
                        self.newest = image
                        out += [(p, image) for p in self.wanted[self.decoded]]
                self.decoded += 1
        except DECODE_ERRORS as exc:
            if self.first_frame is None:
                raise VideoError(self.path, f"video frames do not decode ({reason(exc)})") from exc
            return False, out
        return True, out

    def _has_all(self) -> bool:
        """Every wanted frame is out, and the audio the scored segments need (the resampler's flush is not needed)."""
        audio_in = not self.has_audio or (not self.audio.waiting and self.audio.buffer.end >= self.audio_until)
        return self.decoded > self.last_frame and audio_in

    def audio_ready(self, position: int, window: int) -> bool:
        """Whether the audio window of `position` has arrived (or never will: the audio ended or lags far behind)."""
        if self.ended or not self.has_audio:
            return True
        if self.audio.waiting:  # a chunk's audio is not placed yet
            return False
        needed = round(self.segments[position].centre * self.rate) - window // 2 + window
        lag = float(self.times.t[min(self.decoded, self.times.count) - 1]) - self.audio.buffer.end / self.rate
        return self.audio.buffer.end >= needed or lag > MAX_AV_SKEW_S
