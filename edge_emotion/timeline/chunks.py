"""Long recordings in time chunks for the worker pool, so one long file keeps every worker busy, and people
matched across the chunks' borders.

    probe (parent, demux only: frame count, clean keyframes) --plan_chunks--> chunks of whole windows
    a worker per chunk: decode from its keyframe, track, score, pieces   (timeline/recording.py)
    parent: each chunk's people matched to the previous chunk's by their boxes (`stitch`), then rows

Windows are shared out, never cut: chunk c reports windows [w_c, w_c+1) and scores every segment they
use, so neighbouring chunks overlap by N - 1 segments, each window's rows come from one chunk, and no
window is lost or doubled. A borrowed box reaches N - 1 segments (timeline/people.py), so a chunk's
tracker runs from N - 1 segments before the first segment it scores to N - 1 after the last; its start
is rounded down to a multiple of detect_every, the beat on which the whole recording's tracker runs the
full cascade. The people both chunks tracked are matched by their boxes on the positions both saw, and
numbered over the whole recording in order of first sighting, left to right on a tie: the tracker's
own numbering.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import VideoError
from edge_emotion.io.probe import Cut, VideoFacts, header_duration, probe
from edge_emotion.preprocess.tracks import TrackStore, match_people
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


def plan_chunks(timeline: Timeline, cuts: Sequence[Cut], count: int, config: PreprocessConfig) -> list[Chunk]:
    """`count` chunks of (nearly) equal numbers of windows. Each tracks from N - 1 segments before its first scored
    one, rounded down to a multiple of detect_every (the beat of the whole recording's full cascade), and starts
    decoding at the last cut early enough for that frame and, AUDIO_PREROLL_S sooner, its first audio window."""
    n, total, beat = timeline.n, len(timeline.windows), max(1, config.face.detect_every)
    count = max(1, min(count, total))
    bounds = [round(c * total / count) for c in range(count + 1)]
    chunks = []
    for c in range(count):
        w0, w1 = bounds[c], bounds[c + 1]
        score = (timeline.windows[w0].first, timeline.windows[w1 - 1].first + n)
        track = (max(0, score[0] - (n - 1)) // beat * beat, min(len(timeline.segments), score[1] + n - 1))
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
    paths: Sequence[Path], grid_for: Callable[[float], SegmentGrid], chunking: Chunking, workers: int, config: PreprocessConfig
) -> Iterator[RecordingTask]:
    """The pool's tasks, made as the pool asks for them: a short file is one task probed by its worker, a long one
    (by its header) is probed here and cut into chunks on its keyframes. A file that will not probe here, or has no
    keyframe to cut on, is one task: its worker gives its rows, or its error row."""
    for file, path in enumerate(paths):
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


def stitch(chunks: Sequence[TrackStore]) -> list[dict[int, int]]:
    """Per chunk (in time order): its people -> person ids over the whole recording.

    A person of chunk c is one of chunk c - 1's by the one renumbering rule (tracks.match_people: their boxes
    overlap on the positions both tracked). Ids follow the first sighting, then the left edge.
    """
    groups: list[list[tuple[int, int]]] = []  # each: the (chunk, person) pairs of one person
    group_of: dict[tuple[int, int], int] = {}
    for c, sightings in enumerate(chunks):
        matched = match_people(chunks[c - 1].boxes, sightings.boxes) if c else {}
        for person in sorted(sightings.boxes):
            g = group_of[(c - 1, matched[person])] if person in matched else len(groups)
            if g == len(groups):
                groups.append([])
            groups[g].append((c, person))
            group_of[(c, person)] = g
    first = [min(chunks[c].first_seen(p) for c, p in group) for group in groups]
    order = sorted(range(len(groups)), key=lambda g: first[g])
    ids = {g: i for i, g in enumerate(order)}
    return [{p: ids[group_of[(c, p)]] for p in sightings.boxes} for c, sightings in enumerate(chunks)]
