"""One resolution of W, H and N for every driver: the same defaults and the same refusals for `score --window` and
`stream` (their one-line CLI refusals: test_cli_errors.py)."""

from __future__ import annotations

import pytest

from edge_emotion.config import PreprocessConfig
from edge_emotion.timeline.window_options import GridError, Windowing, resolve_windowing

N4, N10 = PreprocessConfig(n_segments=4), PreprocessConfig(n_segments=10)


def test_defaults_are_a_quarter_second_a_segment_and_the_hop_nearest_half_a_second():
    assert resolve_windowing(N10, None, None) == Windowing(2.5, 0.5, 10, 2)
    assert resolve_windowing(N4, None, None) == Windowing(1.28, 0.64, 4, 2)  # one audio window at least: L = 0.32 s
    assert resolve_windowing(N4, 1.0, None) == Windowing(1.0, 0.5, 4, 2)  # the default hop follows the window given
    assert resolve_windowing(N4, 1.0, 1.0) == Windowing(1.0, 1.0, 4, 4)  # windows that tile the recording


@pytest.mark.parametrize(
    ("window", "hop", "option", "message"),
    [
        (1.0, 2.0, "--hop", "--hop must be at most the window (1 s), got 2"),  # a multiple of L, but gaps between windows
        (None, 5.0, "--hop", "--hop must be at most the window (1.28 s), got 5"),
        (1.0, 0.3, "--hop", "hop 0.3 s is not a multiple of the segment length 0.25 s (window 1 s / N = 4)"),
        (None, 0.5, "--hop", "hop 0.5 s is not a multiple of the segment length 0.32 s (window 1.28 s / N = 4)"),
        (1.0, 0.0, "--hop", "--hop must be positive, got 0"),
        (0.0, None, "--window", "--window must be positive, got 0"),
    ],
)
def test_refusals_name_the_option(window, hop, option, message):
    with pytest.raises(GridError) as refused:
        resolve_windowing(N4, window, hop)
    assert message in str(refused.value) and refused.value.option == option


def test_both_drivers_refuse_a_hop_longer_than_the_window_alike(fresh_checkpoint, hap_clip_path, face_detector, tmp_path):
    """score_timelines (a file) and run_stream (any source) resolve W and H through the one function: same refusal."""
    from edge_emotion.backends import open_backend
    from edge_emotion.run.score import ScoreOptions
    from edge_emotion.stream import SourceSpec, StreamOptions, run_stream
    from edge_emotion.timeline.score import score_timelines

    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / hap_clip_path.name).write_bytes(hap_clip_path.read_bytes())
    out = tmp_path / "rows.jsonl"
    with pytest.raises(GridError) as by_score:
        score_timelines(folder, fresh_checkpoint, out, ScoreOptions(workers=0, window=1.0, hop=2.0))
    assert not out.exists()  # refused before a results file was opened
    with open_backend(fresh_checkpoint, device="cpu") as backend, pytest.raises(GridError) as by_stream:
        run_stream(SourceSpec(str(hap_clip_path)), backend, face_detector, [], StreamOptions(window=1.0, hop=2.0))
    assert str(by_score.value) == str(by_stream.value) == "--hop must be at most the window (1 s), got 2"
