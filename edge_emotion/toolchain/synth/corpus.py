"""The synthetic CREMA-D-shaped corpus: plan the clips, render them, write them as FLV with PyAV.

Each emotion is a pair of cues, one per modality, chosen so that each modality
alone confuses some classes and only both together separate all six:

    emotion   video cue (face)      audio cue (voice)
    ANG       0 frown               0 high, fast, rising
    DIS       0 frown               1 low, slow, falling
    FEA       1 open mouth          0 high, fast, rising
    HAP       1 open mouth          1 low, slow, falling
    NEU       2 closed lips         0 high, fast, rising
    SAD       2 closed lips         1 low, slow, falling

So the best possible accuracy is 1/2 from the face alone, 1/3 from the voice
alone, 1 from both. Everything is deterministic given the seed: an actor's look
and voice come from (seed, actor), a clip's timing and noise from (seed, actor,
emotion, clip), so a clip's content does not depend on how many others are made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np

from edge_emotion import LABELS
from edge_emotion.io.atomic import atomic_path
from edge_emotion.toolchain.synth.face import MOUTH_LEVELS, Look, draw_face, random_look
from edge_emotion.toolchain.synth.voice import Voice, envelope, plan_syllables, random_voice, speak

SENTENCES: tuple[str, ...] = ("DFA", "IEO", "IOM", "ITH", "ITS", "IWL", "IWW", "MTI", "TAI", "TIE", "TSI", "WSI")
FIRST_ACTOR = 1001
MAX_ACTORS = 91  # CREMA-D's ids are 1001-1091
VIDEO_CUE: dict[str, int] = {"ANG": 0, "DIS": 0, "FEA": 1, "HAP": 1, "NEU": 2, "SAD": 2}
AUDIO_CUE: dict[str, int] = {"ANG": 0, "FEA": 0, "NEU": 0, "DIS": 1, "HAP": 1, "SAD": 1}
SUBDIR = "VideoFlash"
NOISE_FIELDS = 3
MIN_SIDE = 120  # the face is 0.38-0.5 of the frame height: at least 45 px wide
VIDEO_BIT_RATE = 600_000  # enough that coding error stays below the sensor noise at 240x180, 15 fps


@dataclass(frozen=True)
class SynthConfig:
    """What a corpus is made of; the same config and seed give byte-identical files."""

    actors: int = 6
    clips_per_class: int = 2  # per actor and emotion, each with another sentence (at most 12)
    seed: int = 0
    fps: int = 15
    width: int = 240
    height: int = 180
    min_duration: float = 1.5  # seconds
    max_duration: float = 2.5
    sample_rate: int = 22_050  # MP3 in FLV allows 11025, 22050 or 44100

    def __post_init__(self) -> None:
        if not 1 <= self.actors <= MAX_ACTORS:
            last = FIRST_ACTOR + MAX_ACTORS - 1
            raise ValueError(f"actors must be in 1..{MAX_ACTORS} (CREMA-D ids {FIRST_ACTOR}-{last}), got {self.actors}")
        if not 1 <= self.clips_per_class <= len(SENTENCES):
            raise ValueError(
                f"clips_per_class must be in 1..{len(SENTENCES)} (one sentence each), got {self.clips_per_class}"
            )
        if self.fps < 1:
            raise ValueError(f"need fps >= 1, got {self.fps}")
        if self.width < MIN_SIDE or self.height < MIN_SIDE or self.width % 2 or self.height % 2:
            raise ValueError(
                f"need an even frame size of at least {MIN_SIDE}x{MIN_SIDE} (faces above MTCNN's 40 px), "
                f"got {self.width}x{self.height}"
            )
        if not 0 < self.min_duration <= self.max_duration:
            raise ValueError(f"need 0 < min_duration <= max_duration, got {self.min_duration}, {self.max_duration}")
        if self.sample_rate not in (11_025, 22_050, 44_100):
            raise ValueError(f"sample_rate must be 11025, 22050 or 44100 (MP3 in FLV), got {self.sample_rate}")


@dataclass(frozen=True)
class ClipSpec:
    """One clip to make: its CREMA-D name parts and its place in the seed tree."""

    actor_index: int  # 0-based; the CREMA-D id is 1001 + actor_index
    emotion: str
    clip_index: int  # 0-based, per actor and emotion
    sentence: str
    level: str = "XX"

    @property
    def actor(self) -> int:
        return FIRST_ACTOR + self.actor_index

    @property
    def name(self) -> str:
        """CREMA-D file name, AAAA_SSS_EEE_LL.flv."""
        return f"{self.actor}_{self.sentence}_{self.emotion}_{self.level}.flv"


@dataclass(frozen=True)
class RenderedClip:
    frames: np.ndarray  # [F, H, W, 3] uint8 RGB
    audio: np.ndarray  # [T] float32 mono in [-1, 1] at the config's sample rate
    fps: int
    sample_rate: int


def plan_corpus(config: SynthConfig) -> list[ClipSpec]:
    """Every clip of the corpus, actor by actor; sentences rotate so names are unique per actor and emotion."""
    specs = []
    for a in range(config.actors):
        for e, emotion in enumerate(LABELS):
            for c in range(config.clips_per_class):
                sentence = SENTENCES[(5 * a + 7 * e + c) % len(SENTENCES)]
                specs.append(ClipSpec(a, emotion, c, sentence))
    return specs


def actor_traits(config: SynthConfig, actor_index: int) -> tuple[Look, Voice]:
    """An actor's look and voice, from (seed, actor) only."""
    rng = np.random.default_rng([config.seed, actor_index, 0])
    return random_look(rng, config.width, config.height), random_voice(rng)


def render_clip(spec: ClipSpec, config: SynthConfig) -> RenderedClip:
    """Draw the frames and synthesise the voice of one clip; the mouth moves with the voice's envelope."""
    look, voice = actor_traits(config, spec.actor_index)
    rng = np.random.default_rng([config.seed, spec.actor_index, LABELS.index(spec.emotion) + 1, spec.clip_index])
    n_frames = max(1, int(round(rng.uniform(config.min_duration, config.max_duration) * config.fps)))
    duration = n_frames / config.fps  # audio and video end together
    syllables = plan_syllables(AUDIO_CUE[spec.emotion], voice, duration, rng)
    audio = speak(AUDIO_CUE[spec.emotion], voice, syllables, duration, config.sample_rate, rng)
    times = np.arange(n_frames) / config.fps  # [F]
    levels = np.rint(envelope(times, syllables) * (MOUTH_LEVELS - 1)).astype(int)  # [F] mouth opening per frame
    frames = _animate(_clip_look(look, rng), VIDEO_CUE[spec.emotion], levels, times, config, rng)
    return RenderedClip(frames, audio, config.fps, config.sample_rate)


def _clip_look(look: Look, rng: np.random.Generator) -> Look:
    """Per-clip jitter of the actor's framing: a few pixels of position, +-5 % of face size."""
    dx, dy = rng.uniform(-4, 4), rng.uniform(-3, 3)
    scale = float(rng.uniform(0.95, 1.05))
    return replace(look, face_width=look.face_width * scale, offset=(look.offset[0] + dx, look.offset[1] + dy))


def _animate(
    look: Look, group: int, levels: np.ndarray, times: np.ndarray, config: SynthConfig, rng: np.random.Generator
) -> np.ndarray:
    """Frames [F, H, W, 3]: one drawing per mouth opening, moved by a slow head sway, lit and noised per clip."""
    w, h = config.width, config.height
    margin = max(2, h // 20)
    # one drawing per mouth opening used, each [H + 2m, W + 2m, 3]
    drawings = {lvl: draw_face(look, group, lvl / (MOUTH_LEVELS - 1), w, h, margin) for lvl in np.unique(levels)}
    phase, sway = rng.uniform(0, 2 * np.pi, size=2), rng.uniform(0.3, 1.0, size=2) * margin
    dx = np.rint(sway[0] * np.sin(2 * np.pi * 0.4 * times + phase[0])).astype(int)  # [F]
    dy = np.rint(sway[1] * np.sin(2 * np.pi * 0.7 * times + phase[1])).astype(int)
    gain = np.float32(rng.uniform(0.85, 1.15))
    # sensor noise: a few noise fields per clip, rolled by a random offset per frame (cheaper than fresh noise)
    pool = np.float32(rng.uniform(2.0, 5.0)) * rng.standard_normal((NOISE_FIELDS, h, w, 3), dtype=np.float32)
    rolls = rng.integers(0, h * w, size=len(times))
    frames = np.empty((len(times), h, w, 3), dtype=np.uint8)
    for f, lvl in enumerate(levels):
        window = drawings[lvl][margin + dy[f] : margin + dy[f] + h, margin + dx[f] : margin + dx[f] + w]
        noise = np.roll(pool[f % NOISE_FIELDS].reshape(h * w, 3), rolls[f], axis=0).reshape(h, w, 3)
        frames[f] = np.clip(window * gain + noise, 0, 255).astype(np.uint8)
    return frames


def write_clip(path: Path, clip: RenderedClip) -> None:
    """Write an FLV like CREMA-D's (Sorenson H.263 video + MP3 mono audio), atomically."""
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="flv") as container:
        video = container.add_stream("flv", rate=clip.fps)
        video.width, video.height = clip.frames.shape[2], clip.frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.bit_rate = VIDEO_BIT_RATE
        video.options = {"g": str(clip.fps)}  # a keyframe a second: no drift of compression artefacts
        audio = container.add_stream("libmp3lame", rate=clip.sample_rate, layout="mono")
        for image in clip.frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        pcm = av.AudioFrame.from_ndarray(clip.audio.reshape(1, -1), format="flt", layout="mono")
        pcm.sample_rate = clip.sample_rate
        container.mux(audio.encode(pcm))
        container.mux(audio.encode())


def make_corpus(
    out_dir: str | Path,
    actors: int = 6,
    clips_per_class: int = 2,
    seed: int = 0,
    fps: int = 15,
    size: tuple[int, int] = (240, 180),
    on_clip: Callable[[Path, bool], None] | None = None,
) -> list[Path]:
    """Write the corpus under out_dir/VideoFlash/ and return every clip's path, in plan order.

    Resumable: a file already there is kept (writes are atomic, so it is complete).
    `on_clip(path, written)` is called after each clip, for progress reporting.
    """
    width, height = size
    config = SynthConfig(actors=actors, clips_per_class=clips_per_class, seed=seed, fps=fps, width=width, height=height)
    return write_corpus(Path(out_dir), config, on_clip)


def write_corpus(out_dir: Path, config: SynthConfig, on_clip: Callable[[Path, bool], None] | None = None) -> list[Path]:
    """`make_corpus` with a full SynthConfig (durations, sample rate)."""
    paths = []
    for spec in plan_corpus(config):
        path = out_dir / SUBDIR / spec.name
        written = not path.exists()
        if written:
            write_clip(path, render_clip(spec, config))
        if on_clip is not None:
            on_clip(path, written)
        paths.append(path)
    return paths
