"""What planning a recording needs, read without decoding a frame: frame rate and count, and where it may be cut.

`probe` demuxes every packet once (as open_clip counts frames: video packets that hold data) and
decodes only the first audio frame, whose timestamp is the time of the recording's first audio
sample: a chunk that starts decoding mid-file places its audio by it (timeline/recording.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av

from edge_emotion.errors import VideoError
from edge_emotion.io.container import (
    checked_frames,
    checked_streams,
    declared_duration,
    missing_parts,
    open_container,
    reading,
)
from edge_emotion.io.frame_times import FrameTimes
from edge_emotion.io.media import Cut, demux

__all__ = ["Cut", "VideoFacts", "find_cuts", "header_duration", "probe"]


@dataclass(frozen=True)
class VideoFacts:
    """A recording's facts for planning its timeline (and its chunks)."""

    times: FrameTimes  # when each frame is shown (io/frame_times.py)
    width: int
    height: int
    audio_origin: float | None = None  # seconds: the timestamp of the first decoded audio sample (None: not read)
    problems: tuple[str, ...] = ()  # what the file lacks (decode.missing_parts): its rows say it

    @property
    def fps(self) -> float:
        return self.times.rate

    @property
    def frame_count(self) -> int:
        return self.times.count


def probe(path: str | Path, keyframes: bool = False) -> tuple[VideoFacts, list[Cut]]:
    """The frames' times (video packets, demuxed only), the same checks and causes as open_clip; with
    `keyframes`, also the first audio sample's time and the clean keyframes (`find_cuts`) to chunk the file on."""
    path = Path(path)
    container = open_container(path)
    try:
        video, audio, fps = checked_streams(container, path)
        pts: list[int | None] = []
        key: list[bool] = []
        origin: float | None = None
        with reading(path):
            for packet in demux(container, (video, audio if keyframes else None), path):
                if not packet.size:
                    continue
                if packet.stream is video:
                    pts.append(packet.pts)
                    key.append(packet.is_keyframe)
                elif origin is None:
                    origin = _first_time(packet)
            width, height = checked_frames(path, video, pts)
            time_base = float(video.time_base) if video.time_base else 0.0
            declared = declared_duration(container, video)
    finally:
        container.close()
    cuts = find_cuts(pts, key, time_base) if keyframes and origin is not None else []
    times = FrameTimes.from_pts(pts, time_base, fps)
    return VideoFacts(times, width, height, origin, missing_parts(times, declared, audio is not None)), cuts


def _first_time(packet: av.Packet) -> float | None:
    """Seconds of the first audio frame the packet decodes to (the decoder may hold the first packets back)."""
    for frame in packet.decode():
        if isinstance(frame, av.AudioFrame) and frame.pts is not None and frame.time_base is not None:
            return float(frame.pts * frame.time_base)
    return None


def find_cuts(frame_pts: Sequence[int | None], keyframe: Sequence[bool], time_base: float) -> list[Cut]:
    """Keyframes (video packets in decode order) before which every packet shows earlier and after which every one
    later: decoding from one gives the frames from its own on, numbered as from the start. None without timestamps."""
    if not time_base or any(p is None for p in frame_pts):
        return []
    pts = [int(p) for p in frame_pts if p is not None]
    after_min = [math.inf] * (len(pts) + 1)  # after_min[i]: the smallest pts from packet i on
    for i in range(len(pts) - 1, -1, -1):
        after_min[i] = min(pts[i], after_min[i + 1])
    cuts, before_max = [], -math.inf
    for i, (p, key) in enumerate(zip(pts, keyframe)):
        if key and before_max < p < after_min[i + 1]:
            cuts.append(Cut(i, p, p * time_base))
        before_max = max(before_max, p)
    return cuts


def header_duration(path: Path) -> float | None:
    """Seconds by the container's header (no packet read); None where it does not say or the file does not open."""
    try:
        container = open_container(path)
    except VideoError:
        return None
    try:
        return container.duration / 1e6 if container.duration and container.duration > 0 else None
    finally:
        container.close()

