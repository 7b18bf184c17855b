"""edge-emotion plot: window rows or stream events -> a PNG with one panel per (file, person), checked by its pixels."""

from __future__ import annotations

import numpy as np
import pytest
import typer
from PIL import Image

from edge_emotion.cli import app
from edge_emotion.cli.boundary import EXIT_ERROR, EXIT_USAGE, run
from edge_emotion.run.codec import format_for, json_line
from edge_emotion.run.result import FileKey, Live, error_result, window_result
from edge_emotion.timeline.plot import Series, cells, clock, load_series, tick_step

LABELS = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
TAB10 = {  # matplotlib's C0..C5, the colours of the labels in order
    "ANG": (31, 119, 180), "DIS": (255, 127, 14), "FEA": (44, 160, 44), "HAP": (214, 39, 40), "NEU": (148, 103, 189), "SAD": (140, 86, 75),
}


def _row(path, person, k, winner, faceless=0, hop=0.5, window=2.5, kind="window", live=None):
    probs = np.full((10, 6), 0.04)
    probs[:, LABELS.index(winner)] = 0.8
    return window_result(
        kind, None if live else FileKey(path, 1, 1), path, person=person, people=int(person is not None), window=k,
        n_windows=None if live else 40, t_start=k * hop, t_end=k * hop + window, segment_probs=probs,
        detected=[i >= faceless for i in range(10)], silent=0, labels=LABELS, live=live,
    )


def _rows():
    """File a: person 0 happy with faceless windows 10-19, person 1 sad; file b: angry; a broken file c."""
    rows = [_row("/v/a.mp4", 0, k, "HAP", faceless=10 if 10 <= k < 20 else 0) for k in range(40)]
    rows += [_row("/v/a.mp4", 1, k, "SAD") for k in range(40)]
    rows += [_row("/v/b.mp4", 0, k, "ANG" if k % 4 else "NEU") for k in range(30)]
    rows.append(error_result("window", FileKey("/v/c.mp4", 5, 5), "corrupt or truncated stream"))
    return rows


def _write(path, rows):
    fmt = format_for(path, LABELS)
    path.write_text(fmt.header() + "".join(fmt.encode(r) for r in rows))
    return path


def _cli(args, capsys):
    code = run(typer.main.get_command(app), [str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _panels(png, count):
    image = np.asarray(Image.open(png).convert("RGB")).astype(int)  # [H, W, 3]
    return image, np.array_split(image, count, axis=0)


def _pixels(part, rgb):
    return int(np.all(part == np.array(rgb), axis=-1).sum())


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_plot_draws_one_panel_per_file_and_person(tmp_path, capsys, suffix):
    results = _write(tmp_path / f"rows{suffix}", _rows())
    png = tmp_path / "timeline.png"
    code, out, err = _cli(["plot", results, "-o", png], capsys)
    assert code == 0, err
    assert "3 panel(s)" in out and "110 windows" in out
    image, (a0, a1, b0) = _panels(png, 3)
    assert Image.open(png).size == (1200, 720)  # 12 x 2.4 in per panel at 100 dpi
    assert image.std() > 20  # not blank
    # each panel's band is its winner's colour, a solid strip (lines alone are a few pixels wide)
    assert _pixels(a0, TAB10["HAP"]) > 5000 and _pixels(a1, TAB10["SAD"]) > 5000 and _pixels(b0, TAB10["ANG"]) > 5000
    assert _pixels(a1, TAB10["HAP"]) < 200 and _pixels(a0, TAB10["SAD"]) < 200  # and not another panel's
    assert _pixels(b0, TAB10["NEU"]) > 1000  # every fourth window of b is neutral
    # faceless windows of a/person 0 are shaded: grey pixels that a/person 1 (no faceless window) lacks
    grey = lambda part: int(((part[..., 0] == part[..., 1]) & (part[..., 1] == part[..., 2]) & (part[..., 0] < 225) & (part[..., 0] > 150)).sum())  # noqa: E731
    assert grey(a0) > grey(a1) + 5000


def test_plot_reads_stream_events(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    lines = []
    for k in range(20):
        live = Live(0, "2025-06-01T12:00:03.250+00:00", 150.0, 0)
        lines.append(json_line(_row("udp://127.0.0.1:5000", 0, k, "FEA" if k < 10 else "NEU", hop=0.25, kind="stream", live=live)))
    events.write_text("".join(lines) + '{"t_start": 5.0, "t_')  # a torn last line, as a killed stream leaves
    series = load_series(events)
    assert [(s.name, s.person, len(s.middle)) for s in series] == [("udp://127.0.0.1:5000", 0, 20)]
    png = tmp_path / "events.png"
    code, out, err = _cli(["plot", events, "-o", png], capsys)
    assert code == 0, err
    image, (panel,) = _panels(png, 1)
    assert Image.open(png).size == (1200, 240)
    assert _pixels(panel, TAB10["FEA"]) > 3000 and _pixels(panel, TAB10["NEU"]) > 3000


def test_max_panels_draws_the_first_ones(tmp_path, capsys):
    results = _write(tmp_path / "rows.csv", _rows())
    png = tmp_path / "one.png"
    code, out, _ = _cli(["plot", results, "-o", png, "--max-panels", "1"], capsys)
    assert code == 0 and "1 panel(s)" in out and "2 more left out" in out
    assert Image.open(png).size == (1200, 240)


def _one_error_line(code, err, expected_code, *texts):
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == expected_code, err
    assert "Traceback" not in err and len(errors) == 1 and err.rstrip().splitlines()[-1] == errors[0], err
    for text in texts:
        assert text in errors[0], (text, errors[0])


def test_bad_inputs_end_in_one_line(tmp_path, capsys):
    png = tmp_path / "t.png"
    code, _, err = _cli(["plot", tmp_path / "missing.csv", "-o", png], capsys)
    _one_error_line(code, err, EXIT_USAGE, "RESULTS", "missing.csv", "no such file")
    (tmp_path / "notes.jsonl").write_text("hello\nworld\n")
    code, _, err = _cli(["plot", tmp_path / "notes.jsonl", "-o", png], capsys)
    _one_error_line(code, err, EXIT_ERROR, "notes.jsonl", "not results", "line 1 is not JSON")
    (tmp_path / "other.csv").write_text("a,b,c\n1,2,3\n")
    code, _, err = _cli(["plot", tmp_path / "other.csv", "-o", png], capsys)
    _one_error_line(code, err, EXIT_ERROR, "other.csv", "unknown CSV columns")
    (tmp_path / "binary.jsonl").write_bytes(bytes(range(256)))
    code, _, err = _cli(["plot", tmp_path / "binary.jsonl", "-o", png], capsys)
    _one_error_line(code, err, EXIT_ERROR, "binary.jsonl", "not results")
    errors_only = _write(tmp_path / "errors.csv", [error_result("window", FileKey("/v/c.mp4", 5, 5), "no video stream")])
    code, _, err = _cli(["plot", errors_only, "-o", png], capsys)
    _one_error_line(code, err, EXIT_ERROR, "errors.csv", "no windows to plot", "1 rows")
    code, _, err = _cli(["plot", _write(tmp_path / "rows.csv", _rows()), "-o", tmp_path / "t.jpg"], capsys)
    _one_error_line(code, err, EXIT_USAGE, "--output", "must end in .png")
    assert not png.exists()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_clip_rows_without_windows_are_refused_saying_why(tmp_path, capsys, suffix):
    clip_row = _row("/v/a.mp4", 0, 0, "HAP", kind="clip")  # a clip: one window over the whole file, kind clip
    fmt = format_for(tmp_path / f"clips{suffix}", LABELS)
    (tmp_path / f"clips{suffix}").write_text(fmt.header() + fmt.encode(clip_row))
    code, _, err = _cli(["plot", tmp_path / f"clips{suffix}", "-o", tmp_path / "t.png"], capsys)
    _one_error_line(code, err, EXIT_ERROR, f"clips{suffix}", "without --window")


def test_cells_are_one_hop_wide_around_each_window_middle():
    series = Series("a", 0, LABELS, np.array([0.0, 0.5, 1.0]), np.array([2.5, 3.0, 3.5]), np.zeros((3, 6)), np.zeros(3))
    left, width = cells(series)
    assert left.tolist() == [1.0, 1.5, 2.0] and width.tolist() == [0.5, 0.5, 0.5]
    lone = Series("a", 0, LABELS, np.array([0.0]), np.array([1.7]), np.zeros((1, 6)), np.zeros(1))
    assert [v.tolist() for v in cells(lone)] == [[0.0], [1.7]]


def test_clock_reads_minutes_and_hours():
    assert [clock(s) for s in (0, 59.6, 61, 3599, 3600, 7384)] == ["0:00", "1:00", "1:01", "59:59", "1:00:00", "2:03:04"]


def test_time_ticks_fall_on_clock_steps():
    assert [tick_step(s) for s in (3, 20, 100, 600, 3600, 36000)] == [1, 2, 10, 60, 600, 3600]


def test_windows_without_anyone_are_a_panel_of_their_own(tmp_path):
    rows = [_row("/v/a.mp4", 0 if k < 5 else None, k, "HAP" if k < 5 else "NEU", faceless=0 if k < 5 else 10) for k in range(8)]
    series = load_series(_write(tmp_path / "rows.csv", rows))
    assert [(s.person, len(s.middle)) for s in series] == [(0, 5), (None, 3)]
    assert series[1].faceless.tolist() == [1.0, 1.0, 1.0]
