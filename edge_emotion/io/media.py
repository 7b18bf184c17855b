"""The one media reader: `demux`, the one loop over a container's packets (a file from its first packet or from a
keyframe cut, a live source until halted), and `FramePass`, one pass over a recording that converts its planned
frames and resamples its audio as it arrives (io/audio_runs.py, the one resampler; a cut's audio is placed there to
the sample). Opening, stream checks and the errors are io/container.py's; `reading` maps PyAV's errors, for the
loop and for the decoding its consumers do.

A cut decodes from its keyframe: every frame from there is the frame a decoding from the start gives. A seek that
lands past the keyframe, or audio that starts too late, raises SeekMissed: the caller decodes from the first packet.
The frames and samples are the ones open_clip and read_frames give (the same packets, the same resampler fed the
same audio frames in the same order).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from edge_emotion import defaults
from edge_emotion.config import SpectrogramParams
from edge_emotion.errors import VideoError
from edge_emotion.io.audio_runs import AudioBuffer, AudioRuns, SeekMissed
from edge_emotion.io.container import DECODE_ERRORS, open_container, reading, reason, upright
from edge_emotion.io.frame_times import FrameTimes
from edge_emotion.preprocess.plan import Segment

__all__ = ["AudioBuffer", "Cut", "FramePass", "SeekMissed", "demux"]

MAX_AV_SKEW_S = defaults.MAX_AV_SKEW_S  # video this far past the audio: the audio ended early (the rest is silent)


@dataclass(frozen=True)
class Cut:
    """A keyframe to start decoding from: every packet before it shows earlier, every one after it later."""

    frame: int  # its place among the video packets (= frames in display order, as open_clip counts them)
    pts: int  # in the video stream's time base
    time_s: float


def demux(
    container: av.container.InputContainer, streams: Sequence[av.stream.Stream | None], name: str | Path, *,
    start: Cut | None = None, halt: threading.Event | None = None,
) -> Generator[av.Packet, None, None]:
    """The packets of `streams` (None: left out) in file order, PyAV's errors mapped by `reading(name)`.

    `start`: from that keyframe of the first stream (the video): the container is sought to it and the video's
    packets before it skipped (SeekMissed when the seek lands past it or it never comes). `halt`: stop once set.
    """
    wanted = [s for s in streams if s is not None]
    video = wanted[0]
    with reading(name):
        if start is not None:
            container.seek(start.pts, stream=video, backward=True, any_frame=False)
        target = None if start is None else start.pts  # skip the video packets before this one
        for packet in container.demux(*wanted):
            if halt is not None and halt.is_set():
                return
            if target is not None and packet.stream is video:
                if packet.pts is not None and packet.pts > target:
                    raise SeekMissed("the seek landed past the keyframe")
                if packet.pts != target:
                    continue
                target = None
            yield packet
        if target is not None:
            raise SeekMissed("the keyframe never came after the seek")


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
        self.origin = origin  # seconds: the recording's first audio sample (a cut places its audio by it)
        self.audio = AudioRuns(self.rate, cut=start is not None, keep=True)
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
            video_ok = True
            with reading(self.path), closing(demux(container, (video, audio), self.path, start=self.start)) as packets:
                for packet in packets:  # closed before the container, also when the pass stops early
                    if packet.stream is video:
                        if video_ok:
                            video_ok, frames = self._decode_video(packet)
                            yield from frames
                    elif packet.size:  # as open_clip: the audio decoder is never flushed with an empty packet
                        for sound in packet.decode():
                            assert isinstance(sound, av.AudioFrame)  # an audio packet decodes to audio
                            self.audio.add(sound, self._into_recording(sound))
                    if self._has_all():
                        break
                else:
                    self.audio.flush()
        finally:
            container.close()
        self.ended = True
        if self.first_frame is None:
            raise VideoError(self.path, "video frames do not decode")
        stand_in = self.newest if self.newest is not None else self.first_frame
        for frame in sorted(f for f in self.wanted if f >= self.decoded):
            for p in self.wanted[frame]:
                yield p, stand_in

    def _into_recording(self, sound: av.AudioFrame) -> float | None:
        """Seconds of the frame from the recording's first audio sample (a cut places its audio by it)."""
        if not self.audio.waiting or self.origin is None or sound.pts is None or sound.time_base is None:
            return None
        return float(sound.pts * sound.time_base) - self.origin

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

    @property
    def buffer(self) -> AudioBuffer:
        """The resampled audio received so far (placed in the recording)."""
        assert self.audio.buffer is not None  # kept: AudioRuns(keep=True)
        return self.audio.buffer

    def _has_all(self) -> bool:
        """Every wanted frame is out, and the audio the scored segments need (the resampler's flush is not needed)."""
        audio_in = not self.has_audio or (not self.audio.waiting and self.buffer.end >= self.audio_until)
        return self.decoded > self.last_frame and audio_in

    def audio_ready(self, position: int, window: int) -> bool:
        """Whether the audio window of `position` has arrived (or never will: the audio ended or lags far behind)."""
        if self.ended or not self.has_audio:
            return True
        if self.audio.waiting:  # a chunk's audio is not placed yet
            return False
        needed = round(self.segments[position].centre * self.rate) - window // 2 + window
        lag = float(self.times.t[min(self.decoded, self.times.count) - 1]) - self.buffer.end / self.rate
        return self.buffer.end >= needed or lag > MAX_AV_SKEW_S
