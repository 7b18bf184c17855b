"""A recording's timeline inputs in pieces: one decoding pass, one face tracker, memory flat with length.

    task: a whole recording, or a chunk of one (timeline/chunks.py) --probe--> timeline
    --io/media.FramePass from the first packet or the chunk's keyframe: video decoded, planned frames
      converted, audio resampled as it arrives--> planned frames in time order
    --FaceDetector.track, one tracker for the task--> sightings (timeline/people.py)
    --parts of PART_SEGMENTS scored segments, once the tracker is N - 1 segments past them-->
    per person the uint8 crops its windows need, and the part's spectrograms --> pieces (RecordingPart)

The frames and samples are the ones open_clip and read_frames give (the same packets, the same
resampler fed the same audio frames in the same order), so the inputs equal extract's on the whole
decoded file for the same segments and boxes. The pass holds the planned frames from its current
part's first one to the newest tracked one (a part plus N - 1 segments), and the audio from the
current part's first window on: seconds of media, whatever the recording's length.

A chunk decodes from its keyframe (io/media.py's FramePass says how its audio is placed to the sample; a
seek that misses falls back to decoding from the first packet). Pieces reach the parent one by one (run/pool.py streams a job's iterator), so nothing
the size of the recording ever crosses a pipe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import VideoError
from edge_emotion.io.media import FramePass, SeekMissed
from edge_emotion.io.probe import VideoFacts, probe
from edge_emotion.preprocess.audio import audio_windows, is_silent, spectrograms
from edge_emotion.preprocess.faces import FaceDetector, crop_face
from edge_emotion.preprocess.segments import SegmentInputs
from edge_emotion.run.clip_inputs import ClipInputs, FaceSetup
from edge_emotion.run.pool import DEFAULT_TIMEOUT_S, WorkerPool
from edge_emotion.timeline.chunks import Chunk, RecordingTask, whole
from edge_emotion.timeline.grid import Timeline, make_grid, plan_timeline
from edge_emotion.timeline.people import Crop, Sightings, part_crops

PART_SEGMENTS = 16  # scored segments per part: with N - 1 more tracked, 25 full frames held at N = 10 (69 MB at 720p)


@dataclass
class RecordingPart(ClipInputs):
    """One piece of a recording: one person's crops (people[0]) on the positions of one part of a chunk that the
    windows of that chunk need. `score_clips` batches pieces like clips."""

    chunk: Chunk | None = None  # which chunk of its file (None on an error piece)
    person: int | None = None  # the chunk tracker's person; None: centre crops for windows without anyone
    positions: np.ndarray | None = None  # [M] timeline positions of people[0]'s segments
    silent_flags: np.ndarray | None = None  # [M] bool: the segment's audio window is silent
    facts: VideoFacts | None = None  # on the chunk's last piece: the recording's frame times (the parent plans by them)
    sightings: Sightings | None = None  # on the chunk's last piece: everyone its tracker saw, by position
    last: bool = True  # the chunk's last piece


@dataclass
class _Chunk:
    """A task's scoring state: its tracker, the sightings, the frames of the part in the making."""

    task: RecordingTask
    chunk: Chunk
    timeline: Timeline
    config: PreprocessConfig
    detector: FaceDetector
    part_size: int
    facts: VideoFacts
    held: dict[int, np.ndarray] = field(default_factory=dict)  # position -> frame, scored positions only
    sightings: Sightings = field(default_factory=Sightings)
    timings: dict[str, float] = field(default_factory=dict)

    def pieces(self, grid_pass: FramePass) -> Iterator[RecordingPart]:
        """Track every frame of the pass; hand out each part's pieces once the tracker is N - 1 segments past it and
        its audio is in. The chunk's last piece carries everything its tracker saw (the parent matches people by it)."""
        tracker = self.detector.tracker()
        next_part, end_of_chunk = self.chunk.score
        start = time.perf_counter()
        for position, frame in grid_pass.frames():
            self.timings["decode"] = self.timings.get("decode", 0.0) + time.perf_counter() - start
            start = time.perf_counter()
            self.sightings.add(position, self.detector.track([frame], tracker)[0])
            self.timings["faces"] = self.timings.get("faces", 0.0) + time.perf_counter() - start
            if self.chunk.score[0] <= position < end_of_chunk:
                self.held[position] = frame
            while next_part < end_of_chunk and self._ready(grid_pass, range(next_part, self._end(next_part)), position):
                yield from self._part(grid_pass, range(next_part, self._end(next_part)))
                next_part = self._end(next_part)
            start = time.perf_counter()
        while next_part < end_of_chunk:
            yield from self._part(grid_pass, range(next_part, self._end(next_part)))
            next_part = self._end(next_part)

    def _end(self, first: int) -> int:
        return min(first + self.part_size, self.chunk.score[1])

    def _ready(self, grid_pass: FramePass, part: range, tracked: int) -> bool:
        """The tracker has seen N - 1 segments past the part (or the chunk's last), and the part's audio is in."""
        needed = min(part.stop + self.timeline.n - 1, self.chunk.track[1]) - 1
        return tracked >= needed and grid_pass.audio_ready(part.stop - 1, self.config.audio.window_samples)

    def _part(self, grid_pass: FramePass, part: range) -> list[RecordingPart]:
        """The part's pieces: one per person its windows need (None: centre crops), spectrograms computed once."""
        start = time.perf_counter()
        params = self.config.audio
        half, length = params.window_samples // 2, params.window_samples
        centres = np.array([self.timeline.segments[p].centre for p in part])  # [C] seconds into the recording
        first = max(0, round(centres[0] * params.sample_rate) - half)
        end = round(centres[-1] * params.sample_rate) - half + length
        waveform = grid_pass.audio.buffer.take(first, end) if grid_pass.has_audio else np.zeros(0, np.float32)
        windows = audio_windows(waveform, params.sample_rate, centres - first / params.sample_rate, params.window_s)
        specs, silent = spectrograms(windows, params), is_silent(windows)  # [C, 1, F, T], [C]
        self.timings["spectrogram"] = time.perf_counter() - start
        start = time.perf_counter()
        crops = part_crops(self.sightings, self.timeline, range(*self.chunk.windows), part)
        pieces = [self._piece(person, used, part, specs, silent) for person, used in crops.items()]
        self.timings["faces"] = self.timings.get("faces", 0.0) + time.perf_counter() - start
        pieces[0].timings, self.timings = self.timings, {}
        if part.stop == self.chunk.score[1]:
            pieces[-1].last, pieces[-1].sightings, pieces[-1].facts = True, self.sightings, self.facts
        for p in [p for p in self.held if p < part.stop]:
            del self.held[p]
        return pieces

    def _piece(self, person: int | None, used: list[Crop], part: range, specs: np.ndarray, silent: np.ndarray) -> RecordingPart:
        rows = np.array([c.position - part.start for c in used])  # [M] into the part
        faces = np.stack([crop_face(self.held[c.position], c.box, self.config.face) for c in used])  # [M, S, S, 3] uint8
        own = [c.own for c in used]
        inputs = SegmentInputs(
            faces, specs[rows], [self.timeline.segments[c.position] for c in used], [c.box for c in used], own,
            own.count(False), int(silent[rows].sum()), person or 0, 0 if person is None else 1,
        )
        return RecordingPart(
            self.task.file, str(self.task.path), [inputs], self.facts.fps, self.facts.times.duration, chunk=self.chunk,
            person=person, positions=np.array([c.position for c in used]), silent_flags=silent[rows], last=False,
        )


def recording_parts(
    task: RecordingTask, config: PreprocessConfig, window_s: float, hop_s: float, detector: FaceDetector,
    part_size: int = PART_SEGMENTS,
) -> Iterator[RecordingPart]:
    """The task's pieces, in time order. Never raises for a bad file: an error piece ends the task instead."""
    try:
        started = time.perf_counter()
        facts = task.facts or probe(task.path)[0]
        timeline = plan_timeline(make_grid(config.n_segments, window_s, hop_s, facts.fps), facts.times)
        chunk = task.chunk or whole(timeline)
        scorer = _Chunk(task, chunk, timeline, config, detector, part_size, facts)
        scorer.timings["decode"] = time.perf_counter() - started
        positions = range(*chunk.track)
        last = timeline.segments[chunk.score[1] - 1].centre * config.audio.sample_rate
        audio_until = round(last) - config.audio.window_samples // 2 + config.audio.window_samples
        try:
            grid_pass = FramePass(task.path, facts.times, timeline.segments, positions, config.audio, chunk.start, facts.audio_origin, audio_until)
            yield from scorer.pieces(grid_pass)
        except SeekMissed:  # raised before the first piece (it waits for the audio and the frames checked)
            scorer = _Chunk(task, chunk, timeline, config, detector, part_size, facts)
            yield from scorer.pieces(FramePass(task.path, facts.times, timeline.segments, positions, config.audio, None, None, audio_until))
    except VideoError as exc:
        yield RecordingPart(task.file, str(task.path), error=exc.cause)
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the folder; the row names the cause
        yield RecordingPart(task.file, str(task.path), error=f"unexpected {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class TimelineJob:
    """The timeline scoring job for a WorkerPool: the FaceDetector once per worker, then each task's pieces."""

    config: PreprocessConfig
    window_s: float
    hop_s: float
    faces: FaceSetup = FaceSetup()

    def setup(self, threads: int) -> Callable[[RecordingTask, int], Iterator[RecordingPart]]:
        detector = self.faces.detector(self.config, threads)
        return lambda task, index: recording_parts(task, self.config, self.window_s, self.hop_s, detector)

    def failed(self, index: int, task: RecordingTask, cause: str) -> RecordingPart:
        return RecordingPart(task.file, str(task.path), error=cause)


class InlineRecordings:
    """Recordings' pieces one task after another in this process (workers=0). No timeout."""

    def __init__(self, job: TimelineJob) -> None:
        self.run_task = job.setup(threads=0)  # 0: ONNX Runtime's own thread count, as InlineLoader's detector

    def run(self, tasks: Sequence[RecordingTask] | Iterator[RecordingTask]) -> Iterator[RecordingPart]:
        for index, task in enumerate(tasks):
            yield from self.run_task(task, index)

    def close(self) -> None:
        """Nothing to release; here so both loaders share one interface."""

    def __enter__(self) -> InlineRecordings:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_recordings(job: TimelineJob, workers: int, timeout: float = DEFAULT_TIMEOUT_S) -> InlineRecordings | WorkerPool[RecordingPart]:
    """workers = 0: pieces from this process; workers >= 1: a WorkerPool whose timeout applies per piece (progress)."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return InlineRecordings(job) if workers == 0 else WorkerPool(job, workers, timeout)
