"""The synthetic default corpus: CREMA-D names, decodable clips with audio, real MTCNN faces, the two cues,
determinism and resumability."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_emotion import LABELS
from edge_emotion.io.decode import open_clip, read_frames
from edge_emotion.toolchain.synth import (
    AUDIO_CUE,
    SENTENCES,
    VIDEO_CUE,
    SynthConfig,
    make_corpus,
    plan_corpus,
    render_clip,
    write_clip,
)

NAME = re.compile(r"^(\d{4})_(" + "|".join(SENTENCES) + r")_(" + "|".join(LABELS) + r")_(LO|MD|HI|XX)\.flv$")
ACTORS, CLIPS_PER_CLASS = 4, 2  # what the synth_corpus fixture makes


def clips(root: Path) -> list[Path]:
    return sorted((root / "VideoFlash").glob("*.flv"))


def median_pitch(waveform: np.ndarray, sample_rate: int) -> float:
    """Median autocorrelation pitch (80-400 Hz) of the loudest 40 ms frames: a voice-cue probe without the model."""
    size = int(0.04 * sample_rate)
    frames = waveform[: len(waveform) // size * size].reshape(-1, size)  # [F, size]
    loud = frames[np.argsort((frames**2).sum(axis=1))[-max(3, len(frames) // 4) :]]
    lags = np.arange(sample_rate // 400, sample_rate // 80)
    pitches = []
    for frame in loud:
        frame = frame - frame.mean()
        ac = np.correlate(frame, frame, mode="full")[size - 1 :]
        pitches.append(sample_rate / lags[np.argmax(ac[lags])])
    return float(np.median(pitches))


def test_cues_separate_all_six_only_together() -> None:
    assert len({(VIDEO_CUE[e], AUDIO_CUE[e]) for e in LABELS}) == 6
    assert sorted(np.bincount(list(VIDEO_CUE.values()))) == [2, 2, 2]  # the face alone: 1 in 2
    assert sorted(np.bincount(list(AUDIO_CUE.values()))) == [3, 3]  # the voice alone: 1 in 3


def test_names_are_crema_d_and_cover_every_actor_and_class(synth_corpus: Path) -> None:
    paths = clips(synth_corpus)
    assert len(paths) == ACTORS * len(LABELS) * CLIPS_PER_CLASS
    parsed = [NAME.match(p.name) for p in paths]
    assert all(parsed), [p.name for p, m in zip(paths, parsed) if not m]
    assert {m.group(1) for m in parsed} == {str(1001 + a) for a in range(ACTORS)}
    assert {m.group(3) for m in parsed} == set(LABELS)
    for actor in range(1001, 1001 + ACTORS):
        for emotion in LABELS:
            assert sum(m.group(1) == str(actor) and m.group(3) == emotion for m in parsed) == CLIPS_PER_CLASS
    assert not list(synth_corpus.rglob("*.tmp"))


def test_clips_decode_with_audio_at_the_configured_rate(synth_corpus: Path) -> None:
    config = SynthConfig()
    for path in clips(synth_corpus):
        clip = open_clip(path)
        assert clip.fps == pytest.approx(config.fps)
        assert (clip.width, clip.height) == (config.width, config.height)
        assert config.min_duration - 0.1 <= clip.duration <= config.max_duration + 0.1
        assert abs(len(clip.waveform) / clip.sample_rate - clip.duration) < 0.15
        assert np.sqrt(np.mean(clip.waveform**2)) > 0.02


def test_mtcnn_finds_the_drawn_faces(synth_corpus: Path, face_detector) -> None:
    frames = []
    for path in clips(synth_corpus)[::4]:  # 12 clips: every actor, every class
        clip = open_clip(path)
        picked = read_frames(clip, [0, clip.frame_count // 2, clip.frame_count - 1])
        frames += list(picked.values())
    boxes = face_detector.detect(frames)
    rate = np.mean([b is not None for b in boxes])
    assert rate >= 0.9, f"MTCNN found a face in {rate:.0%} of {len(frames)} frames"
    widths = [b[2] - b[0] for b in boxes if b is not None]
    assert min(widths) >= 40  # FaceParams.min_face_size


def test_voice_cue_separates_the_audio_groups(synth_corpus: Path) -> None:
    pitch = {0: [], 1: []}
    for path in clips(synth_corpus):
        clip = open_clip(path)
        pitch[AUDIO_CUE[path.stem.split("_")[2]]].append(median_pitch(clip.waveform, clip.sample_rate))
    assert min(pitch[0]) > 170 > max(pitch[1]), pitch


def test_same_seed_same_bytes_whatever_the_corpus_size(synth_corpus: Path, tmp_path: Path) -> None:
    """A clip made alone, from a one-clip-per-class plan, is the fixture's clip byte for byte."""
    config = SynthConfig(actors=ACTORS, clips_per_class=1, seed=0)
    for spec in (plan_corpus(config)[0], plan_corpus(config)[-1]):  # first and last actor
        write_clip(tmp_path / spec.name, render_clip(spec, config))
        assert (tmp_path / spec.name).read_bytes() == (synth_corpus / "VideoFlash" / spec.name).read_bytes()


def test_another_seed_gives_other_clips() -> None:
    spec = plan_corpus(SynthConfig(actors=1, clips_per_class=1))[0]
    a, b = render_clip(spec, SynthConfig(seed=0)), render_clip(spec, SynthConfig(seed=1))
    again = render_clip(spec, SynthConfig(seed=0))
    assert np.array_equal(a.frames, again.frames) and np.array_equal(a.audio, again.audio)
    assert a.frames.shape[1:] != b.frames.shape[1:] or not np.array_equal(a.frames[:1], b.frames[:1])


def test_rerun_keeps_existing_files_and_fills_gaps(tmp_path: Path) -> None:
    paths = make_corpus(tmp_path, actors=1, clips_per_class=1)
    stamps = {p: p.stat().st_mtime_ns for p in paths}
    paths[2].unlink()
    events: list[tuple[Path, bool]] = []
    again = make_corpus(tmp_path, actors=1, clips_per_class=1, on_clip=lambda p, new: events.append((p, new)))
    assert again == paths
    assert [p for p, new in events if new] == [paths[2]]
    assert all(p.stat().st_mtime_ns == stamps[p] for p in paths if p != paths[2])


BAD_CONFIGS = [{"actors": 0}, {"actors": 92}, {"clips_per_class": 13}, {"width": 121}, {"height": 100}, {"fps": 0}]


@pytest.mark.parametrize("kwargs", BAD_CONFIGS)
def test_bad_configs_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SynthConfig(**kwargs)


def test_cli_writes_then_skips(tmp_path: Path) -> None:
    from edge_emotion.cli import app

    runner = CliRunner()
    args = ["synth", "-o", str(tmp_path), "--actors", "1", "--clips-per-class", "1", "--size", "160x120", "--fps", "10"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "6 written" in first.output
    assert len(clips(tmp_path)) == 6
    assert open_clip(clips(tmp_path)[0]).fps == pytest.approx(10)
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "0 written, 6 already there" in second.output
    bad = runner.invoke(app, ["synth", "-o", str(tmp_path), "--size", "big"])
    assert bad.exit_code != 0
