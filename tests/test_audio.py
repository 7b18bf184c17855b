"""audio: windows padded past the clip's ends, 192x120 spectrograms equal to librosa's STFT."""

from __future__ import annotations

import numpy as np
import pytest

from edge_emotion.config import SpectrogramParams
from edge_emotion.io.decode import open_clip
from edge_emotion.preprocess.audio import audio_windows, is_silent, spectrograms, stft_magnitude


def test_default_parameters_give_the_papers_shape():
    params = SpectrogramParams()
    assert params.window_samples == 20_480
    assert params.shape == (192, 120)
    assert SpectrogramParams.from_dict(params.to_dict()) == params


def test_windows_are_zero_padded_past_either_end():
    wave = np.arange(1, 101, dtype=np.float32)  # 100 samples, no zeros
    win = audio_windows(wave, 10, np.array([0.0, 5.0, 9.9]), window_s=2.0)  # 20 samples each
    assert win.shape == (3, 20)
    assert np.all(win[0, :10] == 0) and np.array_equal(win[0, 10:], wave[:10])
    assert np.array_equal(win[1], wave[40:60])
    assert np.array_equal(win[2, :11], wave[89:100]) and np.all(win[2, 11:] == 0)


def test_window_entirely_outside_is_silent_and_finite():
    win = audio_windows(np.ones(10, np.float32), 10, np.array([100.0]), window_s=1.0)
    spec = spectrograms(np.repeat(win, 1, axis=0), SpectrogramParams(sample_rate=10, window_s=1.0, n_fft=4, hop_length=2))
    assert is_silent(win).tolist() == [True]
    assert np.isfinite(spec).all() and np.all(spec == 0)


def test_stft_matches_librosa():
    librosa = pytest.importorskip("librosa")
    x = np.random.default_rng(0).standard_normal((2, 20_480)).astype(np.float32)
    ours = stft_magnitude(x, 382, 171)
    for k in range(2):
        ref = np.abs(librosa.stft(x[k], n_fft=382, hop_length=171, center=True, pad_mode="constant", window="hann"))
        assert ours[k].shape == ref.shape == (192, 120)
        np.testing.assert_allclose(ours[k], ref, rtol=1e-4, atol=1e-4)


def test_spectrograms_of_a_real_clip(hap_clip_path):
    clip = open_clip(hap_clip_path)
    params = SpectrogramParams()
    centres = np.array([0.0, 0.9, clip.duration])
    win = audio_windows(clip.waveform, clip.sample_rate, centres, params.window_s)
    spec = spectrograms(win, params)
    assert spec.shape == (3, 1, 192, 120) and spec.dtype == np.float32
    assert np.isfinite(spec).all()
    np.testing.assert_allclose(spec.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(spec.std(axis=(1, 2, 3)), 1, atol=1e-3)
    # the window centred at 0 s is half padding: its first ~60 time frames are flat (log of zero)
    assert np.ptp(spec[0, 0, :, :55]) < 1e-3 and np.ptp(spec[1, 0, :, :55]) > 1
    assert not is_silent(win).any()


def test_a_tone_peaks_at_its_frequency_bin():
    params = SpectrogramParams()
    t = np.arange(params.window_samples) / params.sample_rate
    spec = spectrograms(np.sin(2 * np.pi * 1000 * t)[None].astype(np.float32), params)
    peak_bin = int(spec[0, 0].mean(axis=1).argmax())
    assert peak_bin * params.sample_rate / params.n_fft == pytest.approx(1000, abs=params.sample_rate / params.n_fft)
