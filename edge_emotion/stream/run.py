"""The stream loop on the segment grid: each segment computed once as it arrives, a window every hop as the sum of
its last N segments, by the engine that scores a recording (segments.py).

    decode thread(s) --LiveBuffer (bounded)--> WindowScheduler: segments complete? a window? behind? (scheduler.py)
      --segment j: its frame's faces and its spectrogram; window k: the crops no earlier window scored through the
      one scorer, a Result per person (segments.py)--> each writer, line by line

This module wires the pieces: it opens the source(s), starts the decode threads, runs the loop and
always stops the threads again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from edge_emotion.backends.base import Backend
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.tracks import PersonNumbers
from edge_emotion.run.result import Result
from edge_emotion.stream.buffer import LiveBuffer
from edge_emotion.stream.events import EventWriter, StreamSummary
from edge_emotion.stream.options import StreamOptions, check_options
from edge_emotion.stream.scheduler import WindowScheduler
from edge_emotion.stream.segments import Epoch, Scoring
from edge_emotion.stream.source import Decoder, SourceSpec, StreamClock, open_source, video_fps
from edge_emotion.stream.window import EpochGrid
from edge_emotion.timeline.grid import make_grid
from edge_emotion.timeline.window_options import resolve_windowing

SPAN_MARGIN_S = 0.25  # the buffer holds window + hop + the audio window + this
JOIN_S = 1.0  # how long the end of a run waits for a decode thread (one stuck in a read is left: a daemon)


def run_stream(
    source: SourceSpec,
    backend: Backend,
    detector: FaceDetector,
    writers: Sequence[EventWriter],
    options: StreamOptions = StreamOptions(),
    audio: SourceSpec | None = None,
    stop: threading.Event | None = None,
    on_event: Callable[[Result], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> StreamSummary:
    """Window the stream until it ends, `stop` is set, or --duration is reached; return the summary.

    `audio`: a second source for the sound (a separate microphone); without it the sound is the source's own.
    Raises SourceError when a source cannot be opened, ValueError for options that cannot work (GridError for a
    window and hop that make no grid: timeline/window_options.py).
    """
    config = backend.contract.preprocess
    windowing = resolve_windowing(config, options.window, options.hop)
    window_s, hop_s = windowing.window, windowing.hop
    is_file = source.is_file and (audio is None or audio.is_file)
    check_options(options, source.is_file or (audio is not None and audio.is_file))
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
    grid = make_grid(config.n_segments, window_s, hop_s, fps)
    buffer = LiveBuffer(window_s + hop_s + config.audio.window_s + SPAN_MARGIN_S, fps, config.audio.sample_rate, lossless=not live)
    halt, clock = threading.Event(), StreamClock()
    inputs: list[tuple[SourceSpec, tuple[str, ...]]] = [(source, ("video",) if audio else ("video", "audio"))]
    if audio is not None:
        inputs.append((audio, ("audio",)))
    decoders = [
        Decoder(spec, container, roles, buffer, clock, halt, live=live, pace=options.realtime, reconnect=options.reconnect,
                timeout=options.timeout, sample_rate=config.audio.sample_rate, log=log)
        for (spec, roles), container in zip(inputs, containers)
    ]
    summary = StreamSummary(source=source.url)
    scheduler = WindowScheduler(buffer, lambda t0: EpochGrid(grid, t0, config.audio), options, live, summary,
                                stop or threading.Event(), log)
    started = time.monotonic()
    try:
        for decoder in decoders:
            decoder.start()
        _loop(scheduler, detector, Scoring(backend, options.faces, clock.wall, source.url), live, writers, on_event, summary)
    finally:
        halt.set()
        with buffer.cond:
            buffer.cond.notify_all()
        for decoder in decoders:
            decoder.join(JOIN_S)
        for decoder, container in zip(decoders, containers):
            if not decoder.is_alive() and decoder.ident is None:
                container.close()  # never started
    summary.wall_s = time.monotonic() - started
    return summary


def warm_up(backend: Backend, detector: FaceDetector) -> None:
    """One detection and one backend call on blank inputs before the source opens: the first window's
    latency is then the pipeline's, not the libraries' start-up (MTCNN's first call, ORT's first run)."""
    config = backend.contract.preprocess
    size, shape = config.face.size, config.audio.shape
    detector.detect([np.zeros((240, 320, 3), np.uint8)])
    backend.infer(np.zeros((1, 3, size, size), np.float32), np.zeros((1, 1, *shape), np.float32))


def _loop(
    scheduler: WindowScheduler,
    detector: FaceDetector,
    run: Scoring,
    live: bool,
    writers: Sequence[EventWriter],
    on_event: Callable[[Result], None] | None,
    summary: StreamSummary,
) -> None:
    """Each Due: its segments computed, then its window's results written; until the stream ends."""
    numbers = PersonNumbers()
    epoch: Epoch | None = None
    while True:
        due = scheduler.next()
        if isinstance(due, str):
            summary.ended = due
            break
        begin = time.perf_counter()
        if epoch is None or epoch.number != due.epoch:
            epoch = Epoch(due.epoch, detector, numbers, run.backend.contract.preprocess)
        for work in due.segments:
            epoch.add(work, run.timings)
        summary.segments += len(due.segments)
        results = [] if due.window is None else epoch.window(due.window, due.grid, summary.dropped_frames, run)
        for result in results:
            for writer in writers:
                writer.write(result)
        summary.processing_s += time.perf_counter() - begin
        summary.events += len(results)
        summary.latencies_ms.extend(result.live.latency_ms for result in results if result.live)
        if results and live:  # how long after the window's end (on the wall clock) its results were out
            summary.end_lags_ms.append(round((time.time() - run.last_wall) * 1000, 1))
        if on_event is not None:
            for result in results:
                on_event(result)
    summary.stages = dict(run.timings)
    summary.backend_rows = run.backend_rows
    summary.stream_s = scheduler.stream_seconds()
