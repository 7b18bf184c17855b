"""A recording's timeline inputs in parts: one decoding pass, only the planned frames converted, memory flat with length.

    probe (demux only: frame rate, frame count) --plan_timeline--> segments in time order
    --one pass: video decoded, planned frames converted; audio resampled as it arrives-->
    parts of PART_SEGMENTS consecutive segments --segments.extract--> faces + spectrograms per part

The frames and samples are the ones `open_clip` and `read_frames` give (the same packets, the
same resampler fed the same audio frames in the same order), so a part's inputs equal `extract`
on the whole decoded file for the same segments. The pass holds the planned frames from its
current part's first one to the newest decoded one, and the audio from the current part's first
window on: seconds of media, whatever the recording's length.

A recording shorter than one window is one part planned as `score` plans a clip (open_clip and
extract: today's numbers). No-face policy: a segment whose own frame has no face borrows the
nearest box within its part (PART_SEGMENTS segments, 4 s at 0.25 s each), never one from
minutes away. Parts reach the parent one by one (run/pool.py streams a job's iterator), so
nothing the size of the recording ever crosses a pipe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from edge_emotion.config import PreprocessConfig, SpectrogramParams
from edge_emotion.errors import VideoError
from edge_emotion.io.decode import DECODE_ERRORS, Clip, _fps, _open_container, _reason, _upright, open_clip
from edge_emotion.preprocess.audio import audio_windows, is_silent
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.plan import Segment
from edge_emotion.preprocess.segments import extract
from edge_emotion.run.clip_inputs import ClipInputs
from edge_emotion.run.pool import DEFAULT_TIMEOUT_S, WorkerPool
from edge_emotion.run.timeline import Timeline, make_grid, plan_timeline

PART_SEGMENTS = 16  # segments per part: 16 full frames held at most (44 MB at 720p), ~10 MB of inputs per message
MAX_AV_SKEW_S = 5.0  # video this far past a part's audio: the audio has ended early (the rest of the part is silent)


@dataclass
class RecordingPart(ClipInputs):
    """Consecutive segments of one recording's timeline with their inputs; `score_clips` batches them like clips."""

    first: int = 0  # position of its first segment in the recording's timeline
    frame_count: int = 0  # the recording's video frames (packets, as open_clip counts them)
    silent_flags: np.ndarray | None = None  # [C] bool: the segment's audio window is silent
    last: bool = True  # no part of this recording follows


@dataclass(frozen=True)
class VideoFacts:
    """What planning a recording needs, read without decoding a frame."""

    fps: float
    frame_count: int
    width: int
    height: int


def probe(path: str | Path) -> VideoFacts:
    """Frame rate and frame count (video packets, demuxed only); the same checks and causes as open_clip."""
    path = Path(path)
    container = _open_container(path)
    try:
        if not container.streams.video:
            raise VideoError(path, "no audio or video stream (empty or zero-duration file)" if not container.streams.audio else "no video stream")
        if not container.streams.audio:
            raise VideoError(path, "no audio stream")
        video = container.streams.video[0]
        fps = _fps(video)
        if fps <= 0:
            raise VideoError(path, "video stream has no frame rate")
        frame_count = sum(1 for packet in container.demux(video) if packet.size)
        width, height = video.codec_context.width, video.codec_context.height
    except VideoError:
        raise
    except DECODE_ERRORS as exc:
        raise VideoError(path, f"corrupt or truncated stream ({_reason(exc)})") from exc
    finally:
        container.close()
    if frame_count == 0:
        raise VideoError(path, "video stream holds no frames (zero duration)")
    if width <= 0 or height <= 0:
        raise VideoError(path, f"invalid frame size {width}x{height}")
    return VideoFacts(fps, frame_count, width, height)


class _AudioBuffer:
    """The resampled audio from sample `start` on, in the chunks it arrived in."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.start = 0  # sample index of the first sample held
        self.end = 0  # sample index after the last sample received

    def append(self, samples: np.ndarray) -> None:
        self.chunks.append(samples)
        self.end += len(samples)

    def take(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) of the recording, cut at what has arrived; everything before `a` is dropped."""
        assert a >= self.start, f"sample {a} was dropped (the buffer starts at {self.start})"
        held = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)  # samples [start, end)
        out = held[a - self.start : max(a, b) - self.start].copy()
        self.chunks, self.start = [held[a - self.start :]], a
        return out


@dataclass
class _Part:
    """One part as the pass hands it out: its segments (audio centres relative to `clip`'s waveform), frames."""

    first: int
    clip: Clip
    segments: list[Segment]
    frames: dict[int, np.ndarray]  # planned frame index -> [H, W, 3] uint8 RGB, upright


class _GridPass:
    """One pass over a recording: converts the planned frames, resamples the audio, hands out parts in order."""

    def __init__(self, path: Path, facts: VideoFacts, timeline: Timeline, audio: SpectrogramParams, part_size: int) -> None:
        self.path, self.facts, self.segments, self.params = path, facts, timeline.segments, audio
        self.part_size = part_size
        self.rate = audio.sample_rate
        self.length = audio.window_samples
        centres = np.array([s.centre for s in self.segments])  # [S] seconds
        self.starts = np.round(centres * self.rate).astype(np.int64) - self.length // 2  # [S] first sample, as audio_windows
        self.planned = {s.frame for s in self.segments}
        self.frames: dict[int, np.ndarray] = {}
        self.decoded = 0  # video frames decoded so far
        self.newest_planned: np.ndarray | None = None  # read_frames' stand-in for frames a truncated file lacks
        self.first_frame: np.ndarray | None = None
        self.audio = _AudioBuffer()
        self.next = 0  # position of the next part's first segment

    def parts(self) -> Iterator[_Part]:
        """Every part in order; VideoError for a file that breaks where open_clip would raise."""
        container = _open_container(self.path)
        try:
            video, audio = container.streams.video[0], container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
            video_ok = True
            for packet in container.demux(video, audio):
                if packet.stream is video:
                    video_ok = video_ok and self._decode_video(packet)
                elif packet.size:  # as open_clip: the audio decoder is never flushed with an empty packet
                    for frame in packet.decode():
                        assert isinstance(frame, av.AudioFrame)  # an audio packet decodes to audio
                        for out in resampler.resample(frame):
                            self.audio.append(out.to_ndarray().reshape(-1))
                while self.next < len(self.segments) and self._ready(video_ok):
                    yield self._part()
            for out in resampler.resample(None):
                self.audio.append(out.to_ndarray().reshape(-1))
        except VideoError:
            raise
        except DECODE_ERRORS as exc:
            raise VideoError(self.path, f"corrupt or truncated stream ({_reason(exc)})") from exc
        finally:
            container.close()
        if self.first_frame is None:
            raise VideoError(self.path, "video frames do not decode")
        while self.next < len(self.segments):
            yield self._part()

    def _decode_video(self, packet: av.Packet) -> bool:
        """Decode one video packet, converting planned frames; False once the video stops decoding (as read_frames)."""
        try:
            for frame in packet.decode():
                if self.decoded in self.planned or self.decoded == 0:
                    image = _upright(frame)
                    self.first_frame = image if self.decoded == 0 else self.first_frame
                    if self.decoded in self.planned:
                        self.frames[self.decoded] = self.newest_planned = image
                self.decoded += 1
        except DECODE_ERRORS as exc:
            if self.first_frame is None:
                raise VideoError(self.path, f"video frames do not decode ({_reason(exc)})") from exc
            return False
        return True

    def _end(self) -> int:
        return min(self.next + self.part_size, len(self.segments))

    def _ready(self, video_ok: bool) -> bool:
        last = self._end() - 1
        if video_ok and self.decoded <= self.segments[last].frame:
            return False
        audio_needed = int(self.starts[last]) + self.length
        video_time = self.decoded / self.facts.fps
        return self.audio.end >= audio_needed or video_time - self.audio.end / self.rate > MAX_AV_SKEW_S

    def _part(self) -> _Part:
        first, end = self.next, self._end()
        a = max(0, int(self.starts[first]))
        waveform = self.audio.take(a, int(self.starts[end - 1]) + self.length)
        shift = a / self.rate  # the part's waveform starts at sample a of the recording
        segments = [Segment(s.frame, s.centre - shift) for s in self.segments[first:end]]
        frames = {s.frame: self._frame(s.frame) for s in segments}
        clip = Clip(self.path, self.facts.fps, self.facts.frame_count, self.facts.width, self.facts.height, waveform, self.rate)
        self.next = end
        keep_from = self.segments[end].frame if end < len(self.segments) else self.decoded
        self.frames = {i: f for i, f in self.frames.items() if i >= keep_from}
        return _Part(first, clip, segments, frames)

    def _frame(self, index: int) -> np.ndarray:
        """The planned frame; where a truncated file never decoded it, read_frames' stand-in: the newest planned frame
        that did decode (nothing after it decoded either), else the first frame."""
        stand_in = self.newest_planned if self.newest_planned is not None else self.first_frame
        assert stand_in is not None  # parts are handed out only after a frame decoded
        return self.frames.get(index, stand_in)


def silent_flags(clip: Clip, segments: Sequence[Segment], params: SpectrogramParams) -> np.ndarray:
    """[C] bool per segment: its audio window (the same one extract cuts) is silent."""
    centres = np.array([s.centre for s in segments])
    return is_silent(audio_windows(clip.waveform, clip.sample_rate, centres, params.window_s))


def recording_parts(
    path: str | Path, index: int, config: PreprocessConfig, window_s: float, hop_s: float, detector: FaceDetector,
    part_size: int = PART_SEGMENTS,
) -> Iterator[RecordingPart]:
    """The recording's timeline inputs, part after part. Never raises for a bad file: the last part carries the error."""
    timings: dict[str, float] = {}
    try:
        start = time.perf_counter()
        facts = probe(path)
        timeline = plan_timeline(make_grid(config.n_segments, window_s, hop_s, facts.fps), facts.frame_count)
        if timeline.whole_file:
            yield _short_part(path, index, facts, timeline, config, detector, time.perf_counter() - start)
            return
        parts = _GridPass(Path(path), facts, timeline, config.audio, part_size).parts()
        timings["decode"] = time.perf_counter() - start
        while True:
            start = time.perf_counter()
            part = next(parts, None)
            timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - start
            if part is None:
                return
            result = _result(path, index, facts, part.first, part.first + len(part.segments) == len(timeline.segments), timings)
            result.people = [extract(part.clip, part.segments, config, detector=detector, timings=result.timings, decoded=part.frames)]
            result.silent_flags = silent_flags(part.clip, part.segments, config.audio)
            timings = {}
            yield result
    except VideoError as exc:
        yield RecordingPart(index, str(path), error=exc.cause)
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the folder; the row names the cause
        yield RecordingPart(index, str(path), error=f"unexpected {type(exc).__name__}: {exc}")


def _result(path: str | Path, index: int, facts: VideoFacts, first: int, last: bool, timings: dict[str, float]) -> RecordingPart:
    return RecordingPart(
        index, str(path), fps=facts.fps, duration=facts.frame_count / facts.fps, timings=dict(timings),
        first=first, frame_count=facts.frame_count, last=last,
    )


def _short_part(
    path: str | Path, index: int, facts: VideoFacts, timeline: Timeline, config: PreprocessConfig, detector: FaceDetector, probe_s: float
) -> RecordingPart:
    """A recording shorter than one window: one part, decoded and planned as `score` does a clip."""
    start = time.perf_counter()
    clip = open_clip(path, config.audio.sample_rate)
    result = _result(path, index, facts, 0, True, {"decode": probe_s + time.perf_counter() - start})
    result.people = [extract(clip, timeline.segments, config, detector=detector, timings=result.timings)]
    result.silent_flags = silent_flags(clip, timeline.segments, config.audio)
    return result


@dataclass(frozen=True)
class TimelineJob:
    """The timeline scoring job for a WorkerPool: the FaceDetector once per worker, then each file's parts."""

    config: PreprocessConfig
    window_s: float
    hop_s: float
    face_device: str = "cpu"
    nets: Path | None = None  # a folder of detector nets (score --detector); None: the packaged ONNX

    def setup(self, threads: int) -> Callable[[Path, int], Iterator[RecordingPart]]:
        detector = FaceDetector(self.config.face, device=self.face_device, threads=threads, nets=self.nets)
        return lambda path, index: recording_parts(path, index, self.config, self.window_s, self.hop_s, detector)

    def failed(self, index: int, path: Path, cause: str) -> RecordingPart:
        return RecordingPart(index, str(path), error=cause)


class InlineRecordings:
    """Recordings' parts one file after another in this process (workers=0). No timeout."""

    def __init__(self, job: TimelineJob) -> None:
        self.run_file = job.setup(threads=0)  # 0: ONNX Runtime's own thread count, as InlineLoader's detector

    def run(self, paths: Sequence[Path]) -> Iterator[RecordingPart]:
        for index, path in enumerate(paths):
            yield from self.run_file(path, index)

    def close(self) -> None:
        """Nothing to release; here so both loaders share one interface."""

    def __enter__(self) -> InlineRecordings:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_recordings(job: TimelineJob, workers: int, timeout: float = DEFAULT_TIMEOUT_S) -> InlineRecordings | WorkerPool[RecordingPart]:
    """workers = 0: parts from this process; workers >= 1: a WorkerPool whose timeout applies per part (progress)."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return InlineRecordings(job) if workers == 0 else WorkerPool(job, workers, timeout)
