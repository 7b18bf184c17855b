"""People in the runtime: `score`, `predict` and `stream` with --faces largest|all on videos made from the fixture clips.

The videos (PyAV, H.264 with the fixture's audio) paste real CREMA-D actors side by side at different sizes into
1280x720 frames, and one small face into a 1920x1080 frame (tests/scenes.py), so where each person's face may be
is known exactly: a box whose centre leaves its person's rectangle is a track that jumped to someone else.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import write_video
from scenes import Placement, compose, inside

from edge_emotion import LABELS
from edge_emotion.cli import app
from edge_emotion.cli.boundary import EXIT_ERROR, EXIT_USAGE, run
from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import EdgeEmotionError
from edge_emotion.io.decode import open_clip, read_frames
from edge_emotion.preprocess.segments import extract, model_faces
from edge_emotion.run.codec import csv_columns
from edge_emotion.run.pool import WorkerPool
from edge_emotion.run.read import ReadJob, clip_pieces
from edge_emotion.run.results_file import ResultsFile
from edge_emotion.run.score import ScoreOptions, score_folder
from edge_emotion.timeline.chunks import RecordingTask

FPS = 30
FRAMES = 60  # 2 s: the actors' 30 first frames, then again (a stream of an N = 4 model gets two windows)


def _frames(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    clip = open_clip(path)
    decoded = read_frames(clip, range(30))
    return [decoded[k] for k in range(30)], clip.waveform


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, hap_clip_path, neu_clip_path) -> tuple[Path, dict[str, list[tuple[int, int, int, int]]]]:
    """A folder of three videos and, per video, the rectangle each person was pasted into, left to right.

    two.mp4: the smaller actor left, the larger right (so the largest is person 1); three.mp4: three sizes;
    hd.mp4: 1920x1080 with one face about 55 px wide.
    """
    hap, audio = _frames(hap_clip_path)
    neu, _ = _frames(neu_clip_path)
    layouts = {
        "two.mp4": ([Placement(neu, 70, 300, 20), Placement(hap, 110, 150, 600)], 1280, 720),
        "three.mp4": ([Placement(hap, 100, 150, 0), Placement(neu, 70, 250, 500, mirror=True), Placement(hap, 56, 300, 900, mirror=True)], 1280, 720),
        "hd.mp4": ([Placement(hap, 55, 600, 1300)], 1920, 1080),
    }
    root = tmp_path_factory.mktemp("people")
    for name, (layout, width, height) in layouts.items():
        write_video(root / name, compose(layout, FRAMES, width, height), fps=FPS, audio=audio, codec="libx264")
    return root, {name: [p.rect() for p in layout] for name, (layout, _, _) in layouts.items()}


@pytest.fixture(scope="module")
def n10_checkpoint(fresh_checkpoint, tmp_path_factory) -> Path:
    """The fresh test model planned at the paper's N = 10."""
    from edge_emotion.toolchain.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(fresh_checkpoint)
    state["preprocess"] = PreprocessConfig(n_segments=10).to_dict()
    path = tmp_path_factory.mktemp("ckpt") / "n10.pt"
    save_checkpoint(path, state)
    return path


class _Progress:
    def __init__(self) -> None:
        self.total, self.done = 0, 0

    def start(self, total: int, skipped: int) -> None:
        self.total = total

    def advance(self, row: dict) -> None:
        self.done += 1


def _score(scenes, model, tmp_path_factory, faces: str) -> list[dict]:
    out = tmp_path_factory.mktemp(f"score_{faces}") / "rows.jsonl"
    progress = _Progress()
    summary = score_folder(scenes[0], model, out, ScoreOptions(workers=0, faces=faces), progress)
    assert summary.scored == 3 and summary.statuses.get("error", 0) == 0
    assert progress.total == progress.done == 3  # the progress counts files, however many people each has
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture(scope="module")
def rows_all(scenes, n10_checkpoint, tmp_path_factory) -> list[dict]:
    return _score(scenes, n10_checkpoint, tmp_path_factory, "all")


@pytest.fixture(scope="module")
def rows_largest(scenes, n10_checkpoint, tmp_path_factory) -> list[dict]:
    return _score(scenes, n10_checkpoint, tmp_path_factory, "largest")


def _boxes(row: dict) -> list[list[float]]:
    return [s["box"] for s in row["segments"]]


def test_faces_all_one_row_per_person_whose_boxes_never_leave_that_person(scenes, rows_all):
    _, rects = scenes
    by_file: dict[str, list[dict]] = {}
    for row in rows_all:
        by_file.setdefault(Path(row["path"]).name, []).append(row)
    assert list(by_file) == ["hd.mp4", "three.mp4", "two.mp4"]  # scan order, a file's rows together
    for name, rows in by_file.items():
        assert [r["person"] for r in rows] == list(range(len(rects[name])))  # 0, 1, 2 ... left to right here
        for row, rect in zip(rows, rects[name]):
            assert row["people"] == len(rects[name]) and row["n_segments"] == 10
            assert row["faceless"] == 0 and row["status"] == "ok"  # every segment had this person's own face
            assert all(s["detected"] for s in row["segments"])
            assert all(inside(box, rect) for box in _boxes(row)), (name, row["person"], _boxes(row), rect)


def test_default_keeps_the_largest_person_in_every_segment(scenes, rows_largest, rows_all):
    _, rects = scenes
    assert [Path(r["path"]).name for r in rows_largest] == ["hd.mp4", "three.mp4", "two.mp4"]  # one row per file
    largest = {"hd.mp4": 0, "three.mp4": 0, "two.mp4": 1}  # two.mp4: the larger actor is on the right, seen second
    for row in rows_largest:
        name = Path(row["path"]).name
        assert row["person"] == largest[name] and row["people"] == len(rects[name])
        assert row["faceless"] == 0  # the HD file's ~55 px face too: found in every segment
        assert all(inside(box, rects[name][row["person"]]) for box in _boxes(row))
        same = next(r for r in rows_all if r["path"] == row["path"] and r["person"] == row["person"])
        assert row == same  # the largest person's row is that person's row of --faces all


def test_predict_faces_all_carries_person_and_gives_score_rows(scenes, rows_all, n10_checkpoint, capsys):
    root, _ = scenes
    code = run(typer.main.get_command(app), ["predict", str(root / "three.mp4"), "-m", str(n10_checkpoint), "--faces", "all", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    rows = json.loads(out)
    want = [r for r in rows_all if Path(r["path"]).name == "three.mp4"]
    assert [r["person"] for r in rows] == [0, 1, 2]
    for got, expected in zip(rows, want):
        assert got["probabilities"] == expected["probabilities"] and _boxes(got) == _boxes(expected)


def test_stream_faces_all_on_a_file_has_an_event_per_person_per_window(scenes, fresh_checkpoint, tmp_path, capsys):
    root, _ = scenes
    events_path = tmp_path / "events.jsonl"
    args = ["stream", str(root / "two.mp4"), "-m", str(fresh_checkpoint), "--faces", "all", "-o", str(events_path), "-q"]
    assert run(typer.main.get_command(app), args) == 0, capsys.readouterr().err
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    windows: dict[float, list[int]] = {}
    for event in events:
        windows.setdefault(event["t_start"], []).append(event["person"])
    assert len(windows) == 2 and all(persons == [0, 1] for persons in windows.values())
    assert all(event["faceless"] == 0 for event in events)


def test_workers_send_uint8_crops_that_normalise_to_extracts_faces(hap_clip_path, face_detector):
    config = PreprocessConfig(n_segments=10)
    clip = open_clip(hap_clip_path)
    from edge_emotion.preprocess.segments import plan_clip

    reference = extract(clip, plan_clip(clip, config), config, detector=face_detector)  # training's path: float32
    assert reference.faces.dtype == np.float32 and reference.faces.shape == (10, 3, 224, 224)
    with WorkerPool(ReadJob(config), workers=1, timeout=60.0) as pool:
        (sent,) = list(pool.run([RecordingTask(0, hap_clip_path)]))  # pickled through the worker's pipe
    faces = sent.people[0].faces
    assert faces.dtype == np.uint8 and faces.shape == (10, 224, 224, 3) and faces.nbytes * 4 == reference.faces.nbytes
    np.testing.assert_allclose(model_faces(faces, config.face), reference.faces, atol=1e-6)
    assert sent.people[0].boxes == reference.boxes
    np.testing.assert_array_equal(sent.spectrograms, reference.spectrograms)  # once per piece, whoever's crops it holds
    (inline,) = clip_pieces(RecordingTask(0, hap_clip_path), config, face_detector)
    assert np.array_equal(inline.people[0].faces, faces)


# ----------------------------------------------------------------------------- the results file


def test_a_results_file_of_one_faces_choice_is_not_resumed_with_the_other(scenes, n10_checkpoint, tmp_path):
    out = tmp_path / "rows.csv"
    first = scenes[0] / "hd.mp4"
    score_folder(first, n10_checkpoint, out, ScoreOptions(workers=0, faces="all"))
    with pytest.raises(EdgeEmotionError, match=r"--faces all, not --faces largest.*new file"):
        score_folder(first, n10_checkpoint, out, ScoreOptions(workers=0, faces="largest"))
    assert len(out.read_text().splitlines()) == 2  # header + hd.mp4's one person, untouched


def test_a_file_killed_between_its_people_is_scored_again(scenes, n10_checkpoint, rows_all, tmp_path):
    out = tmp_path / "rows.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in rows_all]
    out.write_text("".join(lines[:-1]) + lines[-1][:40])  # two.mp4's person 1 lost, half a line torn
    with ResultsFile(out, LABELS, faces="all") as results:
        assert [Path(p).name for p in results.files] == ["hd.mp4", "three.mp4", "two.mp4"]
        assert [results.done(record.key) for record in results.files.values()] == [True, True, False]  # two.mp4: 1 of 2
    summary = score_folder(scenes[0], n10_checkpoint, out, ScoreOptions(workers=0, faces="all"))
    assert (summary.scored, summary.skipped, summary.rows) == (1, 2, 6)
    assert out.read_text() == "".join(lines)  # as the uninterrupted run wrote it


def test_results_from_before_the_person_column_are_refused_in_one_line(tmp_path):
    old = [c for c in csv_columns(LABELS) if c not in ("person", "people")]
    out = tmp_path / "old.csv"
    out.write_text(",".join(old) + "\n" + ",".join(["/v/a.mp4", "HAP", *["0.1"] * 6, "10", "0", "0", "2.0", "ok", "", "5", "6"]) + "\n")
    with pytest.raises(EdgeEmotionError, match="no person column: it was written by an older edge-emotion"):
        ResultsFile(out, LABELS)
    jsonl = tmp_path / "old.jsonl"
    jsonl.write_text(json.dumps({"path": "/v/a.mp4", "label": "HAP", "status": "ok", "size_bytes": 5, "mtime_ns": 6}) + "\n")
    with pytest.raises(EdgeEmotionError, match="no person field"):
        ResultsFile(jsonl, LABELS)


# ----------------------------------------------------------------------------- --detector


def _one_error_line(code: int, err: str, expected: int, *texts: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == expected and "Traceback" not in err and len(errors) == 1, err
    for text in texts:
        assert text in errors[0], (text, errors[0])


def test_detector_folder_from_the_cli(scenes, n10_checkpoint, tmp_path, capsys):
    from edge_emotion.detector.nets import NET_SPECS

    video, cli = scenes[0] / "hd.mp4", typer.main.get_command(app)
    nets = tmp_path / "nets"
    nets.mkdir()
    for spec in NET_SPECS.values():
        (nets / spec.path.name).write_bytes(spec.path.read_bytes())
    commands = (["predict", str(video)], ["score", str(video), "-o", str(tmp_path / "r.csv")], ["stream", str(video)], ["bench"])
    for command in commands:
        (nets / "onet.onnx").rename(nets / "onet.off")
        code = run(cli, [*command, "-m", str(n10_checkpoint), "--detector", str(nets)])
        _one_error_line(code, capsys.readouterr().err, EXIT_USAGE, "--detector", str(nets), "onet.onnx", "not a folder of detector nets")
        (nets / "onet.off").rename(nets / "onet.onnx")
    code = run(cli, ["predict", str(video), "-m", str(n10_checkpoint), "--detector", str(nets), "--json"])
    with_folder = json.loads(capsys.readouterr().out)
    assert code == 0
    run(cli, ["predict", str(video), "-m", str(n10_checkpoint), "--json"])
    assert with_folder == json.loads(capsys.readouterr().out)  # the packaged nets from a folder: the same row
    (nets / "pnet.onnx").write_bytes(b"not a network")  # the folder's nets are the ones used
    code = run(cli, ["predict", str(video), "-m", str(n10_checkpoint), "--detector", str(nets)])
    _one_error_line(code, capsys.readouterr().err, EXIT_ERROR, "pnet.onnx")
