"""Decode a video file into a Clip: stream facts, the mono waveform, and frames on demand.

Two passes keep memory bounded for long videos: `open_clip` demuxes every packet
(counting video frames without decoding them) and decodes only the audio;
`read_frames` decodes the video again and keeps just the frames asked for.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from edge_emotion import defaults
from edge_emotion.errors import VideoError

DEFAULT_SAMPLE_RATE = defaults.SAMPLE_RATE
# What PyAV raises on corrupt input: FFmpeg errors, and (seen in fuzzing) IndexError when a
# damaged FLV announces a stream mid-file.
DECODE_ERRORS = (av.FFmpegError, OSError, ValueError, RuntimeError, IndexError, KeyError, EOFError)


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

    @property
    def duration(self) -> float:
        """Video duration in seconds (frame_count / fps)."""
        return self.frame_count / self.fps


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
        return "broken or looping symbolic link" if exc.errno == errno.ELOOP else f"cannot stat ({_reason(exc)})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a video file"
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _SPECIAL_FILES if test(st.st_mode)), "unknown file type")
        return f"not a regular file ({kind})"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return None


def _open_container(path: Path) -> av.container.InputContainer:
    if (problem := file_problem(path)) is not None:
        raise VideoError(path, problem)
    try:
        return av.open(str(path), mode="r", timeout=10.0)
    except PermissionError as exc:
        raise VideoError(path, "permission denied") from exc
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(path, f"not a readable video container ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate and float(rate) > 0 else 0.0


def _resample_audio(frames: Iterable[av.AudioFrame], sample_rate: int) -> np.ndarray:
    """Audio frames of any layout and rate -> [T] float32 mono at sample_rate."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks = [out.to_ndarray().reshape(-1) for frame in frames for out in resampler.resample(frame)]
    chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def open_clip(path: str | Path, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Clip:
    """Read a video's facts and its audio; raise VideoError naming the file and the cause.

    A clip needs both a video and an audio stream: the model sees both modalities.
    """
    path = Path(path)
    container = _open_container(path)
    try:
        if not container.streams.video and not container.streams.audio:
            raise VideoError(path, "no audio or video stream (empty or zero-duration file)")
        if not container.streams.video:
            raise VideoError(path, "no video stream")
        if not container.streams.audio:
            raise VideoError(path, "no audio stream")
        video, audio = container.streams.video[0], container.streams.audio[0]
        fps = _fps(video)
        if fps <= 0:
            raise VideoError(path, "video stream has no frame rate")
        frame_count = 0
        audio_frames: list[av.AudioFrame] = []
        for packet in container.demux(video, audio):
            if packet.size == 0:
                continue
            if packet.stream is video:
                frame_count += 1
            else:
                audio_frames.extend(packet.decode())
        waveform = _resample_audio(audio_frames, sample_rate)
        width, height = video.codec_context.width, video.codec_context.height
    except VideoError:
        raise
    except DECODE_ERRORS as exc:
        raise VideoError(path, f"corrupt or truncated stream ({_reason(exc)})") from exc
    finally:
        container.close()
    if frame_count == 0:
        raise VideoError(path, "video stream holds no frames (zero duration)")
    if width <= 0 or height <= 0:
        raise VideoError(path, f"invalid frame size {width}x{height}")
    return Clip(path, fps, frame_count, width, height, waveform, sample_rate)


def _upright(frame: av.VideoFrame) -> np.ndarray:
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
    frames: dict[int, np.ndarray] = {}
    last: np.ndarray | None = None
    container = _open_container(clip.path)
    try:
        for i, frame in enumerate(container.decode(video=0)):
            if i > wanted[-1]:
                break
            if i in wanted or i == 0:
                last = _upright(frame)
                if i in wanted:
                    frames[i] = last
    except DECODE_ERRORS as exc:
        if last is None:
            raise VideoError(clip.path, f"video frames do not decode ({_reason(exc)})") from exc
    finally:
        container.close()
    if last is None:
        raise VideoError(clip.path, "video frames do not decode")
    decoded = sorted(frames)
    for i in wanted:
        if i not in frames:
            earlier = [j for j in decoded if j < i]
            frames[i] = frames[earlier[-1]] if earlier else last
    return frames
