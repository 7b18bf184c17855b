"""A recording's timeline inputs in pieces: one decoding pass, one face tracker, memory flat with length.

    task: a whole recording, or a chunk of one (timeline/chunks.py) --probe--> timeline
    --one pass from the first packet or the chunk's keyframe: video decoded, planned frames converted,
      audio resampled as it arrives--> planned frames in time order
    --FaceDetector.track, one tracker for the task--> sightings (timeline/people.py)
    --parts of PART_SEGMENTS scored segments, once the tracker is N - 1 segments past them-->
    per person the uint8 crops its windows need, and the part's spectrograms --> pieces (RecordingPart)

The frames and samples are the ones open_clip and read_frames give (the same packets, the same
resampler fed the same audio frames in the same order), so the inputs equal extract's on the whole
decoded file for the same segments and boxes. The pass holds the planned frames from its current
part's first one to the newest tracked one (a part plus N - 1 segments), and the audio from the
current part's first window on: seconds of media, whatever the recording's length.

A chunk decodes from its keyframe (every frame from there is the frame a decoding from the start
gives). Its audio decoder starts without the previous frame's overlap, so the first audio frame after
the seek is dropped, and FFmpeg's resampler is fed from the first sample that is a multiple of
in_rate / gcd(in_rate, out_rate) into the recording, where the whole-file resampler is at the same
phase; its first RESAMPLER_WARMUP output samples, computed on a silent history, are never used. A
seek that lands past the keyframe, or audio that starts too late, falls back to decoding from the
first packet. Pieces reach the parent one by one (run/pool.py streams a job's iterator), so nothing
the size of the recording ever crosses a pipe.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from edge_emotion import defaults
from edge_emotion.config import PreprocessConfig, SpectrogramParams
from edge_emotion.errors import VideoError
from edge_emotion.io.decode import DECODE_ERRORS, open_container, reason, upright
from edge_emotion.io.frame_times import FrameTimes
from edge_emotion.preprocess.audio import audio_windows, is_silent, spectrograms
from edge_emotion.preprocess.faces import FaceDetector, crop_face
from edge_emotion.preprocess.segments import SegmentInputs
from edge_emotion.run.clip_inputs import ClipInputs, FaceSetup
from edge_emotion.run.pool import DEFAULT_TIMEOUT_S, WorkerPool
from edge_emotion.timeline.chunks import Chunk, RecordingTask, whole
from edge_emotion.timeline.grid import Timeline, make_grid, plan_timeline
from edge_emotion.timeline.people import Crop, Sightings, part_crops
from edge_emotion.timeline.probe import Cut, VideoFacts, probe

PART_SEGMENTS = 16  # scored segments per part: with N - 1 more tracked, 25 full frames held at N = 10 (69 MB at 720p)
MAX_AV_SKEW_S = defaults.MAX_AV_SKEW_S  # video this far past a part's audio: the audio ended early (the rest is silent)
RESAMPLER_WARMUP = 64  # a chunk's first resampled samples that its resampler's silent history reaches (it is ~30)


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


class _SeekMissed(Exception):
    """A chunk's seek landed past its keyframe, or its audio started after what it needs: decode from the start."""


class _AudioBuffer:
    """The resampled audio from sample `start` on, in the chunks it arrived in."""

    def __init__(self, start: int = 0) -> None:
        self.chunks: list[np.ndarray] = []
        self.start = self.end = start  # sample index of the first sample held / after the last sample received
        self.usable = start  # samples before this one are not the whole file's (a chunk's resampler warm-up)

    def append(self, samples: np.ndarray) -> None:
        self.chunks.append(samples)
        self.end += len(samples)

    def take(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) of the recording, cut at what has arrived; everything before `a` is dropped."""
        if a < self.usable:
            raise _SeekMissed(f"audio from sample {a} is needed, the chunk's starts at {self.usable}")
        held = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)  # samples [start, end)
        out = held[a - self.start : max(a, b) - self.start].copy()
        self.chunks, self.start = [held[a - self.start :]], a
        return out


class _AudioFeed:
    """Decoded audio frames -> the resampler -> the buffer; for a chunk, from an aligned sample on (see module doc)."""

    def __init__(self, rate: int, origin: float | None, chunked: bool) -> None:
        self.rate, self.origin = rate, origin
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        self.buffer = _AudioBuffer()
        self.waiting = chunked  # a chunk: not fed yet (the first frame after the seek is dropped)
        self.dropped = 0
        if chunked:  # no sample is usable before the buffer is placed in the recording (else: decode from the start)
            self.buffer.usable = sys.maxsize

    def add(self, frame: av.AudioFrame) -> None:
        if self.waiting:
            aligned = self._aligned(frame)
            if aligned is None:
                return
            frame = aligned
        for out in self.resampler.resample(frame):
            self.buffer.append(out.to_ndarray().reshape(-1))

    def flush(self) -> None:
        if self.waiting:
            return
        for out in self.resampler.resample(None):
            self.buffer.append(out.to_ndarray().reshape(-1))

    def _aligned(self, frame: av.AudioFrame) -> av.AudioFrame | None:
        """The frame from its first sample at the whole-file resampler's phase, the buffer placed there; None: wait."""
        self.dropped += 1
        if self.dropped == 1 or frame.pts is None or frame.time_base is None or self.origin is None:
            return None
        rate_in = frame.sample_rate
        first = round((float(frame.pts * frame.time_base) - self.origin) * rate_in)  # input samples into the recording
        period = rate_in // math.gcd(rate_in, self.rate)
        skip = -first % period
        if skip >= frame.samples:
            return None
        data: Any = frame.to_ndarray()  # [channels, samples] planar, [1, samples x channels] packed
        step = 1 if frame.format.is_planar else len(frame.layout.channels)
        cut = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, skip * step :]), format=frame.format.name, layout=frame.layout.name)
        cut.sample_rate, cut.time_base = rate_in, frame.time_base
        cut.pts = frame.pts + round(skip / rate_in / frame.time_base)
        start = (first + skip) * self.rate // rate_in
        self.buffer = _AudioBuffer(start)
        self.buffer.usable = start + RESAMPLER_WARMUP
        self.waiting = False
        return cut


class _GridPass:
    """One pass over a recording (from its first packet or a cut): the planned frames of `positions`, in order."""

    def __init__(self, path: Path, times: FrameTimes, timeline: Timeline, positions: range, audio: SpectrogramParams,
                 start: Cut | None, origin: float | None, audio_until: int) -> None:
        """`audio_until`: the sample after the last one the scored segments need; the pass stops there once the
        frames are in too (a chunk early in a long file never reads the rest of it)."""
        self.path, self.times, self.start, self.audio_until = path, times, start, audio_until
        self.has_audio = True  # False once the file shows it has no audio stream: its segments are silent
        self.segments = timeline.segments
        self.positions = positions
        self.rate = audio.sample_rate
        self.wanted: dict[int, list[int]] = {}  # planned frame -> its positions (a very short file repeats frames)
        for p in positions:
            self.wanted.setdefault(self.segments[p].frame, []).append(p)
        self.audio = _AudioFeed(self.rate, origin, start is not None)
        self.decoded = start.frame if start else 0  # index of the next video frame out of the decoder
        self.newest: np.ndarray | None = None  # read_frames' stand-in for frames a truncated file lacks
        self.first_frame: np.ndarray | None = None
        self.last_frame = max(self.wanted)
        self.ended = False  # the pass is over: everything it needs has arrived, or the file ended

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(position, [H, W, 3] uint8 RGB frame) for every position, in order; VideoError where open_clip raises."""
        container = open_container(self.path)
        try:
            video = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio else None
            self.has_audio = audio is not None
            if self.start is not None:
                container.seek(self.start.pts, stream=video, backward=True, any_frame=False)
            target = None if self.start is None else self.start.pts  # skip the packets before this one
            video_ok = True
            for packet in container.demux(*[s for s in (video, audio) if s is not None]):
                if packet.stream is video:
                    if target is not None:
                        if packet.pts is not None and packet.pts > target:
                            raise _SeekMissed("the seek landed past the keyframe")
                        if packet.pts != target:
                            continue
                        target = None
                    if video_ok:
                        video_ok, frames = self._decode_video(packet)
                        yield from frames
                elif packet.size:  # as open_clip: the audio decoder is never flushed with an empty packet
                    for sound in packet.decode():
                        assert isinstance(sound, av.AudioFrame)  # an audio packet decodes to audio
                        self.audio.add(sound)
                if self._has_all():
                    break
            else:
                self.audio.flush()
            if target is not None:
                raise _SeekMissed("the keyframe never came after the seek")
        except (VideoError, _SeekMissed):
            raise
        except DECODE_ERRORS as exc:
            raise VideoError(self.path, f"corrupt or truncated stream ({reason(exc)})") from exc
        finally:
            container.close()
        self.ended = True
        if self.first_frame is None:
            raise VideoError(self.path, "video frames do not decode")
        stand_in = self.newest if self.newest is not None else self.first_frame
        for frame in sorted(f for f in self.wanted if f >= self.decoded):
            for p in self.wanted[frame]:
                yield p, stand_in

    def _decode_video(self, packet: av.Packet) -> tuple[bool, list[tuple[int, np.ndarray]]]:
        """Decode one video packet, converting planned frames; False once the video stops decoding (as read_frames)."""
        out: list[tuple[int, np.ndarray]] = []
        try:
            for frame in packet.decode():
                if self.decoded in self.wanted or self.first_frame is None:
                    image = upright(frame)
                    self.first_frame = image if self.first_frame is None else self.first_frame
                    if self.decoded in self.wanted:
                        self.newest = image
                        out += [(p, image) for p in self.wanted[self.decoded]]
                self.decoded += 1
        except DECODE_ERRORS as exc:
            if self.first_frame is None:
                raise VideoError(self.path, f"video frames do not decode ({reason(exc)})") from exc
            return False, out
        return True, out

    def _has_all(self) -> bool:
        """Every wanted frame is out, and the audio the scored segments need (the resampler's flush is not needed)."""
        audio_in = not self.has_audio or (not self.audio.waiting and self.audio.buffer.end >= self.audio_until)
        return self.decoded > self.last_frame and audio_in

    def audio_ready(self, position: int, window: int) -> bool:
        """Whether the audio window of `position` has arrived (or never will: the audio ended or lags far behind)."""
        if self.ended or not self.has_audio:
            return True
        if self.audio.waiting:  # a chunk's audio is not placed yet
            return False
        needed = round(self.segments[position].centre * self.rate) - window // 2 + window
        lag = float(self.times.t[min(self.decoded, self.times.count) - 1]) - self.audio.buffer.end / self.rate
        return self.audio.buffer.end >= needed or lag > MAX_AV_SKEW_S


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

    def pieces(self, grid_pass: _GridPass) -> Iterator[RecordingPart]:
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

    def _ready(self, grid_pass: _GridPass, part: range, tracked: int) -> bool:
        """The tracker has seen N - 1 segments past the part (or the chunk's last), and the part's audio is in."""
        needed = min(part.stop + self.timeline.n - 1, self.chunk.track[1]) - 1
        return tracked >= needed and grid_pass.audio_ready(part.stop - 1, self.config.audio.window_samples)

    def _part(self, grid_pass: _GridPass, part: range) -> list[RecordingPart]:
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
            grid_pass = _GridPass(task.path, facts.times, timeline, positions, config.audio, chunk.start, facts.audio_origin, audio_until)
            yield from scorer.pieces(grid_pass)
        except _SeekMissed:  # raised before the first piece (it waits for the audio and the frames checked)
            scorer = _Chunk(task, chunk, timeline, config, detector, part_size, facts)
            yield from scorer.pieces(_GridPass(task.path, facts.times, timeline, positions, config.audio, None, None, audio_until))
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
