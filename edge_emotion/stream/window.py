"""Rolling windows of a live stream: when each one is complete, and how it becomes a Clip plus its frames.

Window k starts at t0 + k * hop (t0: the first video frame) and holds F = round(window * fps)
frame slots at t_start + j / fps, j = 0 .. F-1: the frames a file of those F frames would hold.
Each slot takes the newest decoded frame at or before it (half a frame of tolerance), so frames
lost in transit or timestamps that jitter never shift the plan. The window's audio is
[t_start, t_start + F / fps), resampled by decode's own resampler: the window is then exactly
the clip `predict` would see in a file cut from the stream at these times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_emotion import defaults
from edge_emotion.config import PreprocessConfig
from edge_emotion.io.decode import Clip, _resample_audio, _upright
from edge_emotion.preprocess.segments import plan_clip
from edge_emotion.stream.buffer import AudioItem, VideoItem

SECONDS_PER_SEGMENT = defaults.STREAM_SECONDS_PER_SEGMENT  # a CREMA-D clip (median ~2.5 s) over the paper's N = 10
MAX_AV_SKEW_S = 2.0  # video this far past a window's end: stop waiting for its audio (zeros, counted silent)


def default_window(config: PreprocessConfig) -> float:
    """Seconds of stream per event when --window is not given: 0.25 s per segment, at least one audio window."""
    return round(max(config.n_segments * SECONDS_PER_SEGMENT, config.audio.window_s), 3)


@dataclass(frozen=True)
class Schedule:
    """Where window k lies on the stream clock."""

    t0: float  # stream seconds of the first frame (of this epoch)
    fps: float
    frames: int  # F slots per window
    hop: float

    @property
    def tolerance(self) -> float:
        return 0.5 / self.fps

    def start(self, k: int) -> float:
        return self.t0 + k * self.hop

    def last_slot(self, k: int) -> float:
        return self.start(k) + (self.frames - 1) / self.fps

    def end(self, k: int) -> float:
        return self.start(k) + self.frames / self.fps

    def newest_complete(self, video_until: float | None, audio_until: float | None, audio_ended: bool) -> int:
        """The largest k whose frames and audio have all arrived (-1 if none yet).

        Audio is not waited for once it has ended, or once the video is more than MAX_AV_SKEW_S past
        the window's end (a lagging or dead microphone must not stop the events).
        """
        if video_until is None:
            return -1
        k_video = math.floor((video_until + self.tolerance - (self.frames - 1) / self.fps - self.t0) / self.hop + 1e-9)
        if audio_ended:
            return k_video
        audio_until = self.t0 if audio_until is None else audio_until
        k_audio = math.floor((audio_until + 1e-6 - self.frames / self.fps - self.t0) / self.hop + 1e-9)  # all of its sound
        k_skew = math.floor((video_until - MAX_AV_SKEW_S - self.frames / self.fps - self.t0) / self.hop + 1e-9)
        return min(k_video, max(k_audio, k_skew))


def pick_slots(times: np.ndarray, slots: np.ndarray, tolerance: float) -> np.ndarray:
    """[M] sorted frame times, [F] slot times -> [F] index of the newest frame at or before each slot (+ tolerance).

    A slot before every frame takes the first one.
    """
    return np.clip(np.searchsorted(times, slots + tolerance, side="right") - 1, 0, max(len(times) - 1, 0))


def window_waveform(audio: list[AudioItem], t_start: float, seconds: float, sample_rate: int) -> np.ndarray:
    """[round(seconds * rate)] float32 mono from t_start: the items resampled together, zeros where none arrived."""
    length = round(seconds * sample_rate)
    out = np.zeros(length, np.float32)
    if not audio:
        return out
    samples = _resample_audio([a.frame for a in audio], sample_rate)  # t = 0 at audio[0].time
    offset = round((audio[0].time - t_start) * sample_rate)  # > 0: the first samples of the window are missing
    src = samples[max(0, -offset) :]
    dst = max(0, offset)
    n = max(0, min(len(src), length - dst))
    out[dst : dst + n] = src[:n]
    return out


@dataclass
class Window:
    """One window's inputs, ready for segments.extract."""

    k: int
    t_start: float
    t_end: float
    clip: Clip
    decoded: dict[int, np.ndarray]  # planned frame index -> [H, W, 3] uint8 RGB
    segments: list
    arrival: float  # monotonic arrival of the window's last frame or sample (latency starts here)


def build_window(
    k: int, schedule: Schedule, video: list[VideoItem], audio: list[AudioItem], config: PreprocessConfig, name: str
) -> Window:
    """The window as a Clip of F frames: plan it (test mode, as `score` does) and convert only the planned frames."""
    t_start, t_end = schedule.start(k), schedule.end(k)
    slots = t_start + np.arange(schedule.frames) / schedule.fps  # [F] stream seconds
    picked = pick_slots(np.array([v.time for v in video]), slots, schedule.tolerance)  # [F] into video
    waveform = window_waveform(audio, t_start, schedule.frames / schedule.fps, config.audio.sample_rate)
    last = video[int(picked[-1])]
    clip = Clip(Path(name), schedule.fps, schedule.frames, last.frame.width, last.frame.height, waveform, config.audio.sample_rate)
    segments = plan_clip(clip, config)
    decoded = {s.frame: _upright(video[int(picked[s.frame])].frame) for s in segments}
    arrival = max([last.arrival, *(a.arrival for a in audio[-1:])])
    return Window(k, t_start, t_end, clip, decoded, segments, arrival)
