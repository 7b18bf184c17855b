"""INT8 calibration from a small folder: what there is is used, down to the stated minimum, with a warning."""

from __future__ import annotations

import json

import pytest
import typer
from export_helpers import FIXTURES, detected, fixture_source

from edge_emotion.cli import app
from edge_emotion.cli.boundary import run
from edge_emotion.toolchain.calibration.data import (
    MIN_SEGMENTS,
    CalibrationDataError,
    check_enough_clips,
    shortfall_warning,
)


def test_a_small_folder_gives_what_it_has():
    source, _ = fixture_source(detected()[1], segments=100, per_clip=16)  # 2 clips x 16 = 32 of the 100 asked for
    batches = list(source.batches())
    assert [len(b) for b in batches] == [16, 16] and source.taken == 32
    assert source.used == ["1001_DFA_HAP_XX", "1001_DFA_NEU_XX"]


def test_below_the_minimum_is_refused_saying_what_helps():
    source, _ = fixture_source(detected()[1], segments=100, per_clip=4)  # 2 x 4 = 8 < 16
    with pytest.raises(CalibrationDataError, match=f"give only 8 of the 100 .* minimum of {MIN_SEGMENTS}.*--calib-per-clip"):
        list(source.batches())


def test_the_minimum_before_any_decoding(tmp_path):
    with pytest.raises(CalibrationDataError, match="no video clips"):
        check_enough_clips(0, 10, 500, tmp_path)
    with pytest.raises(CalibrationDataError, match="1 clip\\(s\\) give only 10 of the 500"):
        check_enough_clips(1, 10, 500, tmp_path)
    check_enough_clips(2, 8, 500, tmp_path)  # 16: enough
    check_enough_clips(1, 4, 4, tmp_path)  # a request below the minimum is met when all of it is there


def test_shortfall_warning_names_segments_and_agreement():
    assert shortfall_warning(500, 500, 60, 0.97, 100) is None
    text = shortfall_warning(24, 500, 6, 0.958, 100)
    assert text is not None and "24 of the 500 segments" in text and "6 clip(s)" in text and "0.958 on 100" in text


def test_cli_export_calibrates_a_two_clip_folder(fresh_checkpoint, tmp_path, capsys):
    """The issue's case: a few clips -> a calibrated INT8 model, a warning with the segments used and the agreement."""
    from edge_emotion.toolchain.export.onnx_export import read_contract

    out = tmp_path / "m.int8.onnx"
    args = ["export", str(fresh_checkpoint), "--int8", "--calib", str(FIXTURES), "--calib-per-clip", "8", "-o", str(out)]
    code = run(typer.main.get_command(app), args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warning = [line for line in captured.err.splitlines() if line.startswith("warning: INT8 calibrated")]
    assert len(warning) == 1, captured.err
    assert "16 of the 500 segments asked for" in warning[0] and "2 clip(s)" in warning[0]
    assert "top-1 agreement with FP32" in warning[0] and "held-out segments" in warning[0]
    extra = read_contract(out).extra
    assert (extra["calibration_segments"], extra["calibration_segments_asked"], extra["calibration_clips"]) == ("16", "500", "2")
    assert json.loads(out.with_suffix(".calib.json").read_text())["segments"] == 16
