"""Live sources: anything PyAV opens (a URL, a capture device, a file), decoded in its own thread.

A decode thread demuxes and decodes one container and pushes its frames, with
their stream time, into the LiveBuffer, so decoding runs ahead of inference and
never waits for it (live sources) or waits only for a full buffer (files). Its
exits: the end of the stream, no data for `timeout` seconds (PyAV's read timeout:
a stalled or lost source), an error of the source; with `reconnect` it reopens
the source instead and the stream clock goes on.

Stream time: seconds since the first frame of the run. Each container's own
timestamps count from its first frame (a file's video and sound each from its
own first frame, as decode reads a file); a container opened later (a reconnect,
a second device for the sound) starts at its arrival on the wall clock, so two
devices with unrelated clocks still line up.

The packets come from io/media.py's one demux loop (its errors mapped there); the sound is resampled in the
decode thread by io/audio_runs.py's AudioRuns with `restart`: one run while the frames follow each other (on a
file, the very resampling `score` does), a new run at its own timestamp after lost packets or a jump.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np

from edge_emotion.errors import VideoError
from edge_emotion.io.audio_runs import AudioRuns
from edge_emotion.io.container import (
    DECODE_ERRORS,
    SourceError,
    SourceSpec,
    Stalled,
    frame_rate,
    open_source,
    reading,
    reason,
)
from edge_emotion.io.frame_times import on_rate
from edge_emotion.io.media import demux
from edge_emotion.stream.buffer import LiveBuffer

__all__ = ["Decoder", "SourceError", "SourceSpec", "StreamClock", "open_source", "video_fps"]

RECONNECT_PAUSE_S = 1.0
BACKWARD_JUMP_S = 1.0  # a timestamp this far behind its stream's last one: a discontinuity, re-anchored
BAD_PACKET_ERRORS = (av.error.InvalidDataError, av.error.PatchWelcomeError, ValueError)  # one damaged packet: skipped


def video_fps(container: av.container.InputContainer) -> float:
    return frame_rate(container.streams.video[0])


class StreamClock:
    """The run's clock: the time of the first frame, shared by every decode thread; and stream time on the wall clock.

    Wall time of stream time t: t plus the smallest (arrival on the system clock - t) of any video frame of a live
    source so far, so the frame that came through with the least delay sets it; not the first frame, which
    arrives late by whatever FFmpeg read while it opened the source (0.2-0.4 s of UDP or RTSP here). A file
    read without pacing keeps its first frame's: the run's start plus the stream time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.origin: float | None = None  # time.monotonic() of the first frame of the run
        self.wall_offset: float | None = None  # epoch seconds of stream time 0

    def wall(self, t: float) -> float:
        """Epoch seconds of stream time t."""
        return (self.wall_offset or 0.0) + t

    def observe(self, t: float) -> None:
        """A live source's video frame at stream time t arrived just now."""
        with self._lock:
            self.wall_offset = min(self.wall_offset or float("inf"), time.time() - t)

    def anchor(self, live: bool, after: float) -> float:
        """Stream time for the first frame of a newly opened (or re-anchored) container.

        Live: its arrival on the wall clock; a file: right after `after`, the container's last time.
        """
        with self._lock:
            now = time.monotonic()
            if self.origin is None:
                self.origin, self.wall_offset = now, time.time()
                return 0.0
            return max(now - self.origin, after) if live else after


class _Anchor:
    """Maps one container's own timestamps onto the stream clock.

    A live source keeps its streams' timestamps relative to each other (picture and sound in sync as sent). A file
    starts its video and its sound each at its own first frame, as decode (so `score`, `predict` and training)
    reads a file, whatever offset its container gives them (the CREMA-D FLVs' video starts 27 ms after their sound).
    """

    def __init__(self, clock: StreamClock, live: bool, fps: float, file: bool) -> None:
        self.clock, self.live, self.fps, self.file = clock, live, fps, file
        self.base: dict[str, float] = {}  # role -> own time that stream time `shift` stands for
        self.shift: float | None = None
        self.last: dict[str, float] = {}  # role -> last stream time
        self.frames = 0  # video frames since the video's base was set (a file's frame index)

    def time(self, own: float | None, role: str, start_after: float) -> float | None:
        """The frame's stream time; None for a frame that cannot be placed: no timestamp, none before it in its stream,
        and the container already timed (an RTSP camera's first frame before its clock is known)."""
        if own is None:  # no timestamp: right after the previous frame of this stream
            if role in self.last:
                self.last[role] += 1 / self.fps if role == "video" else 0.0
                return self.last[role]
            if self.shift is not None:
                return None
            own = 0.0  # a source without timestamps: frames counted from here
        if self.shift is None:
            self.shift = self.clock.anchor(self.live, start_after)
        if role not in self.base:  # a file's stream starts at its first frame; a live one keeps the container's sync
            self.base[role] = own if self.file or not self.base else next(iter(self.base.values()))
            self.frames = 0 if role == "video" else self.frames
        t = own - self.base[role] + self.shift
        if role in self.last and t < self.last[role] - BACKWARD_JUMP_S:  # the source's clock jumped back
            self.shift = self.clock.anchor(self.live, max(self.last.values()) + 1 / self.fps)
            self.base, self.frames = {role: own}, 0
            t = self.shift
        elif role == "video" and self.file:  # a file's frame times as score reads them (io/frame_times.on_rate)
            t = float(on_rate(np.array([own - self.base[role]]), np.array([self.frames]), self.fps)[0]) + self.shift
        self.frames += role == "video"
        self.last[role] = max(t, self.last.get(role, t))
        return t


class Decoder(threading.Thread):
    """Decode one container into the buffer until its end, a stall, an error, or `halt`."""

    def __init__(
        self,
        spec: SourceSpec,
        container: av.container.InputContainer,
        roles: tuple[str, ...],
        buffer: LiveBuffer,
        clock: StreamClock,
        halt: threading.Event,
        *,
        live: bool,
        pace: bool,
        reconnect: bool,
        timeout: float,
        sample_rate: int,
        log: Callable[[str], None],
    ) -> None:
        super().__init__(name=f"edge-emotion-decode-{'-'.join(roles)}", daemon=True)  # daemon: a read stuck in FFmpeg never blocks exit
        self.spec, self.roles = spec, roles
        self.container: av.container.InputContainer | None = container
        self.buffer, self.clock, self.halt = buffer, clock, halt
        self.live, self.pace, self.reconnect, self.timeout, self.log = live, pace, reconnect, timeout, log
        self.fps = video_fps(container) if "video" in roles else 25.0
        self.sample_rate = sample_rate
        self.bad_packets = 0  # packets that did not decode (lost datagrams): skipped
        self._last_time = 0.0
        self._last_video = -float("inf")  # stream time of the last video frame pushed

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - a bug in this thread must reach the loop, not vanish
            self.buffer.fail(exc)
        finally:
            self._close()

    def _run(self) -> None:
        attempt = 0
        while not self.halt.is_set():
            reason = self._decode(self.container)
            self._close()
            if self.halt.is_set():
                return
            if not self.reconnect:
                for role in self.roles:
                    self.buffer.finish(role, reason)
                return
            attempt += 1
            self.log(f"{self.spec.url}: {reason}; reconnecting (attempt {attempt})")
            self.buffer.reset()
            self.container = self._reopen()

    def _reopen(self) -> av.container.InputContainer | None:
        """Open the source again until it answers; a refusal is retried after a pause, a silent wait at once
        (a UDP port stays bound, so a sender that comes back loses nothing)."""
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                return open_source(self.spec, self.timeout, "video" in self.roles, "audio" in self.roles)
            except SourceError as exc:
                self.log(f"{exc}; retrying")
                self.halt.wait(max(0.0, RECONNECT_PAUSE_S - (time.monotonic() - started)))
        return None

    def _decode(self, container: Any) -> str:
        """Push every frame; return why the stream ended."""
        if container is None:
            return "halted"
        streams = [getattr(container.streams, role)[0] for role in self.roles]
        anchor = _Anchor(self.clock, self.live, self.fps, self.spec.is_file)
        sound = AudioRuns(self.sample_rate, restart=True)
        try:
            with reading(self.spec.url):
                for packet in demux(container, streams, self.spec.url, halt=self.halt):
                    role = "video" if packet.stream.type == "video" else "audio"
                    try:
                        frames = packet.decode()
                    except BAD_PACKET_ERRORS:
                        self.bad_packets += 1  # one damaged packet (a datagram lost in transit): skip it
                        continue
                    for frame in frames:
                        self._push(role, frame, anchor, sound)
        except Stalled:
            return f"no data for {self.timeout:g} s: the source stopped or was lost"
        except VideoError as exc:
            return f"source lost ({reason(exc.__cause__) if exc.__cause__ else exc.cause})"
        finally:
            for start, samples in sound.flush():
                self.buffer.push_audio(start, samples, self.halt)
        return "halted" if self.halt.is_set() else "end of stream"

    def _push(self, role: str, frame: Any, anchor: _Anchor, sound: AudioRuns) -> None:
        t = anchor.time(frame.time, role, self._last_time)
        if t is None or (role == "video" and t <= self._last_video):
            return  # cannot be placed, or not after the previous frame: left out (as a frame lost in transit)
        self._last_time = max(self._last_time, t)
        if self.pace and self.clock.origin is not None:
            delay = self.clock.origin + t - time.monotonic()
            if delay > 0:
                self.halt.wait(delay)
        if role == "video":
            self._last_video = t
            if self.live:
                self.clock.observe(t)
            self.buffer.push_video(t, frame, self.halt)
            return
        for start, samples in sound.add(frame, None if frame.time is None else t):
            self.buffer.push_audio(start, samples, self.halt)

    def _close(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except DECODE_ERRORS:
                pass
            self.container = None
