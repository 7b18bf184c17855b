"""A synthetic voice: harmonic tone with a pitch contour, syllable-like bursts and background noise.

The *audio cue* is one of two speaking styles (see `corpus.py`):
  0 {ANG, FEA, NEU}: high pitch (about 200-280 Hz), fast syllables (about 6/s), rising contour;
  1 {DIS, HAP, SAD}: low pitch (about 105-145 Hz), slow syllables (about 3/s), falling contour.
The spectrogram is standardised per window, so loudness carries nothing; pitch
(harmonic spacing), rhythm and contour do. The actor's register, speaking rate
and timbre and each clip's noise and timing are nuisance, never crossing the
boundary between the two styles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: per style: (base pitch Hz, syllables per second, relative pitch change across a syllable)
STYLES: tuple[tuple[float, float, float], ...] = ((240.0, 6.0, 0.25), (125.0, 3.0, -0.25))
MAX_HARMONIC_HZ = 4000.0


@dataclass(frozen=True)
class Voice:
    """An actor's voice: the nuisance the audio model must ignore."""

    register: float  # multiplies the style's base pitch
    tempo: float  # multiplies the style's syllable rate
    tilt: float  # harmonic k has amplitude k**-tilt (timbre)


@dataclass(frozen=True)
class Syllable:
    onset: float  # seconds
    length: float  # seconds
    amplitude: float  # relative, (0, 1]


def random_voice(rng: np.random.Generator) -> Voice:
    """Register and tempo within +-15 %: the two styles' pitch ranges stay apart."""
    register, tempo, tilt = rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15), rng.uniform(0.8, 1.4)
    return Voice(register=float(register), tempo=float(tempo), tilt=float(tilt))


def plan_syllables(style: int, voice: Voice, duration: float, rng: np.random.Generator) -> list[Syllable]:
    """Syllables between a short leading and trailing pause, with jittered spacing and stress."""
    rate = STYLES[style][1] * voice.tempo
    t, end = float(rng.uniform(0.05, 0.25)), duration - float(rng.uniform(0.1, 0.2))
    out: list[Syllable] = []
    while True:
        interval = float(rng.uniform(0.8, 1.2)) / rate
        length = interval * float(rng.uniform(0.6, 0.8))
        if t + length > end:
            break
        out.append(Syllable(t, length, float(rng.uniform(0.6, 1.0))))
        t += interval
    return out


def envelope(times: np.ndarray, syllables: list[Syllable]) -> np.ndarray:
    """Amplitude envelope (sum of Hann-shaped syllables) at `times` seconds: [T] float in [0, 1]."""
    env = np.zeros(times.shape, dtype=np.float64)
    for syl in syllables:
        tau = (times - syl.onset) / syl.length  # [T] position inside the syllable
        inside = (tau >= 0) & (tau <= 1)
        env[inside] += syl.amplitude * np.sin(np.pi * tau[inside]) ** 2
    return np.clip(env, 0.0, 1.0)


def pitch_track(style: int, voice: Voice, times: np.ndarray, syllables: list[Syllable]) -> np.ndarray:
    """f0 in Hz at `times`: base x register, a contour inside each syllable, a slow vibrato. [T]"""
    base, _, slope = STYLES[style]
    f0 = np.full(times.shape, base * voice.register)
    for syl in syllables:
        tau = np.clip((times - syl.onset) / syl.length, 0.0, 1.0)
        inside = (times >= syl.onset) & (times <= syl.onset + syl.length)
        f0[inside] *= 1.0 + slope * (tau[inside] - 0.5)
    return f0 * (1.0 + 0.01 * np.sin(2 * np.pi * 5.0 * times))


def speak(
    style: int, voice: Voice, syllables: list[Syllable], duration: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Render the utterance: [round(duration * sample_rate)] float32 in [-1, 1]."""
    times = np.arange(int(round(duration * sample_rate))) / sample_rate  # [T]
    f0 = pitch_track(style, voice, times, syllables)
    # wrapped to [0, 2pi) in float64 first, so float32 is exact enough for k * phase and twice as fast
    phase = np.mod(2 * np.pi * np.cumsum(f0) / sample_rate, 2 * np.pi).astype(np.float32)  # [T]
    n_harmonics = int(MAX_HARMONIC_HZ // (STYLES[style][0] * voice.register * 1.2))
    k = np.arange(1, n_harmonics + 1, dtype=np.float32)  # [K]
    tone = np.sin(phase[:, None] * k[None, :]) @ (k ** np.float32(-voice.tilt))  # [T, K] @ [K] -> [T]
    speech = tone / np.abs(tone).max() * envelope(times, syllables)
    snr_db = float(rng.uniform(15.0, 30.0))
    noise = rng.standard_normal(times.shape) * np.sqrt(np.mean(speech**2) / 10 ** (snr_db / 10))
    signal = speech + noise
    return (signal / np.abs(signal).max() * rng.uniform(0.4, 0.8)).astype(np.float32)
