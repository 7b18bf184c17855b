"""The rolling-window loop: every hop, the last window of the stream -> N segments -> one event.

    decode thread(s) --LiveBuffer (bounded)--> window k: Clip of F frames + audio (window.py)
      --plan_clip (test mode) -> segments.extract (faces, spectrograms) -> score_clips (backend)
      -> rows.build_row (consensus)--> event line, written and flushed

The same plan / faces / spectrogram / backend / consensus code as `score` and `predict`;
only where the frames come from differs. When inference falls behind a live
source, the loop evaluates the newest complete window instead of the next one:
latency stays bounded and the frames of the skipped windows are counted as
dropped, oldest first. A file read as fast as it decodes evaluates every window.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edge_emotion import defaults
from edge_emotion.backends.base import Backend
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.segments import extract
from edge_emotion.run.clip_inputs import ClipInputs
from edge_emotion.run.rows import FileKey, build_row
from edge_emotion.run.score import score_clips
from edge_emotion.stream.buffer import AudioItem, Demand, LiveBuffer, VideoItem
from edge_emotion.stream.events import Event, EventWriter, StreamSummary
from edge_emotion.stream.source import Decoder, SourceSpec, StreamClock, open_source, video_fps
from edge_emotion.stream.window import Schedule, build_window, default_window

DEFAULT_HOP_S = defaults.STREAM_HOP_S
DEFAULT_TIMEOUT_S = defaults.STREAM_TIMEOUT_S
SPAN_MARGIN_S = 0.25  # the buffer holds window + hop + this
WATCHDOG_GRACE_S = 2.0  # the loop's own stall check, should the decoder's read timeout never fire
JOIN_S = 1.0  # how long the end of a run waits for a decode thread (one stuck in a read is left: a daemon)


@dataclass(frozen=True)
class StreamOptions:
    """How to window a stream; the model's own preprocessing comes from the artifact's contract."""

    window: float | None = None  # seconds per event; None: default_window(contract)
    hop: float = DEFAULT_HOP_S  # seconds between events
    realtime: bool = False  # pace the source at its own timestamps (a file behaves like a live source)
    duration: float | None = None  # stop after this many stream seconds
    timeout: float = DEFAULT_TIMEOUT_S  # no data for this long: the source stalled or was lost
    reconnect: bool = False  # reopen a lost source instead of ending


def check_options(options: StreamOptions, window: float, is_file: bool) -> None:
    """ValueError naming the option for values that cannot work."""
    if window <= 0:
        raise ValueError(f"--window must be positive, got {window}")
    if not 0 < options.hop <= window:
        raise ValueError(f"--hop must be positive and at most the window ({window:g} s), got {options.hop}")
    if options.timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {options.timeout}")
    if options.duration is not None and options.duration <= 0:
        raise ValueError(f"--duration must be positive, got {options.duration}")
    if options.reconnect and is_file:
        raise ValueError("--reconnect is for network sources and devices; a file ends where it ends")


def run_stream(
    source: SourceSpec,
    backend: Backend,
    detector: FaceDetector,
    writers: Sequence[EventWriter],
    options: StreamOptions = StreamOptions(),
    audio: SourceSpec | None = None,
    stop: threading.Event | None = None,
    on_event: Callable[[Event], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> StreamSummary:
    """Window the stream until it ends, `stop` is set, or --duration is reached; return the summary.

    `audio`: a second source for the sound (a separate microphone); without it the sound is the source's own.
    Raises SourceError when a source cannot be opened, ValueError for options that cannot work.
    """
    config = backend.contract.preprocess
    window_s = options.window or default_window(config)
    is_file = source.is_file and (audio is None or audio.is_file)
    check_options(options, window_s, source.is_file or (audio is not None and audio.is_file))
    live = options.realtime or not is_file
    log = log or (lambda message: None)
    warm_up(backend, detector)
    containers = [open_source(source, options.timeout, need_video=True, need_audio=audio is None)]
    try:
        if audio is not None:
            containers.append(open_source(audio, options.timeout, need_video=False, need_audio=True))
    except BaseException:
        containers[0].close()
        raise
    fps = video_fps(containers[0])
    buffer = LiveBuffer(window_s + options.hop + SPAN_MARGIN_S, fps, lossless=not live)
    halt, clock = threading.Event(), StreamClock()
    inputs: list[tuple[SourceSpec, tuple[str, ...]]] = [(source, ("video",) if audio else ("video", "audio"))]
    if audio is not None:
        inputs.append((audio, ("audio",)))
    decoders = [
        Decoder(spec, container, roles, buffer, clock, halt, live=live, pace=options.realtime,
                reconnect=options.reconnect, timeout=options.timeout, log=log)
        for (spec, roles), container in zip(inputs, containers)
    ]
    loop = _Loop(source.url, buffer, Schedule(0.0, fps, max(1, round(window_s * fps)), options.hop), options, live,
                 backend, detector, writers, on_event, stop or threading.Event(), log)
    started = time.monotonic()
    try:
        for decoder in decoders:
            decoder.start()
        loop.run()
    finally:
        halt.set()
        with buffer.cond:
            buffer.cond.notify_all()
        for decoder in decoders:
            decoder.join(JOIN_S)
        for decoder, container in zip(decoders, containers):
            if not decoder.is_alive() and decoder.ident is None:
                container.close()  # never started
    loop.summary.wall_s = time.monotonic() - started
    return loop.summary


def warm_up(backend: Backend, detector: FaceDetector) -> None:
    """One detection and one backend call on blank inputs before the source opens: the first window's
    latency is then the pipeline's, not the libraries' start-up (MTCNN's first call, ORT's first run)."""
    config = backend.contract.preprocess
    n, size, shape = config.n_segments, config.face.size, config.audio.shape
    detector.detect([np.zeros((240, 320, 3), np.uint8)])
    backend.infer(np.zeros((n, 3, size, size), np.float32), np.zeros((n, 1, *shape), np.float32))


class _Loop:
    """The consumer side: waits for complete windows, evaluates them, writes the events."""

    def __init__(self, name: str, buffer: LiveBuffer, shape: Schedule, options: StreamOptions, live: bool,
                 backend: Backend, detector: FaceDetector, writers: Sequence[EventWriter],
                 on_event: Callable[[Event], None] | None, stop: threading.Event, log: Callable[[str], None]) -> None:
        self.name, self.buffer, self.shape, self.options, self.live = name, buffer, shape, options, live
        self.backend, self.detector, self.writers, self.on_event, self.stop, self.log = (
            backend, detector, writers, on_event, stop, log)
        self.config = backend.contract.preprocess
        self.summary = StreamSummary(source=name)
        self.schedule: Schedule | None = None
        self.epoch = 0
        self.k_due = 0  # the next window to evaluate
        self.covered_seq = -1  # newest frame that belonged to an evaluated window
        self.lost_seen = 0
        self.done_s = 0.0  # stream seconds of earlier epochs (before a reconnect)
        self.duration_end: float | None = None
        self.audio_end_told = False

    def run(self) -> None:
        while True:
            step = self._next()
            if isinstance(step, str):
                self.summary.ended = step
                break
            self._evaluate(*step)
        self.summary.stream_s = self.done_s + self._epoch_seconds()

    # ------------------------------------------------------------------ waiting (holds the buffer's lock)

    def _next(self) -> tuple[int, list[VideoItem], list[AudioItem]] | str:
        b = self.buffer
        with b.cond:
            while True:
                if b.error is not None:
                    raise b.error
                if self.stop.is_set():
                    return "interrupted"
                if b.epoch != self.epoch:
                    self._new_epoch()
                if self.schedule is None and b.video:
                    self._start_schedule(b.video[0])
                if self.schedule is not None:
                    step = self._ready()
                    if step is not None:
                        return step
                if "video" in b.ended:
                    return b.ended["video"]
                if "audio" in b.ended and not self.audio_end_told:
                    self.audio_end_told = True
                    self.log(f"the sound ended ({b.ended['audio']}); going on without it (windows count as silent)")
                if self.live and not self.options.reconnect and time.monotonic() - b.last_arrival > self.options.timeout + WATCHDOG_GRACE_S:
                    return f"no data for {self.options.timeout:g} s: the source stopped or was lost"
                b.cond.wait(0.1)

    def _ready(self) -> tuple[int, list[VideoItem], list[AudioItem]] | str | None:
        """The window to evaluate now, a reason to end, or None (wait)."""
        b, s = self.buffer, self.schedule
        assert s is not None
        last_k = math.inf
        if self.duration_end is not None:
            last_k = math.floor((self.duration_end + s.tolerance - s.frames / s.fps - s.t0) / s.hop + 1e-9)
            if self.k_due > last_k:
                return f"--duration {self.options.duration:g} s reached"
        k = min(s.newest_complete(b.latest_video(), b.latest_audio(), "audio" in b.ended), last_k)
        if k < self.k_due:
            return None
        k = int(k) if self.live else self.k_due
        if k > self.k_due:  # behind: skip to the newest window; the frames of the skipped ones are dropped
            through = b.seq_through(s.last_slot(k - 1) + s.tolerance)
            self.summary.dropped_frames += max(0, through - self.covered_seq)
            self.summary.skipped_windows += k - self.k_due
        video, audio = b.window(s.start(k), s.last_slot(k) + s.tolerance, s.end(k))
        self.covered_seq = max(self.covered_seq, b.seq_through(s.last_slot(k) + s.tolerance))
        self.k_due = k + 1
        if b.lossless:
            b.set_demand(Demand(s.start(k + 1), s.last_slot(k + 1) - s.tolerance, s.end(k + 1)))
            self.summary.dropped_frames += b.lost - self.lost_seen
            self.lost_seen = b.lost
        if not video or video[-1].time < s.start(k) - s.tolerance:
            return None  # a gap in the stream: no frame inside this window
        return k, video, audio

    def _start_schedule(self, first: VideoItem) -> None:
        self.schedule = Schedule(first.time, self.shape.fps, self.shape.frames, self.shape.hop)
        self.k_due, self.covered_seq = 0, first.seq - 1
        if self.duration_end is None and self.options.duration is not None:
            self.duration_end = first.time + self.options.duration
        if self.buffer.lossless:
            s = self.schedule
            self.buffer.set_demand(Demand(s.start(0), s.last_slot(0) - s.tolerance, s.end(0)))

    def _new_epoch(self) -> None:
        """The source was reopened: its old frames are gone; a new schedule starts at its first frame."""
        self.done_s += self._epoch_seconds()
        self.epoch = self.buffer.epoch
        self.schedule = None
        self.summary.reconnects += 1

    def _epoch_seconds(self) -> float:
        latest = self.buffer.latest_video()
        if self.schedule is None or latest is None:
            return 0.0
        return max(0.0, latest - self.schedule.t0 + 1 / self.schedule.fps)

    # ------------------------------------------------------------------ one window (no lock held)

    def _evaluate(self, k: int, video: list[VideoItem], audio: list[AudioItem]) -> None:
        s = self.schedule
        assert s is not None
        begin = time.perf_counter()
        win = build_window(k, s, video, audio, self.config, self.name)
        timings = {"window": time.perf_counter() - begin}
        inputs = extract(win.clip, win.segments, self.config, detector=self.detector, timings=timings, decoded=win.decoded)
        clip = ClipInputs(k, self.name, inputs, win.clip.fps, win.clip.duration, timings=timings)
        scored = next(score_clips([clip], self.backend, batch_size=max(1, self.config.n_segments)))
        start = time.perf_counter()
        row = build_row(scored.clip, scored.probs, self.backend.contract.labels, FileKey(self.name, -1, -1))
        event: Event = {
            "t_start": round(win.t_start, 3),
            "t_end": round(win.t_end, 3),
            "label": row["label"],
            "probabilities": row["probabilities"],
            "latency_ms": 0.0,
            "dropped_frames": self.summary.dropped_frames,
            "faceless": row["faceless"],
            "silent": row["silent"],
        }
        consensus_s = time.perf_counter() - start
        event["latency_ms"] = round((time.monotonic() - win.arrival) * 1000, 1)
        for writer in self.writers:
            writer.write(event)
        stages = {
            "window": timings["window"] + timings.get("frames", 0.0),
            "faces": timings.get("faces", 0.0),
            "spectrogram": timings.get("spectrogram", 0.0),
            "inference": scored.infer_s,
            "consensus": consensus_s,
        }
        for stage, seconds in stages.items():
            self.summary.stages[stage] = self.summary.stages.get(stage, 0.0) + seconds
        self.summary.processing_s += time.perf_counter() - begin
        self.summary.events += 1
        self.summary.latencies_ms.append(event["latency_ms"])
        if self.on_event is not None:
            self.on_event(event)
