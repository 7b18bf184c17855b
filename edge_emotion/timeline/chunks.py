"""Long recordings in time chunks for the worker pool, so one long file keeps every worker busy, and people
matched across the chunks' borders.

    probe (parent, demux only: frame count, clean keyframes) --plan_chunks--> chunks of whole windows
    a worker per chunk: decode from its keyframe, track, score, pieces   (timeline/recording.py)
    parent: each chunk's people matched to the previous chunk's by their boxes (`People`), then its rows

Windows are shared out, never cut: chunk c reports windows [w_c, w_c+1) and scores every segment they
use, so neighbouring chunks overlap by N - 1 segments, each window's rows come from one chunk, and no
window is lost or doubled. A borrowed box reaches N - 1 segments (timeline/people.py), so a chunk's
tracker runs from N - 1 segments before the first segment it scores to N - 1 after the last; its start
is rounded down to a multiple of detect_every, the beat on which the whole recording's tracker runs the
full cascade. The people both chunks tracked are matched by their boxes on the positions both saw; the
others are numbered after everyone of the chunks before, in order of first sighting, left to right on a
tie: the tracker's own numbering. So a chunk's person numbers depend on the chunks before it only, its
rows are written as soon as theirs are, and a killed run resumes from its first unfinished chunk with
what the chunk before it left (`People.state`, kept by run/results_file.py beside the rows).

What differs from the recording scored in one piece, exactly (tests/test_timeline_chunks.py):

- a chunk's tracker finds everyone in view on its first frame and then runs the full cascade on the
  beat. The whole recording's tracker runs it on the same beat until it first runs it off the beat (on
  a face it lost and the frames after, on every frame while nobody is in view); its beat is shifted
  from then on. While the beats agree, the two trackers give the same boxes and rows. Where they do
  not: (1) a person who walks in is found on each tracker's next full cascade, up to detect_every - 1
  segments apart; (2) with FaceParams.follow = "onet" (the default) a followed face has the follower's
  own box, which depends on the full cascade it was followed from (IoU ~0.93 of the cascade's; 0.95 to
  0.995 between the two trackers' boxes in the test), and its crops and probabilities move as much as
  such a box moves them. With follow = "cascade" a followed face gets the full cascade's own box,
  whatever it was followed from: only (1) remains.
- audio whose decoder carries state across frames beyond the previous one: a chunk decodes its audio
  from a few frames before it needs it (timeline/recording.py aligns FFmpeg's resampler to the same phase,
  so PCM and resampled audio come out the same), but AAC's noise substitution draws from a random
  generator the decoder keeps for the whole stream: bands coded as noise get other noise.
- containers that time audio in milliseconds (Matroska, FLV) place a chunk's first audio frame to the
  millisecond, not the sample, unless its frames start on whole milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import VideoError
from edge_emotion.io.probe import Cut, VideoFacts, header_duration, probe
from edge_emotion.preprocess.faces import Box
from edge_emotion.preprocess.tracks import MainPerson, TrackStore, match_people
from edge_emotion.timeline.grid import SegmentGrid, Timeline, plan_timeline

AUDIO_PREROLL_S = 1.0  # a chunk decodes from a keyframe at least this long before the first audio it needs


@dataclass(frozen=True)
class Chunking:
    """How long recordings are cut: at most `max_s` seconds a chunk, and one per worker once each gets `min_s`."""

    max_s: float = 300.0  # each border costs 3 (N - 1) segments tracked twice: 2 % of 5 minutes at N = 10
    min_s: float = 20.0  # so a minute on 2 workers is 2 chunks, half a minute one

    def count(self, duration: float, workers: int) -> int:
        """Chunks for a recording of `duration` seconds on `workers` processes (1 without a second process)."""
        if workers < 2 or duration < 2 * self.min_s:
            return 1
        return max(math.ceil(duration / self.max_s), min(workers, math.floor(duration / self.min_s)))


@dataclass(frozen=True)
class Chunk:
    """One chunk of a recording's timeline: where its worker starts decoding, what it tracks, scores and reports."""

    number: int
    count: int
    windows: tuple[int, int]  # windows [a, b) whose rows it makes
    score: tuple[int, int]  # timeline positions [a, b) it scores: its windows' segments
    track: tuple[int, int]  # positions [a, b) its tracker sees: N - 1 beyond the scored ones on both sides
    start: Cut | None  # None: decode from the first packet


def whole(timeline: Timeline) -> Chunk:
    """The one chunk of a recording scored in one piece."""
    s = len(timeline.segments)
    return Chunk(0, 1, (0, len(timeline.windows)), (0, s), (0, s), None)


def track_start(timeline: Timeline, window: int, beat: int) -> int:
    """The first position tracked by a chunk whose first window is `window`: N - 1 segments before the window, rounded
    down to a multiple of `beat` (detect_every: the beat of the whole recording's full cascade)."""
    return max(0, timeline.windows[window].first - (timeline.n - 1)) // max(1, beat) * max(1, beat)


def plan_chunks(timeline: Timeline, cuts: Sequence[Cut], count: int, config: PreprocessConfig) -> list[Chunk]:
    """`count` chunks of (nearly) equal numbers of windows. Each tracks from `track_start`, and starts decoding at
    the last cut early enough for that frame and, AUDIO_PREROLL_S sooner, its first audio window."""
    n, total = timeline.n, len(timeline.windows)
    count = max(1, min(count, total))
    bounds = [round(c * total / count) for c in range(count + 1)]
    chunks = []
    for c in range(count):
        w0, w1 = bounds[c], bounds[c + 1]
        score = (timeline.windows[w0].first, timeline.windows[w1 - 1].first + n)
        track = (track_start(timeline, w0, config.face.detect_every), min(len(timeline.segments), score[1] + n - 1))
        first_frame = timeline.segments[track[0]].frame
        audio_s = timeline.segments[score[0]].centre - config.audio.window_s / 2 - AUDIO_PREROLL_S
        usable = [cut for cut in cuts if cut.frame <= first_frame and cut.time_s <= audio_s and cut.frame > 0]
        chunks.append(Chunk(c, count, (w0, w1), score, track, usable[-1] if usable and c else None))
    return chunks


@dataclass(frozen=True)
class RecordingTask:
    """What one worker task scores: a whole recording, or (with facts and a chunk, from the parent's probe) a chunk."""

    file: int  # the file's place in the work list (rows are written in this order)
    path: Path
    chunk: Chunk | None = None  # None: the whole recording, probed by the worker
    facts: VideoFacts | None = None  # the parent's probe of a chunked recording (its frames' times, audio origin)


def recording_tasks(
    paths: Sequence[Path], grid_for: Callable[[float], SegmentGrid], chunking: Chunking, workers: int, config: PreprocessConfig,
    planned: Mapping[int, tuple[VideoFacts, Sequence[Chunk]]] | None = None,
) -> Iterator[RecordingTask]:
    """The pool's tasks, made as the pool asks for them: a short file is one task probed by its worker, a long one
    (by its header) is probed here and cut into chunks on its keyframes. A file that will not probe here, or has no
    keyframe to cut on, is one task: its worker gives its rows, or its error row. A file in `planned` (a resumed
    one, `resumed_chunks`) is the chunks given there."""
    for file, path in enumerate(paths):
        if planned and file in planned:
            facts, chunks = planned[file]
            yield from (RecordingTask(file, path, chunk, facts) for chunk in chunks)
            continue
        duration = header_duration(path) if workers >= 2 else None
        if duration is None or chunking.count(duration, workers) < 2:
            yield RecordingTask(file, path)
            continue
        try:
            facts, cuts = probe(path, keyframes=True)
        except VideoError:
            yield RecordingTask(file, path)
            continue
        timeline = plan_timeline(grid_for(facts.fps), facts.times)
        count = chunking.count(facts.times.duration, workers) if cuts and not timeline.whole_file else 1
        for chunk in plan_chunks(timeline, cuts, count, config):
            yield RecordingTask(file, path, chunk, facts)


def resumed_chunks(
    path: Path, grid_for: Callable[[float], SegmentGrid], config: PreprocessConfig, count: int, done: Sequence[tuple[int, int]]
) -> tuple[VideoFacts, list[Chunk]] | None:
    """The chunks still to score of a recording that an earlier run cut into `count` chunks and wrote the rows of the
    first len(done) of (their windows: `done`). Planned again (the plan is a function of the file, the grid and
    `count`) and checked: None unless the finished chunks are the ones planned now (then score it again whole)."""
    try:
        facts, cuts = probe(path, keyframes=True)
    except VideoError:
        return None
    chunks = plan_chunks(plan_timeline(grid_for(facts.fps), facts.times), cuts, count, config)
    if len(chunks) != count or [c.windows for c in chunks[: len(done)]] != list(done):
        return None
    return facts, chunks[len(done) :]


@dataclass
class People:
    """A recording's people numbered chunk by chunk (in time order), and its main person so far (--faces largest).

    A person of a chunk is one of the previous chunk's by the one renumbering rule (tracks.match_people: their
    boxes overlap on the positions both tracked); anyone else gets the next number, in order of first sighting
    (position, then left edge). `state` is what the next chunk needs of the ones before: a resume starts from it.
    """

    beat: int = 1  # detect_every: where the next chunk's tracker starts (track_start)
    next_id: int = 0
    shared: dict[int, dict[int, Box]] = field(default_factory=dict)  # id -> position -> box, on the next chunk's positions
    main: MainPerson = field(default_factory=MainPerson)

    def number(self, chunk: Chunk, tracks: TrackStore, timeline: Timeline) -> dict[int, int]:
        """The chunk's people -> their numbers over the recording; keeps their boxes where the next chunk tracks too."""
        matched = match_people(self.shared, tracks.boxes)
        ids: dict[int, int] = {}
        for person in sorted(tracks.boxes, key=tracks.first_seen):
            ids[person] = matched[person] if person in matched else self.next_id
            self.next_id += person not in matched
        last = chunk.windows[1] == len(timeline.windows)
        start = len(timeline.segments) if last else track_start(timeline, chunk.windows[1], self.beat)
        self.shared = {ids[p]: {q: box for q, box in seen.items() if q >= start} for p, seen in tracks.boxes.items()}
        self.shared = {p: seen for p, seen in self.shared.items() if seen}
        return ids

    def state(self) -> dict[str, Any]:
        """JSON of what the next chunk needs: the next number, the main person, the shared boxes."""
        shared = {str(p): {str(q): list(box) for q, box in seen.items()} for p, seen in self.shared.items()}
        return {"next_id": self.next_id, "main": self.main.current, "shared": shared}

    @classmethod
    def resumed(cls, beat: int, state: Mapping[str, Any] | None) -> People:
        """The people as `state` left them (an earlier run's, read back); None: a recording's first chunk."""
        if state is None:
            return cls(beat)
        shared = {int(p): {int(q): tuple(box) for q, box in seen.items()} for p, seen in state["shared"].items()}
        people = cls(beat, int(state["next_id"]), shared)
        people.main.current = state["main"]
        return people
