"""A file's pieces (run/pieces.py), read in this process or in worker processes: clips and recordings alike.

A clip is read with one open (decode.open_clip_frames: its audio and its N planned frames, the fast path for
short files) into one piece on positions 0 .. N-1 of its whole-file timeline (grid.whole_file); a recording, or
a keyframe chunk of one, in parts by one pass (timeline/recording.py). Neither raises for a bad file: the error
text comes back as an error piece, so one broken file costs one error row. `ReadJob` runs either on a
run/pool.py WorkerPool (per-file timeout, crash isolation) or inline (`open_reader`, workers = 0).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import VideoError
from edge_emotion.io.decode import open_clip_frames
from edge_emotion.io.probe import VideoFacts
from edge_emotion.preprocess.audio import audio_windows, is_silent, spectrograms
from edge_emotion.preprocess.faces import FaceDetector, crop_face
from edge_emotion.preprocess.people import WhichFaces, largest
from edge_emotion.preprocess.segments import track_planned
from edge_emotion.preprocess.tracks import TrackStore, borrow_boxes
from edge_emotion.run.pieces import Crops, FaceSetup, Piece
from edge_emotion.run.pool import DEFAULT_TIMEOUT_S, WorkerPool
from edge_emotion.timeline.chunks import RecordingTask, whole
from edge_emotion.timeline.grid import SegmentGrid, Timeline, make_grid, plan_timeline, whole_file
from edge_emotion.timeline.recording import recording_pieces
from edge_emotion.timeline.window_options import Windowing


def clip_pieces(task: RecordingTask, config: PreprocessConfig, detector: FaceDetector, which: WhichFaces = "largest") -> Iterator[Piece]:
    """Decode (one open), plan (test mode), track, crop, spectrograms: the clip's one piece, or its error piece.

    Its tracks hold everyone seen (a row's `people`); its crops only the people its rows use: the largest
    person's (the one main-person rule over the clip's one window), or everyone's, or centre crops for nobody.
    """
    timings: dict[str, float] = {}
    facts = None
    try:
        start = time.perf_counter()
        clip, decoded = open_clip_frames(task.path, lambda c: [s.frame for s in whole_file(config.n_segments, c.frame_times).segments],
                                         config.audio.sample_rate)
        timings["decode"] = time.perf_counter() - start
        facts = VideoFacts(clip.frame_times, clip.width, clip.height, problems=clip.problems)
        timeline = whole_file(config.n_segments, clip.frame_times)
        frames, everyone, _ = track_planned(clip, timeline.segments, detector, "all", decoded, timings)
        start = time.perf_counter()
        tracks = TrackStore()
        for k in range(len(frames)):
            tracks.add(k, {p.person: box for p in everyone if (box := p.boxes[k]) is not None})
        chosen = everyone if which == "all" else [p for p in [largest(everyone)] if p is not None]
        people = [_crops(p.person, p.boxes, frames, config) for p in chosen] or [_crops(None, [None] * len(frames), frames, config)]
        timings["faces"] += time.perf_counter() - start
        start = time.perf_counter()
        windows = audio_windows(clip.waveform, clip.sample_rate, np.array([s.centre for s in timeline.segments]), config.audio.window_s)
        specs, silent = spectrograms(windows, config.audio), is_silent(windows)  # [N, 1, F, T], [N]
        timings["spectrogram"] = time.perf_counter() - start
        positions = np.arange(len(timeline.segments))
        yield Piece(task.file, str(task.path), whole(timeline), positions, specs, silent, people, True, facts, tracks, timings=timings)
    except VideoError as exc:
        yield Piece(task.file, str(task.path), error=exc.cause, facts=facts)
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the folder; the row names the cause
        yield Piece(task.file, str(task.path), error=f"unexpected {type(exc).__name__}: {exc}", facts=facts)


def _crops(person: int | None, boxes: list, frames: list[np.ndarray], config: PreprocessConfig) -> Crops:
    """One person's crops on every frame: own boxes, the rest borrowed by the one borrowing rule (a clip: no limit)."""
    filled, _ = borrow_boxes(boxes)
    faces = np.stack([crop_face(f, b, config.face) for f, b in zip(frames, filled)])  # [N, S, S, 3] uint8
    return Crops(person, np.arange(len(frames)), faces, filled, np.array([b is not None for b in boxes], bool))


@dataclass(frozen=True)
class ReadJob:
    """What a worker reads: a file as a clip (windowing None), or a recording or a chunk of one on a grid of windows.
    Builds the FaceDetector once per worker; picklable."""

    config: PreprocessConfig
    faces: FaceSetup = FaceSetup()
    windowing: Windowing | None = None

    def setup(self, threads: int) -> Callable[[RecordingTask, int], Iterator[Piece]]:
        detector = self.faces.detector(self.config, threads)
        w = self.windowing
        if w is None:
            return lambda task, index: clip_pieces(task, self.config, detector, self.faces.which)
        return lambda task, index: recording_pieces(task, self.config, w.window, w.hop, detector)

    def failed(self, index: int, task: RecordingTask, cause: str) -> Piece:
        return Piece(task.file, str(task.path), error=cause)

    def grid_for(self, fps: float) -> SegmentGrid:
        """The windowing's grid over a video of `fps` frames per second."""
        assert self.windowing is not None
        return make_grid(self.config.n_segments, self.windowing.window, self.windowing.hop, fps)

    def plan(self, facts: VideoFacts) -> Timeline:
        """A file's timeline, as its readers planned it: one window over the whole file, or the windowing's grid."""
        if self.windowing is None:
            return whole_file(self.config.n_segments, facts.times)
        return plan_timeline(self.grid_for(facts.fps), facts.times)


class InlineReader:
    """A job's pieces, task after task, in this process (predict, benchmarks, workers = 0). No timeout."""

    def __init__(self, job: ReadJob) -> None:
        self.read = job.setup(threads=0)  # 0: ONNX Runtime's own thread count

    def run(self, tasks: Iterable[RecordingTask]) -> Iterator[Piece]:
        for index, task in enumerate(tasks):
            yield from self.read(task, index)

    def close(self) -> None:
        """Nothing to release; here so both readers share one interface."""

    def __enter__(self) -> InlineReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_reader(job: ReadJob, workers: int, timeout: float = DEFAULT_TIMEOUT_S) -> InlineReader | WorkerPool[Piece]:
    """workers = 0: pieces from this process (no timeout); workers >= 1: a WorkerPool whose timeout applies per piece."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return InlineReader(job) if workers == 0 else WorkerPool(job, workers, timeout)
