"""Which segments the loop computes next and which window it then reports; what it drops when inference falls behind.

The loop asks `next()` and gets a Due: the segments whose frame and sound have arrived, each handed
out once (faces, spectrogram, then the backend when a window needs it), and the window whose segments
are then all computed, if any. Segments are handed out as soon as they are complete, so when a window
completes only its newest segment is left to compute: an event costs hop / L new segments, not N.

Behind a live source (its next window complete for more than a hop) the scheduler goes to the newest
complete window instead of the next one: the windows between are skipped, the segments only they needed are never computed, and the frames that no
reported window covers count as dropped. A window still needs all N of its segments, so the loop lags
by at most about one window plus the work of one. A file read as fast as it decodes (a lossless buffer)
computes every segment and reports every window: the scheduler tells the buffer what the next segment
needs (Demand), and counts what the buffer lost all the same.

Epochs: the grid starts at the first frame (window.py). A reopened source (the buffer's epoch) or a
gap in the video (a segment slot with no frame of its own) starts a new epoch, a new grid from the next
frame, so no window ever holds segments from both sides of a gap. The stream ends here too: the
source's end, --duration, a stop request, or the watchdog's stall check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_emotion import defaults
from edge_emotion.stream.buffer import Demand, LiveBuffer, VideoItem
from edge_emotion.stream.events import StreamSummary
from edge_emotion.stream.options import StreamOptions
from edge_emotion.stream.window import EpochGrid, pick_slot

WATCHDOG_GRACE_S = 2.0  # the loop's own stall check, should the decoder's read timeout never fire
MAX_AV_SKEW_S = defaults.MAX_AV_SKEW_S  # video this far past a segment's audio window: stop waiting for its sound
NO_WINDOW = 1 << 62  # "no limit" for the last window


@dataclass(frozen=True)
class SegmentWork:
    """A complete segment to compute: its frame and its audio window."""

    j: int
    frame: Any  # av.VideoFrame: the newest frame at or before the segment's slot
    audio: np.ndarray  # [window_samples] float32: [c - d/2, c + d/2) of the sound, zeros where none arrived
    arrival: float  # time.monotonic() when the last of these arrived
    time: float = 0.0  # the frame's stream time: the audio window's centre c
    seq: int = 0  # the frame's number in the run (a file's frame index while nothing is lost)


@dataclass(frozen=True)
class Due:
    """What the loop does next: compute `segments` (in order), then report `window` if it is not None."""

    epoch: int  # 0, 1, 2 ...: a new one after each reconnect or gap
    grid: EpochGrid
    segments: list[SegmentWork]
    window: int | None


class WindowScheduler:
    """The consumer's side of the buffer: waits for complete segments and windows and hands them out, skipping
    when behind. Counts drops, skipped windows, epochs and reconnects in `summary`; `grid_at(t0)` is the grid of
    an epoch whose first frame is at stream time t0."""

    def __init__(self, buffer: LiveBuffer, grid_at: Callable[[float], EpochGrid], options: StreamOptions, live: bool,
                 summary: StreamSummary, stop: threading.Event, log: Callable[[str], None]) -> None:
        self.buffer, self.grid_at, self.options, self.live = buffer, grid_at, options, live
        self.summary, self.stop, self.log = summary, stop, log
        self.grid: EpochGrid | None = None
        self.epoch = -1
        self.buffer_epoch = 0
        self.j_next = 0  # the next segment to compute
        self.k_next = 0  # the next window to report
        self.covered_seq = -1  # newest frame that a reported window covers
        self.lost_seen = 0
        self.done_s = 0.0  # stream seconds of earlier epochs
        self.latest: float | None = None  # the newest frame of this epoch
        self.resume_after: float | None = None  # after a gap: the next epoch starts with the first frame after this
        self.duration_end: float | None = None
        self.audio_end_told = False

    def next(self) -> Due | str:
        """The next work, or why the stream ended; blocks (holding the buffer's lock while it looks)."""
        b = self.buffer
        with b.cond:
            while True:
                if b.error is not None:
                    raise b.error
                if self.stop.is_set():
                    return "interrupted"
                if b.epoch != self.buffer_epoch:
                    self._reconnected()
                if b.video:
                    self.latest = b.video[-1].time
                if self.grid is None:
                    self._start_grid()
                if self.grid is not None:
                    due = self._due(self.grid)
                    if due is not None:
                        return due
                if "video" in b.ended:
                    return b.ended["video"]
                if "audio" in b.ended and not self.audio_end_told:
                    self.audio_end_told = True
                    self.log(f"the sound ended ({b.ended['audio']}); going on without it (windows count as silent)")
                if self.live and not self.options.reconnect and time.monotonic() - b.last_arrival > self.options.timeout + WATCHDOG_GRACE_S:
                    return f"no data for {self.options.timeout:g} s: the source stopped or was lost"
                b.cond.wait(0.1)

    def stream_seconds(self) -> float:
        """Stream seconds received so far, over every epoch."""
        return self.done_s + self._epoch_seconds(self.latest)

    # ------------------------------------------------------------------ internals (hold the buffer's lock)

    def _due(self, g: EpochGrid) -> Due | str | None:
        """The work to do now, a reason to end, or None (wait)."""
        last_k = self._last_window(g)
        if self.k_next > last_k:
            return f"--duration {self.options.duration:g} s reached"
        j_ready = min(self._ready_segment(g), g.segments(last_k).stop - 1)
        if j_ready < self.j_next:
            return None
        k_ready = g.last_window_through(j_ready)
        window: int | None = None
        j_from, j_to = self.j_next, j_ready
        if k_ready >= self.k_next:  # a window is complete: the next one, or the newest when the loop is behind
            window = k_ready if self.live and k_ready > self.k_next and self._behind(g) else self.k_next
            self.summary.skipped_windows += window - self.k_next
            segments = g.segments(window)
            j_from, j_to = max(self.j_next, segments.start), segments.stop - 1
        works: list[SegmentWork] = []
        for j in range(j_from, j_to + 1):
            work = self._work(g, j)
            if work is None:  # a gap in the video: this epoch ends before segment j
                self._gap(g, j)
                return Due(self.epoch, g, works, None) if works else None
            works.append(work)
        self.j_next = j_to + 1
        if window is not None:
            self._count_drops(g, window, skipped=window > self.k_next)
            self.k_next = window + 1
        self._demand(g, g.slot(self.j_next))
        return Due(self.epoch, g, works, window)

    def _demand(self, g: EpochGrid, keep_from: float) -> None:
        """Tell the buffer what segment j_next needs: kept from `keep_from`; complete at its last frame and its sound's end
        (exactly _ready_segment's test, so a lossless decoder never waits for a loop that waits for it)."""
        a, b = g.audio_span(self.j_next)  # centred at the slot; the frame on screen may be up to a gap older
        self.buffer.set_demand(Demand(keep_from, a - g.sample(g.gap_s), g.last_frame(self.j_next) - g.tolerance, b))

    def _ready_segment(self, g: EpochGrid) -> int:
        """The newest segment whose frame and audio window have arrived (-1 if none). The sound is not waited for once
        it has ended, or once the video is MAX_AV_SKEW_S past a segment's audio window (a lagging or dead microphone
        must not stop the events)."""
        b = self.buffer
        latest = b.latest_video()
        if latest is None:
            return -1
        j_video = g.last_covered_at(latest + g.tolerance)
        if "audio" in b.ended:
            return j_video
        end = b.audio_end()
        j_audio = -1 if end is None else g.last_audio_at(end)
        j_skew = g.last_slot_at(latest - MAX_AV_SKEW_S - g.audio.window_s / 2)
        return min(j_video, max(j_audio, j_skew))

    def _behind(self, g: EpochGrid) -> bool:
        """Whether the next window has been complete for longer than a hop (not just completed along with newer ones,
        as at the end of a source, where the sound past its end is silence)."""
        b, j = self.buffer, g.segments(self.k_next).stop - 1  # the window's last segment
        times = np.array([v.time for v in b.video])  # [M]
        i = pick_slot(times, g.last_frame(j), g.tolerance)
        end = g.audio_span(j)[1]
        sound = next((c.arrival for c in b.audio if c.end >= end), b.audio[-1].arrival if b.audio else None)
        completed = max(b.video[i].arrival if i >= 0 else 0.0, sound or 0.0)
        return time.monotonic() - completed > g.grid.hop * g.grid.segment_s

    def _work(self, g: EpochGrid, j: int) -> SegmentWork | None:
        """Segment j's frame and sound; None when the video has a gap before the segment's last frame."""
        b = self.buffer
        times = np.array([v.time for v in b.video])  # [M]
        slot, last = g.slot(j), g.last_frame(j)
        i, i_last = g.frame_index(times, j), pick_slot(times, last, g.tolerance)
        if i < 0 or times[i] < slot - g.gap_s or times[i_last] < last - g.gap_s or g.ends_in_hole(times, j):
            return None
        item = b.video[i]
        a, end = g.audio_at(item.time)  # face and voice of one instant: the frame's timestamp
        audio, arrival = b.take_audio(a, end, floor=g.sample(g.t0))  # [window_samples]: no sound from before the epoch
        return SegmentWork(j, item.frame, audio, max(item.arrival, arrival or item.arrival), item.time, item.seq)

    def _gap(self, g: EpochGrid, j: int) -> None:
        """A gap in the video before segment j's last frame: the epoch ends; the next starts with the first frame after it."""
        last = g.last_frame(j)
        before = [v.time for v in self.buffer.video if v.time <= last + g.tolerance]
        self.log(f"no video for more than {g.gap_s:.2f} s before {last:.2f} s of stream: a new window grid starts after the gap")
        self.done_s += self._epoch_seconds(before[-1] if before else None)
        self.resume_after, self.grid = last + g.tolerance, None

    def _count_drops(self, g: EpochGrid, k: int, skipped: bool) -> None:
        """Window k is reported: after skipped windows, the frames between the last reported window and it are dropped
        (they are still held: the loop skips forward within the buffer's span)."""
        b = self.buffer
        start, end = g.window_times(k)
        if skipped:
            self.summary.dropped_frames += max(0, b.seq_through(start - g.tolerance) - self.covered_seq)
        self.covered_seq = max(self.covered_seq, b.seq_through(end - g.tolerance))
        if b.lossless:
            self.summary.dropped_frames += b.lost - self.lost_seen
            self.lost_seen = b.lost

    def _last_window(self, g: EpochGrid) -> int:
        """The last window that ends within --duration, as a file's grid counts them (NO_WINDOW without one)."""
        if self.duration_end is None:
            return NO_WINDOW
        return g.grid.window_count(self.duration_end + g.tolerance - g.t0) - 1

    def _start_grid(self) -> None:
        after = self.resume_after
        first: VideoItem | None = next((v for v in self.buffer.video if after is None or v.time > after), None)
        if first is None:
            return
        self.grid = self.grid_at(first.time)
        self.epoch += 1
        self.summary.epochs += 1
        self.j_next, self.k_next, self.covered_seq, self.resume_after = 0, 0, first.seq - 1, None
        if self.duration_end is None and self.options.duration is not None:
            self.duration_end = first.time + self.options.duration
        self._demand(self.grid, first.time)

    def _reconnected(self) -> None:
        """The source was reopened: its old frames are gone; a new grid starts at its first frame."""
        self.done_s += self._epoch_seconds(self.latest)
        self.buffer_epoch = self.buffer.epoch
        self.grid, self.resume_after, self.latest = None, None, None
        self.summary.reconnects += 1

    def _epoch_seconds(self, latest: float | None) -> float:
        if self.grid is None or latest is None:
            return 0.0
        return max(0.0, latest - self.grid.t0 + 1 / self.grid.grid.fps)
