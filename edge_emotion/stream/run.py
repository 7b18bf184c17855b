"""The rolling-window loop: every hop, the last window of the stream -> N segments -> one event.

    decode thread(s) --LiveBuffer (bounded)--> WindowScheduler: window k complete? behind? (scheduler.py)
      --window k: Clip of F frames + audio (window.py)
      --plan_clip (test mode) -> segments.extract_people (faces, spectrograms) -> score_clips (backend)
      -> rows.build_rows (consensus) (evaluate.py)--> an event line per person, written and flushed

This module wires the pieces: it opens the source(s), starts the decode threads, runs the
loop and always stops the threads again. The same plan / faces / spectrogram / backend /
consensus code as `score` and `predict`; only where the frames come from differs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from edge_emotion.backends.base import Backend
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.stream.buffer import LiveBuffer
from edge_emotion.stream.evaluate import evaluate_window, warm_up
from edge_emotion.stream.events import Event, EventWriter, StreamSummary
from edge_emotion.stream.options import StreamOptions, check_options
from edge_emotion.stream.people import StreamPeople
from edge_emotion.stream.scheduler import WindowScheduler
from edge_emotion.stream.source import Decoder, SourceSpec, StreamClock, open_source, video_fps
from edge_emotion.stream.window import Schedule, default_window

SPAN_MARGIN_S = 0.25  # the buffer holds window + hop + this
JOIN_S = 1.0  # how long the end of a run waits for a decode thread (one stuck in a read is left: a daemon)


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
    summary = StreamSummary(source=source.url)
    shape = Schedule(0.0, fps, max(1, round(window_s * fps)), options.hop)
    scheduler = WindowScheduler(buffer, shape, options, live, summary, stop or threading.Event(), log)
    started = time.monotonic()
    try:
        for decoder in decoders:
            decoder.start()
        _evaluate_windows(scheduler, source.url, backend, detector, writers, on_event, summary, options)
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


def _evaluate_windows(
    scheduler: WindowScheduler,
    name: str,
    backend: Backend,
    detector: FaceDetector,
    writers: Sequence[EventWriter],
    on_event: Callable[[Event], None] | None,
    summary: StreamSummary,
    options: StreamOptions,
) -> None:
    """The loop: each window the scheduler hands out -> its events (one per person scored), written; until the stream ends."""
    people = StreamPeople()
    while True:
        due = scheduler.next_window()
        if isinstance(due, str):
            summary.ended = due
            break
        begin = time.perf_counter()
        events, stages = evaluate_window(due, name, backend, detector, summary.dropped_frames, options.faces, people)
        for event in events:
            for writer in writers:
                writer.write(event)
        for stage, seconds in stages.items():
            summary.stages[stage] = summary.stages.get(stage, 0.0) + seconds
        summary.processing_s += time.perf_counter() - begin
        summary.events += len(events)
        summary.latencies_ms.extend(event["latency_ms"] for event in events)
        if on_event is not None:
            for event in events:
                on_event(event)
    summary.stream_s = scheduler.stream_seconds()
