"""decode: real CREMA-D clips, generated videos, and the bad inputs that must fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tone, write_video

from edge_emotion.errors import VideoError
from edge_emotion.io.decode import NO_AUDIO, open_clip, read_frames


@pytest.mark.parametrize(
    ("name", "frames", "seconds"),
    [("1001_DFA_HAP_XX.flv", 56, 1.869), ("1001_DFA_NEU_XX.flv", 61, 2.035)],
)
def test_real_crema_d_clip_facts(hap_clip_path, name, frames, seconds):
    clip = open_clip(hap_clip_path.parent / name)
    assert clip.frame_count == frames
    assert clip.fps == pytest.approx(29.97, abs=0.01)
    assert clip.duration == pytest.approx(seconds, abs=0.01)
    assert (clip.width, clip.height) == (480, 360)
    assert clip.sample_rate == 16_000
    # MP3 audio lasts about as long as the video (within an MP3 frame or two)
    assert clip.waveform.shape[0] / clip.sample_rate == pytest.approx(seconds, abs=0.1)
    assert clip.waveform.dtype == np.float32
    assert 0.01 < np.abs(clip.waveform).max() <= 1.0


def test_read_frames_keeps_only_wanted_frames(hap_clip_path):
    clip = open_clip(hap_clip_path)
    frames = read_frames(clip, [50, 0, 10, 10])
    assert sorted(frames) == [0, 10, 50]
    assert all(f.shape == (360, 480, 3) and f.dtype == np.uint8 for f in frames.values())
    assert not np.array_equal(frames[0], frames[50])  # the actor moves


def test_generated_mp4_with_audio(tmp_path):
    path = write_video(tmp_path / "five.mp4", audio=tone(0.5))
    clip = open_clip(path)
    assert (clip.frame_count, clip.fps, clip.width, clip.height) == (5, 10.0, 64, 48)
    assert clip.duration == pytest.approx(0.5)
    # 440 Hz tone survives AAC: the strongest bin of its spectrum sits at 440 Hz
    spectrum = np.abs(np.fft.rfft(clip.waveform))
    assert np.fft.rfftfreq(clip.waveform.size, 1 / 16_000)[spectrum.argmax()] == pytest.approx(440, abs=5)


def test_read_frames_past_the_end_repeats_the_last_frame(tmp_path):
    frames = np.stack([np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)])
    clip = open_clip(write_video(tmp_path / "ramp.mp4", frames, audio=tone(0.5)))
    got = read_frames(clip, [4, 9])
    assert np.array_equal(got[9], got[4])
    assert abs(float(got[4].mean()) - 160) < 6


def _bad_inputs(tmp_path, hap_clip_path):
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    noise = tmp_path / "noise.flv"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.flv"
    truncated.write_bytes(hap_clip_path.read_bytes()[:1024])
    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    return {
        "empty file": zero,
        "not a readable video": noise,
        "truncated": truncated,
        "directory": folder,
        "no such file": tmp_path / "missing.mp4",
    }


def test_bad_inputs_raise_video_error_naming_file_and_cause(tmp_path, hap_clip_path):
    for cause, path in _bad_inputs(tmp_path, hap_clip_path).items():
        with pytest.raises(VideoError) as info:
            open_clip(path)
        assert info.value.path == str(path)
        assert str(path) in str(info.value)
        if cause != "truncated":  # a 1 KB FLV may fail as unreadable or as frameless: both are fine
            assert cause in str(info.value), (cause, str(info.value))


def test_a_file_without_sound_is_read_as_silence_and_says_so(tmp_path):
    clip = open_clip(write_video(tmp_path / "silent_film.mp4"))
    assert clip.frame_count == 5 and clip.waveform.size == 0
    assert clip.problems == (NO_AUDIO,)


def test_audio_only_file_is_refused(tmp_path):
    from bad_inputs import write_audio_only

    path = tmp_path / "voice.mp4"
    write_audio_only(path)
    with pytest.raises(VideoError, match="no video stream"):
        open_clip(path)


def _frames_for(clip):
    return [0, 7, 20, clip.frame_count - 1, clip.frame_count + 4]  # the last asks past the end: a stand-in


@pytest.fixture(scope="module")
def h264_with_b_frames(tmp_path_factory):
    """H.264 (libx264 reorders frames: B-frames) with AAC audio: display order differs from decode order."""
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 256, (30, 1, 1, 3), dtype=np.uint8), 48, 1).repeat(64, 2)  # [30, 48, 64, 3]
    return write_video(tmp_path_factory.mktemp("h264") / "b.mp4", frames, fps=10, audio=tone(3.0), codec="libx264")


@pytest.mark.parametrize("which", ["flv", "h264"])
@pytest.mark.parametrize("keep_bytes", [None, 1])  # 1 byte: the packets are dropped, the video read from the file again
def test_open_clip_frames_equals_open_clip_then_read_frames(which, keep_bytes, hap_clip_path, h264_with_b_frames, monkeypatch):
    import edge_emotion.io.decode as decode

    path = hap_clip_path if which == "flv" else h264_with_b_frames
    clip = open_clip(path)
    want = read_frames(clip, _frames_for(clip))
    if keep_bytes is not None:
        monkeypatch.setattr(decode, "KEEP_PACKET_BYTES", keep_bytes)
    opened, converted = [], []
    real_open, real_upright = decode.av.open, decode.upright
    monkeypatch.setattr(decode.av, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    monkeypatch.setattr(decode, "upright", lambda frame: converted.append(frame) or real_upright(frame))
    got_clip, got = decode.open_clip_frames(path, _frames_for)
    assert (got_clip.frame_count, got_clip.fps, got_clip.width, got_clip.height) == (clip.frame_count, clip.fps, clip.width, clip.height)
    assert np.array_equal(got_clip.waveform, clip.waveform)
    assert sorted(got) == sorted(want) and all(np.array_equal(got[i], want[i]) for i in want)
    assert len(opened) == (1 if keep_bytes is None else 2)  # once; twice only for a file past the packet budget
    assert len(converted) == 4  # only the planned frames that exist are converted (the stand-in is one of them)


def test_read_frames_converts_only_wanted_frames(hap_clip_path, monkeypatch):
    import edge_emotion.io.decode as decode

    converted = []
    real = decode.upright
    monkeypatch.setattr(decode, "upright", lambda frame: converted.append(frame) or real(frame))
    read_frames(open_clip(hap_clip_path), [5, 9])
    assert len(converted) == 2  # not frame 0: it is converted only when a truncated file needs a stand-in


#: what reading media looks like in source -> the one module allowed to do it (io/media.py's demux, the one loop;
#: io/audio_runs.py's AudioRuns, the one resampler; io/container.py opens files and live sources for reading)
_READING = {".demux(": "io/media.py", "container.decode(": None, "AudioResampler(": "io/audio_runs.py",
            "av.open(str(path)": "io/container.py", "av.open(spec.url": "io/container.py"}


def test_media_is_read_by_one_loop_and_resampled_by_one_resampler():
    from pathlib import Path

    import edge_emotion

    package = Path(edge_emotion.__file__).parent
    sources = {str(p.relative_to(package)): p.read_text() for p in package.rglob("*.py")}
    found = {(name, needle) for name, text in sources.items() for needle in _READING if needle in text}
    homes = {(home, needle) for needle, home in _READING.items() if home is not None}
    assert homes <= found  # the checks see what they look for: each one's home has it
    assert found == homes, "media read outside the one reader"
