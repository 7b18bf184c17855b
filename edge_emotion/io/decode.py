"""Decode a video file into a Clip: stream facts, the mono waveform, and frames on demand.

`open_clip` demuxes every packet (reading the video frames' timestamps without decoding them,
io/frame_times.py) and decodes only the audio; `read_frames` decodes the video and keeps just the frames asked
for (training reads frames this way, clip by clip). Scoring uses `open_clip_frames`: the
same two steps on one open container, the video decoded from the packets the first
step kept (up to KEEP_PACKET_BYTES of them, so a long file never sits in memory: beyond
that the video is read again from the file). Either way only the frames asked for are
converted to RGB, and the numbers are the same.

What a file lacks is said, not hidden: a file without an audio stream is scored as silence, and one that
ends before the duration its header declares (a cut download) as far as it reads; `Clip.problems` names
either, and rows mark them degraded. A file without video, or without any stream, is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from edge_emotion import defaults
from edge_emotion.errors import VideoError
from edge_emotion.io.audio_runs import AudioRuns
from edge_emotion.io.container import (
    DECODE_ERRORS,
    NO_AUDIO,
    checked_frames,
    checked_streams,
    declared_duration,
    file_problem,
    missing_parts,
    open_container,
    reading,
    reason,
    upright,
)
from edge_emotion.io.frame_times import FrameTimes
from edge_emotion.io.media import demux

__all__ = ["NO_AUDIO", "Clip", "file_problem", "open_clip", "open_clip_frames", "read_frames", "upright"]

DEFAULT_SAMPLE_RATE = defaults.SAMPLE_RATE
# Compressed video kept from the demuxing pass for decoding without a second open: a CREMA-D clip is ~100 KB,
# a minute of 1080p H.264 ~20 MB. Beyond this the packets are dropped and the frames read from the file again.
KEEP_PACKET_BYTES = 64 << 20


@dataclass(frozen=True)
class Clip:
    """What the rest of the pipeline needs to know about one video file."""

    path: Path
    fps: float
    frame_count: int
    width: int
    height: int
    waveform: np.ndarray  # [T] float32 mono at sample_rate, t = 0 at the first audio sample
    sample_rate: int
    times: FrameTimes | None = None  # when each frame is shown; None: evenly at fps (a cache written before timestamps)
    problems: tuple[str, ...] = ()  # what the file lacks (NO_AUDIO, cut short): its rows are degraded and say why

    @property
    def frame_times(self) -> FrameTimes:
        """Seconds of each frame from the first one (display order)."""
        return self.times if self.times is not None else FrameTimes.constant(self.frame_count, self.fps)

    @property
    def duration(self) -> float:
        """Video duration in seconds: from the first frame to the end of the last one."""
        return self.frame_times.duration


def open_clip(path: str | Path, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Clip:
    """Read a video's facts and its audio; raise VideoError naming the file and the cause.

    A clip needs both a video and an audio stream: the model sees both modalities.
    """
    path = Path(path)
    container = open_container(path)
    try:
        return _demux(container, path, sample_rate, keep_bytes=0)[0]
    finally:
        container.close()


def open_clip_frames(
    path: str | Path, pick: Callable[[Clip], Iterable[int]], sample_rate: int = DEFAULT_SAMPLE_RATE
) -> tuple[Clip, dict[int, np.ndarray]]:
    """`open_clip`, then `read_frames(clip, pick(clip))`, opening the file once (scoring's per-clip decode).

    `pick` chooses the frames from the clip's facts (the segment plan needs the frame count, known only after
    the demuxing pass). The same Clip and the same frames as the two calls, and the same errors.
    """
    path = Path(path)
    container = open_container(path)
    try:
        clip, packets = _demux(container, path, sample_rate, keep_bytes=KEEP_PACKET_BYTES)
        wanted = sorted(set(int(i) for i in pick(clip)))
        if packets is None or not wanted:
            frames = None
        else:
            frames = _pick_frames(_decode_packets(container.streams.video[0], packets), wanted, path)
    finally:
        container.close()
    return clip, read_frames(clip, wanted) if frames is None else frames



def _demux(
    container: av.container.InputContainer, path: Path, sample_rate: int, keep_bytes: int
) -> tuple[Clip, list[av.Packet] | None]:
    """One pass over the packets: the video frames' timestamps, the audio decoded, the video packets kept while
    they total at most `keep_bytes` (None once they do not: the caller reads the video from the file)."""
    video, audio, fps = checked_streams(container, path)
    pts: list[int | None] = []
    kept_bytes = 0
    packets: list[av.Packet] | None = [] if keep_bytes > 0 else None
    sound = AudioRuns(sample_rate, keep=True)  # one run from the first sample: t = 0 at the first audio sample
    with reading(path):
        for packet in demux(container, (video, audio), path):
            if packet.size == 0:
                continue
            if packet.stream is video:
                pts.append(packet.pts)
                if packets is not None:
                    kept_bytes += packet.size
                    packets.append(packet)
                    if kept_bytes > keep_bytes:
                        packets = None
            else:
                for frame in packet.decode():
                    assert isinstance(frame, av.AudioFrame)  # an audio packet decodes to audio
                    sound.add(frame)
        sound.flush()
        width, height = checked_frames(path, video, pts)
    assert sound.buffer is not None  # kept
    times = FrameTimes.from_pts(pts, float(video.time_base or 0), fps)
    problems = missing_parts(times, declared_duration(container, video), audio is not None)
    return Clip(path, fps, len(pts), width, height, sound.buffer.samples(), sample_rate, times, problems), packets


def _decode_packets(video: av.video.stream.VideoStream, packets: Iterable[av.Packet]) -> Iterator[av.VideoFrame]:
    """The frames of video packets (empty ones, the demuxer's end markers, left out), in display order, the decoder
    flushed at the end (as container.decode)."""
    for packet in packets:
        if packet.size:
            yield from video.decode(packet)
    yield from video.decode(None)


def read_frames(clip: Clip, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """Decode the video once and keep only the wanted frames, as [H, W, 3] uint8 RGB, upright.

    If the stream decodes to fewer frames than its packets promised (a truncated
    file), a missing index gets the last frame that did decode.
    """
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return {}
    container = open_container(clip.path)
    try:
        video = container.streams.video[0]
        return _pick_frames(_decode_packets(video, demux(container, (video,), clip.path)), wanted, clip.path)
    finally:
        container.close()


def _pick_frames(decoded: Iterator[av.VideoFrame], wanted: list[int], path: Path) -> dict[int, np.ndarray]:
    """Convert the `wanted` (sorted) frames of a decoding; stop after the last one.

    A wanted frame the decoding never reached (a truncated file) gets the newest wanted frame that did decode,
    else the first frame: only then is the first frame converted too.
    """
    frames: dict[int, np.ndarray] = {}
    first: av.VideoFrame | None = None
    want = set(wanted)
    try:
        for i, frame in enumerate(decoded):
            if i > wanted[-1]:
                break
            first = frame if i == 0 else first
            if i in want:
                frames[i] = upright(frame)
    except (VideoError, *DECODE_ERRORS) as exc:  # a read error (demux's VideoError) or a decoding one
        if first is None:
            raise VideoError(path, f"video frames do not decode ({reason(exc.__cause__ or exc)})") from exc
    if first is None:
        raise VideoError(path, "video frames do not decode")
    missing = [i for i in wanted if i not in frames]
    if missing:
        stand_in = frames[max(frames)] if frames else upright(first)  # decoding stopped before every missing one
        frames.update(dict.fromkeys(missing, stand_in))
    return frames
