"""The one result type: what scoring says about one window of one person, for clips, recordings and live sources.

A clip row of `score` is one window over the whole file (window 0 of 1, t_start 0, t_end its duration); a
window row of `score --window` is window k of a file's grid; a `stream` event is window k of a live
source's epoch plus its live-only fields (`Live`). All three are `Result`s built by `window_result`
(consensus: the mean of the window's N segment probabilities) or `error_result`, and written by one
codec (run/codec.py) with one set of field names:

path (the video, or the stream's source), kind (clip | window | stream), person (the face track: 0, 1,
2 ... in order of first sighting; null when nobody was seen and the window was scored on centre
crops), people (people seen in the window; 0: nobody), window, n_windows (windows on the file's grid;
null on a live source), t_start and t_end (seconds from the first frame), label, probabilities (one per
label), n_segments, faceless (segments without this person's own face), silent (segments whose audio
window is silent), videoless (segments whose instant lies in a hole in the video), duration_s (the file's), status (ok | degraded | error), error (an error row's cause; on a degraded row what the file lacks: no audio
stream, cut short), size_bytes and
mtime_ns (the file's version; null on a live source), segments (JSON lines only: per segment its grid
index, frame, the frame's time, the audio window's centre, the face box (null for a centre crop),
whether its own frame had the face, and its probabilities). A file that could not be scored has one
error row: person, people, window, times, label and probabilities null.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from edge_emotion.run.consensus import clip_probabilities

Kind = Literal["clip", "window", "stream"]
KINDS: tuple[Kind, ...] = ("clip", "window", "stream")
PROB_DECIMALS = 6
TIME_DECIMALS = 4
BOX_DECIMALS = 1


@dataclass(frozen=True)
class FileKey:
    """What identifies one version of a video file: its path, size and modification time."""

    path: str
    size: int
    mtime_ns: int


def file_key(path: str | Path) -> FileKey:
    """Stat the file (following links); an unstattable entry gets size and mtime -1."""
    try:
        st = os.stat(path)
    except OSError:
        try:
            st = os.lstat(path)
        except OSError:
            return FileKey(str(path), -1, -1)
    return FileKey(str(path), int(st.st_size), int(st.st_mtime_ns))


@dataclass(frozen=True)
class SegmentResult:
    """One of a window's segments for one person."""

    segment: int  # its index on the file's grid (a clip: 0 .. N-1)
    frame: int | None  # the frame the face came from
    time_s: float | None  # that frame's time
    audio_centre_s: float | None  # the centre of its audio window
    box: tuple[float, ...] | None  # the face box the crop used, full-frame pixels (None: a centre crop)
    detected: bool  # this person's own face was on its frame (False: a borrowed box or a centre crop)
    probabilities: dict[str, float]
    video: bool = True  # False: its instant lies in a hole in the video (the frame is the last one before the hole)


@dataclass(frozen=True)
class Live:
    """What only a live source's result has."""

    epoch: int  # 0, then +1 after each reconnect or gap in the video
    t_wall_end: str  # the window's end on the wall clock, ISO-8601 UTC
    latency_ms: float  # the window's last input arriving -> its result written
    dropped_frames: int  # the stream's, so far


@dataclass(frozen=True)
class Result:
    """One window of one person (module docstring for the fields)."""

    path: str
    kind: Kind
    person: int | None
    people: int | None
    window: int | None
    n_windows: int | None
    t_start: float | None
    t_end: float | None
    label: str | None
    probabilities: dict[str, float] | None
    n_segments: int
    faceless: int
    silent: int
    videoless: int
    duration_s: float | None
    status: str
    error: str
    size_bytes: int | None
    mtime_ns: int | None
    segments: tuple[SegmentResult, ...] = ()
    live: Live | None = None

    @property
    def key(self) -> FileKey:
        """The file version the result is of (-1 for a live source's unknown size and time)."""
        return FileKey(self.path, -1 if self.size_bytes is None else self.size_bytes, -1 if self.mtime_ns is None else self.mtime_ns)


def probabilities(probs: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """[K] -> {label: probability} at PROB_DECIMALS."""
    return {label: round(float(p), PROB_DECIMALS) for label, p in zip(labels, probs)}


def segment_result(
    segment: int, frame: int | None, time_s: float | None, audio_centre_s: float | None, box: Sequence[float] | None,
    detected: bool, probs: np.ndarray, labels: Sequence[str],
) -> SegmentResult:
    """One segment's entry (probs: [K])."""
    return SegmentResult(
        segment, frame, _time(time_s), _time(audio_centre_s), None if box is None else tuple(round(float(v), BOX_DECIMALS) for v in box),
        bool(detected), probabilities(probs, labels),
    )


def window_result(
    kind: Kind, key: FileKey | None, path: str, *, person: int | None, people: int, window: int, n_windows: int | None,
    t_start: float, t_end: float, segment_probs: np.ndarray, detected: Sequence[bool] | np.ndarray, silent: int, labels: Sequence[str],
    duration_s: float | None = None, segments: Sequence[SegmentResult] = (), live: Live | None = None,
    problems: Sequence[str] = (),
) -> Result:
    """One window of one person: the consensus of its N segments (segment_probs [N, K]); key None for a live source.

    `problems`: what the file lacks (no audio stream, cut short: io/decode.missing_parts); the result is degraded
    and its `error` says them, as it is for faceless, silent or videoless segments."""
    probs = clip_probabilities(segment_probs)  # [K]
    faceless = int(len(detected) - np.count_nonzero(np.asarray(detected, bool)))
    videoless = sum(not s.video for s in segments)
    degraded = faceless or silent or videoless or problems
    return Result(
        kind=kind, path=path, person=person, people=people, window=window, n_windows=n_windows, t_start=_time(t_start),
        t_end=_time(t_end), label=labels[int(np.argmax(probs))], probabilities=probabilities(probs, labels),
        n_segments=int(segment_probs.shape[0]), faceless=faceless, silent=int(silent), videoless=videoless,
        duration_s=_time(duration_s), status="degraded" if degraded else "ok", error="; ".join(problems),
        size_bytes=None if key is None else key.size,
        mtime_ns=None if key is None else key.mtime_ns, segments=tuple(segments), live=live,
    )


def error_result(kind: Kind, key: FileKey, error: str, duration_s: float | None = None) -> Result:
    """The one result of a file that could not be scored."""
    return Result(
        kind=kind, path=key.path, person=None, people=None, window=None, n_windows=None, t_start=None, t_end=None, label=None,
        probabilities=None, n_segments=0, faceless=0, silent=0, videoless=0, duration_s=_time(duration_s), status="error",
        error=" ".join(error.split()) or "no model inputs", size_bytes=key.size, mtime_ns=key.mtime_ns,
    )


def error_cause(error: str) -> str:
    """Group key for failures: the cause without its details in parentheses (which often name the file)."""
    return error.split(" (", 1)[0].strip() or "unknown"


def _time(seconds: float | None) -> float | None:
    return None if seconds is None else round(float(seconds), TIME_DECIMALS)
