"""Opening media and checking its streams: the causes every reader gives, in one module.

A file (`open_container`, then `checked_streams`) and a live source (`open_source`) are opened here; while they are
read, `reading` is the one place PyAV's errors become a VideoError naming the file or URL and the cause (io/media.py's
demux loop and every decoder that consumes it). What a file lacks is said, not hidden: no audio stream is scored as
silence, a file that ends before its header's duration as far as it reads (`missing_parts`).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from edge_emotion.errors import EdgeEmotionError, VideoError
from edge_emotion.io.frame_times import FrameTimes

# What PyAV raises on corrupt input: FFmpeg errors, and (seen in fuzzing) IndexError when a
# damaged FLV announces a stream mid-file.
DECODE_ERRORS = (av.FFmpegError, OSError, ValueError, RuntimeError, IndexError, KeyError, EOFError)
# What a read that waited longer than the container's timeout raises (a stalled or lost live source).
STALL_ERRORS = (av.error.ExitError, av.error.TimeoutError)
# A file whose frames end this long before the duration its header declares was cut short (not rounding: the
# CREMA-D FLVs declare their sound's 2.27 s for 2.23 s of video).
CUT_SHORT_S = 0.5
NO_AUDIO = "no audio stream: scored as silence"


class Stalled(VideoError):
    """No data came within the read timeout: the source stopped or was lost."""


class SourceError(EdgeEmotionError):
    """A live source cannot be opened or used; the message names it and the cause."""

    def __init__(self, url: str, cause: str) -> None:
        self.url, self.cause = url, cause
        super().__init__(f"{url}: {cause}")


@dataclass(frozen=True)
class SourceSpec:
    """What av.open gets: a URL, device or path; an optional input format (v4l2, alsa, lavfi ...) and its options."""

    url: str
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        """A local regular file (it is read as fast as it decodes unless paced)."""
        return self.format is None and Path(self.url).is_file()


#: stat test -> how an error names a file that is not a regular file (it is never opened: a FIFO would block,
#: /dev/zero or /dev/urandom would never end)
_SPECIAL_FILES = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


def reason(exc: BaseException) -> str:
    """An exception's cause in a few words, for an error line."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


@contextmanager
def reading(name: str | Path) -> Iterator[None]:
    """PyAV's errors while demuxing or decoding `name` -> VideoError naming it (Stalled for a read timeout)."""
    try:
        yield
    except STALL_ERRORS as exc:
        raise Stalled(name, "no data: the source stopped or was lost") from exc
    except DECODE_ERRORS as exc:
        raise VideoError(name, f"corrupt or truncated stream ({reason(exc)})") from exc


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
    """A file opened for reading; VideoError naming it and why it cannot be."""
    if (problem := file_problem(path)) is not None:
        raise VideoError(path, problem)
    try:
        return av.open(str(path), mode="r", timeout=10.0)
    except PermissionError as exc:
        raise VideoError(path, "permission denied") from exc
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(path, f"not a readable video container ({reason(exc)})") from exc


def open_source(spec: SourceSpec, timeout: float, need_video: bool, need_audio: bool) -> av.container.InputContainer:
    """A live source (or a file streamed) opened with open and read timeouts; SourceError in the user's terms."""
    if spec.format is None and "://" not in spec.url and not Path(spec.url).exists():
        raise SourceError(spec.url, "no such file (for a device pass --format, e.g. v4l2 or alsa)")
    try:
        container = av.open(spec.url, format=spec.format, options=dict(spec.options), timeout=(timeout, timeout))
    except STALL_ERRORS as exc:
        raise SourceError(spec.url, f"no data within {timeout:g} s (is anything sending to it?)") from exc
    except FileNotFoundError as exc:
        raise SourceError(spec.url, "no such file or device") from exc
    except PermissionError as exc:
        raise SourceError(spec.url, "permission denied") from exc
    except ValueError as exc:
        raise SourceError(spec.url, f"cannot open it ({reason(exc)}; check --format)") from exc
    except DECODE_ERRORS as exc:
        raise SourceError(spec.url, f"cannot open it ({reason(exc)})") from exc
    missing = [kind for kind, need, have in (
        ("video", need_video, container.streams.video), ("audio", need_audio, container.streams.audio)
    ) if need and not have]
    if missing:
        container.close()
        hint = " (pass --audio SOURCE for a separate microphone)" if missing == ["audio"] else ""
        raise SourceError(spec.url, f"no {' or '.join(missing)} stream{hint}")
    if need_video and frame_rate(container.streams.video[0]) <= 0:
        container.close()
        raise SourceError(spec.url, "the video stream has no frame rate")
    return container


def frame_rate(stream: av.video.stream.VideoStream) -> float:
    """The stream's nominal frames per second (0.0 when it states none)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate and float(rate) > 0 else 0.0


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


def checked_frames(path: str | Path, video: av.VideoStream, pts: list[int | None]) -> tuple[int, int]:
    """The frame size, once the demuxing pass found frames; VideoError for a file without any, or a bad size."""
    width, height = video.codec_context.width, video.codec_context.height
    if not pts:
        raise VideoError(path, "video stream holds no frames (zero duration)")
    if width <= 0 or height <= 0:
        raise VideoError(path, f"invalid frame size {width}x{height}")
    return width, height


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


def upright(frame: av.VideoFrame) -> np.ndarray:
    """[H, W, 3] uint8 RGB as displayed: a phone video's rotation metadata (display matrix) applied."""
    image = frame.to_ndarray(format="rgb24")
    quarter_turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise, as np.rot90 turns
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image
