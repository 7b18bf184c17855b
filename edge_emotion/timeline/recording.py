"""A recording's timeline inputs in pieces: one decoding pass, one face tracker, memory flat with length.

    task: a whole recording, or a chunk of one (timeline/chunks.py) --probe--> timeline
    --io/media.FramePass from the first packet or the chunk's keyframe: video decoded, planned frames
      converted, audio resampled as it arrives--> planned frames in time order
    --FaceDetector.track, one tracker for the task--> tracks (preprocess/tracks.py TrackStore; timeline/inputs.py,
      as a stream's segments)
    --parts of PART_SEGMENTS scored segments, once the tracker is N - 1 segments past them-->
    the part's spectrograms and per person the uint8 crops its windows need --> one Piece (run/pieces.py) a part

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
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import VideoError
from edge_emotion.io.media import FramePass, SeekMissed
from edge_emotion.io.probe import VideoFacts, probe
from edge_emotion.preprocess.audio import audio_windows
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.tracks import TrackStore
from edge_emotion.run.pieces import Piece
from edge_emotion.timeline.chunks import Chunk, RecordingTask, whole
from edge_emotion.timeline.grid import Timeline, make_grid, plan_timeline
from edge_emotion.timeline.inputs import audio_inputs, person_crops, track_frame
from edge_emotion.timeline.people import part_crops

PART_SEGMENTS = 16  # scored segments per part: with N - 1 more tracked, 25 full frames held at N = 10 (69 MB at 720p)


@dataclass
class _Chunk:
    """A task's scoring state: its tracker, the tracks, the frames of the part in the making."""

    task: RecordingTask
    chunk: Chunk
    timeline: Timeline
    config: PreprocessConfig
    detector: FaceDetector
    part_size: int
    facts: VideoFacts
    held: dict[int, np.ndarray] = field(default_factory=dict)  # position -> frame, scored positions only
    tracks: TrackStore = field(default_factory=TrackStore)
    timings: dict[str, float] = field(default_factory=dict)

    def pieces(self, grid_pass: FramePass) -> Iterator[Piece]:
        """Track every frame of the pass; hand out each part's pieces once the tracker is N - 1 segments past it and
        its audio is in. The chunk's last piece carries everything its tracker saw (the parent matches people by it)."""
        tracker = self.detector.tracker()
        next_part, end_of_chunk = self.chunk.score
        start = time.perf_counter()
        for position, frame in grid_pass.frames():
            self.timings["decode"] = self.timings.get("decode", 0.0) + time.perf_counter() - start
            track_frame(self.detector, tracker, self.tracks, position, frame, self.timings)
            if self.chunk.score[0] <= position < end_of_chunk:
                self.held[position] = frame
            while next_part < end_of_chunk and self._ready(grid_pass, range(next_part, self._end(next_part)), position):
                yield self._part(grid_pass, range(next_part, self._end(next_part)))
                next_part = self._end(next_part)
            start = time.perf_counter()
        while next_part < end_of_chunk:
            yield self._part(grid_pass, range(next_part, self._end(next_part)))
            next_part = self._end(next_part)

    def _end(self, first: int) -> int:
        return min(first + self.part_size, self.chunk.score[1])

    def _ready(self, grid_pass: FramePass, part: range, tracked: int) -> bool:
        """The tracker has seen N - 1 segments past the part (or the chunk's last), and the part's audio is in."""
        needed = min(part.stop + self.timeline.n - 1, self.chunk.track[1]) - 1
        return tracked >= needed and grid_pass.audio_ready(part.stop - 1, self.config.audio.window_samples)

    def _part(self, grid_pass: FramePass, part: range) -> Piece:
        """The part's piece: its spectrograms once, and the crops of everyone its windows need (None: centre crops)."""
        start = time.perf_counter()
        params = self.config.audio
        half, length = params.window_samples // 2, params.window_samples
        centres = np.array([self.timeline.segments[p].centre for p in part])  # [C] seconds into the recording
        first = max(0, round(centres[0] * params.sample_rate) - half)
        end = round(centres[-1] * params.sample_rate) - half + length
        waveform = grid_pass.buffer.take(first, end) if grid_pass.has_audio else np.zeros(0, np.float32)
        windows = audio_windows(waveform, params.sample_rate, centres - first / params.sample_rate, params.window_s)
        specs, silent = audio_inputs(windows, params)  # [C, 1, F, T], [C]
        self.timings["spectrogram"] = time.perf_counter() - start
        start = time.perf_counter()
        needed = part_crops(self.tracks, self.timeline, range(*self.chunk.windows), part)
        positions = np.arange(part.start, part.stop)  # [C]
        people = [person_crops(person, used, self.held.__getitem__, positions, self.config.face) for person, used in needed.items()]
        self.timings["faces"] = self.timings.get("faces", 0.0) + time.perf_counter() - start
        last = part.stop == self.chunk.score[1]
        piece = Piece(self.task.file, str(self.task.path), self.chunk, positions, specs, silent, people,
                      last, self.facts if last else None, self.tracks if last else None, timings=self.timings)
        self.timings = {}
        for p in [p for p in self.held if p < part.stop]:
            del self.held[p]
        return piece


def recording_pieces(
    task: RecordingTask, config: PreprocessConfig, window_s: float, hop_s: float, detector: FaceDetector,
    part_size: int = PART_SEGMENTS,
) -> Iterator[Piece]:
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
        yield Piece(task.file, str(task.path), error=exc.cause)
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the folder; the row names the cause
        yield Piece(task.file, str(task.path), error=f"unexpected {type(exc).__name__}: {exc}")
