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

import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from edge_emotion import defaults
from edge_emotion.errors import VideoError
from edge_emotion.io.frame_times import FrameTimes

DEFAULT_SAMPLE_RATE = defaults.SAMPLE_RATE
# What PyAV raises on corrupt input: FFmpeg errors, and (seen in fuzzing) IndexError when a
# damaged FLV announces a stream mid-file.
DECODE_ERRORS = (av.FFmpegError, OSError, ValueError, RuntimeError, IndexError, KeyError, EOFError)
# Compressed video kept from the demuxing pass for decoding without a second open: a CREMA-D clip is ~100 KB,
# a minute of 1080p H.264 ~20 MB. Beyond this the packets are dropped and the frames read from the file again.
KEEP_PACKET_BYTES = 64 << 20
# A file whose frames end this long before the duration its header declares was cut short (not rounding: the
# CREMA-D FLVs declare their sound's 2.27 s for 2.23 s of video).
CUT_SHORT_S = 0.5
NO_AUDIO = "no audio stream: scored as silence"


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


#: stat test -> how an error names a file that is not a regular file (it is never opened: a FIFO would block,
#: /dev/zero or /dev/urandom would never end)
_SPECIAL_FILES = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


def file_problem(path: Path) -> str | None:
    """Why `path` (links followed) cannot be a video file, from its stat alone; None for a non-empty regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "broken or looping symbolic link" if path.is_symlink() else "no such file"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return "broken or looping symbolic link" if exc.errno == errno.ELOOP else f"cannot stat ({reason(exc)})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a video file"
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _SPECIAL_FILES if test(st.st_mode)), "unknown file type")
        return f"not a regular file ({kind})"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return None


def open_container(path: Path) -> av.container.InputContainer:
    if (problem := file_problem(path)) is not None:
        raise VideoError(path, problem)
    try:
        return av.open(str(path), mode="r", timeout=10.0)
    except PermissionError as exc:
        raise VideoError(path, "permission denied") from exc
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(path, f"not a readable video container ({reason(exc)})") from exc


def reason(exc: BaseException) -> str:
    """An exception's cause in a few words, for an error line."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def frame_rate(stream: av.video.stream.VideoStream) -> float:
    """The stream's nominal frames per second (0.0 when it states none)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate and float(rate) > 0 else 0.0


def mono_resampler(sample_rate: int) -> av.AudioResampler:
    """The one resampler setting of every driver: float32 mono at the model's rate."""
    return av.AudioResampler(format="flt", layout="mono", rate=sample_rate)


def _resample_audio(frames: Iterable[av.AudioFrame], sample_rate: int) -> np.ndarray:
    """Audio frames of any layout and rate -> [T] float32 mono at sample_rate."""
    resampler = mono_resampler(sample_rate)
    chunks = [out.to_ndarray().reshape(-1) for frame in frames for out in resampler.resample(frame)]
    chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


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



def checked_streams(container: av.container.InputContainer, path: str | Path) -> tuple[av.VideoStream, av.AudioStream | None, float]:
    """The first video stream, the first audio stream (None: the file has none, it is scored as silence) and the
    frame rate; a VideoError saying what the file lacks when it has no video (or no stream at all)."""
    if not container.streams.video and not container.streams.audio:
        raise VideoError(path, "no audio or video stream (empty or zero-duration file)")
    if not container.streams.video:
        raise VideoError(path, "no video stream")
    video = container.streams.video[0]
    audio = container.streams.audio[0] if container.streams.audio else None
    fps = frame_rate(video)
    if fps <= 0:
        raise VideoError(path, "video stream has no frame rate")
    return video, audio, fps


def declared_duration(container: av.container.InputContainer, video: av.VideoStream) -> float | None:
    """Seconds of video the header declares (the video stream's own duration, else the container's); None: unsaid."""
    if video.duration and video.time_base:
        return float(video.duration * video.time_base)
    return container.duration / 1e6 if container.duration and container.duration > 0 else None


def missing_parts(times: FrameTimes, declared: float | None, has_audio: bool) -> tuple[str, ...]:
    """What a file lacks, in words for its rows: its audio stream, or the end its header declares."""
    problems: tuple[str, ...] = () if has_audio else (NO_AUDIO,)
    if declared is not None and declared - times.duration > CUT_SHORT_S:
        problems += (f"file ends at {times.duration:.2f} s of the {declared:.2f} s its header declares (cut short)",)
    return problems


def _demux(
    container: av.container.InputContainer, path: Path, sample_rate: int, keep_bytes: int
) -> tuple[Clip, list[av.Packet] | None]:
    """One pass over the packets: the video frames' timestamps, the audio decoded, the video packets kept while
    they total at most `keep_bytes` (None once they do not: the caller reads the video from the file)."""
    video, audio, fps = checked_streams(container, path)
    pts: list[int | None] = []
    kept_bytes = 0
    packets: list[av.Packet] | None = [] if keep_bytes > 0 else None
    audio_frames: list[av.AudioFrame] = []
    try:
        for packet in container.demux(*[s for s in (video, audio) if s is not None]):
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
                audio_frames.extend(packet.decode())
        waveform = _resample_audio(audio_frames, sample_rate)
        width, height = video.codec_context.width, video.codec_context.height
    except VideoError:
        raise
    except DECODE_ERRORS as exc:
        raise VideoError(path, f"corrupt or truncated stream ({reason(exc)})") from exc
    if not pts:
        raise VideoError(path, "video stream holds no frames (zero duration)")
    if width <= 0 or height <= 0:
        raise VideoError(path, f"invalid frame size {width}x{height}")
    times = FrameTimes.from_pts(pts, float(video.time_base or 0), fps)
    problems = missing_parts(times, declared_duration(container, video), audio is not None)
    return Clip(path, fps, len(pts), width, height, waveform, sample_rate, times, problems), packets


def _decode_packets(video: av.video.stream.VideoStream, packets: Iterable[av.Packet]) -> Iterator[av.VideoFrame]:
    """The frames of kept video packets, in display order, the decoder flushed at the end (as container.decode)."""
    for packet in packets:
        yield from video.decode(packet)
    yield from video.decode(None)


def upright(frame: av.VideoFrame) -> np.ndarray:
    """[H, W, 3] uint8 RGB as displayed: a phone video's rotation metadata (display matrix) applied."""
    image = frame.to_ndarray(format="rgb24")
    quarter_turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise, as np.rot90 turns
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


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
        return _pick_frames(container.decode(video=0), wanted, clip.path)
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
    except DECODE_ERRORS as exc:
        if first is None:
            raise VideoError(path, f"video frames do not decode ({reason(exc)})") from exc
    if first is None:
        raise VideoError(path, "video frames do not decode")
    missing = [i for i in wanted if i not in frames]
    if missing:
        stand_in = frames[max(frames)] if frames else upright(first)  # decoding stopped before every missing one
        frames.update(dict.fromkeys(missing, stand_in))
    return frames
