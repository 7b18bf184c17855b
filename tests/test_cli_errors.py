"""Operator mistakes with paths, options and the wrong kind of file: one line naming the thing, non-zero exit, no traceback.

The table walks every command. Cases run in this process through the same
boundary as the console script (edge_emotion.cli.boundary.run, what `main`
calls), which is equivalent and about 1 s per case faster than a subprocess; a
few run the real `edge-emotion` executable to pin the entry point itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from edge_emotion.cli import app
from edge_emotion.cli.boundary import EXIT_ERROR, EXIT_INTERNAL, EXIT_USAGE, run

FIXTURES = Path(__file__).parent / "fixtures"
CLI = str(Path(sys.executable).with_name("edge-emotion"))

# (case, arguments with {placeholders} from the workspace, substrings the error line must hold)
CASES: list[tuple[str, list[str], list[str]]] = [
    # the five tracebacks and the misleading export message
    ("video as -m", ["score", "{fixtures}", "-m", "{video}", "-o", "{out}/r.csv"], ["--model", "1001_DFA_HAP_XX.flv", "a video, not a model"]),
    ("video as -m (predict)", ["predict", "{video}", "-m", "{video}"], ["--model", "a video, not a model"]),
    ("bench --videos missing", ["bench", "-m", "{ckpt}", "--videos", "{missing}"], ["--videos", "missing", "no such file or folder"]),
    ("train before prepare", ["train", "{fixtures}", "-c", "{out}/nocache", "-o", "{out}/run"], ["nocache", "not a prepare cache", "edge-emotion prepare"]),
    ("cv: fewer actors than folds", ["cv", "{fixtures}", "-c", "{cache}", "-o", "{out}/cv", "--n-folds", "2"], ["1 actors cannot fill 2", "folds"]),
    ("int8 calib below minimum", ["export", "{ckpt}", "--int8", "--calib", "{one_clip}", "-o", "{out}/m.onnx"], ["--calib", "one_clip", "1 clip(s) give only 4", "minimum of 16"]),
    ("ONNX given to export", ["export", "{onnx}"], ["CHECKPOINT", "tiny.onnx", "an ONNX model", "checkpoint"]),
    # missing files, directories for files, files for directories
    ("score: folder missing", ["score", "{missing}", "-m", "{ckpt}", "-o", "{out}/r.csv"], ["FOLDER", "no such file or folder"]),
    ("score: folder without videos", ["score", "{empty}", "-m", "{ckpt}", "-o", "{out}/r.csv"], ["FOLDER", "no videos in this folder"]),
    ("score: -m missing", ["score", "{fixtures}", "-m", "{missing}.pt", "-o", "{out}/r.csv"], ["--model", "no such file"]),
    ("score: -m a directory", ["score", "{fixtures}", "-m", "{empty}", "-o", "{out}/r.csv"], ["--model", "a directory, not a file"]),
    ("score: -o a directory", ["score", "{fixtures}", "-m", "{ckpt}", "-o", "{empty}"], ["--output", "must end in .csv or .jsonl"]),
    ("score: -o a directory named .csv", ["score", "{fixtures}", "-m", "{ckpt}", "-o", "{dir_csv}"], ["--output", "is a directory"]),
    ("predict: video missing", ["predict", "{missing}.mp4", "-m", "{ckpt}"], ["missing.mp4", "no such file"]),
    ("predict: text named .mp4", ["predict", "{text_mp4}", "-m", "{ckpt}"], ["notes.mp4", "not a readable video container"]),
    ("export: checkpoint missing", ["export", "{missing}.pt"], ["CHECKPOINT", "no such file"]),
    ("export: directory as checkpoint", ["export", "{empty}"], ["CHECKPOINT", "a directory"]),
    ("export: video as checkpoint", ["export", "{video}"], ["CHECKPOINT", "a video, not a model"]),
    ("export: text named .pt", ["export", "{text_pt}", "-o", "{out}/m.onnx"], ["notes.pt", "not a PyTorch checkpoint"]),
    ("export: --calib missing", ["export", "{ckpt}", "--int8", "--calib", "{missing}"], ["--calib", "no such folder"]),
    ("export: --calib a file", ["export", "{ckpt}", "--int8", "--calib", "{video}"], ["--calib", "not a folder"]),
    ("export: --calib empty folder", ["export", "{ckpt}", "--int8", "--calib", "{empty}"], ["--calib", "no videos in this folder"]),
    ("export: --prepare-cache missing", ["export", "{ckpt}", "--int8", "--calib", "{fixtures}", "--prepare-cache", "{missing}"], ["--prepare-cache", "no such folder"]),
    ("export: --parity-data missing", ["export", "{ckpt}", "--parity-data", "{missing}"], ["--parity-data", "no such file or folder"]),
    ("check: checkpoint as artifact", ["check", "{ckpt}", "--against", "{ckpt}"], ["ARTIFACT", "a PyTorch checkpoint", "export it first"]),
    ("check: ONNX as --against", ["check", "{onnx}", "--against", "{onnx}"], ["--against", "an ONNX model", "checkpoint"]),
    ("prepare: data missing", ["prepare", "{missing}", "-o", "{out}/cache"], ["DATA_DIR", "no such folder"]),
    ("prepare: data is a file", ["prepare", "{video}", "-o", "{out}/cache"], ["DATA_DIR", "not a folder"]),
    ("prepare: data without videos", ["prepare", "{empty}", "-o", "{out}/cache"], ["DATA_DIR", "no videos"]),
    ("prepare: -o is a file", ["prepare", "{fixtures}", "-o", "{video}"], ["--output", "exists and is not a folder"]),
    ("train: -o is a file", ["train", "{fixtures}", "-c", "{cache}", "-o", "{video}"], ["--output", "exists and is not a folder"]),
    ("train: --folds-file missing", ["train", "{fixtures}", "-c", "{cache}", "-o", "{out}/run", "--folds-file", "{missing}.json"], ["--folds-file", "no such file"]),
    ("train: cache is a file", ["train", "{fixtures}", "-c", "{video}", "-o", "{out}/run"], ["--cache", "not a folder"]),
    ("cv: --summary-table missing", ["cv", "{fixtures}", "-c", "{cache}", "-o", "{out}/cv", "--summary-table", "{missing}.csv"], ["--summary-table", "no such file"]),
    ("preview: video missing", ["preview", "{missing}.flv"], ["VIDEO", "no such file"]),
    ("synth: -o is a file", ["synth", "-o", "{video}"], ["--output", "exists and is not a folder"]),
    ("demo: -o is a file", ["demo", "-o", "{video}"], ["--output", "exists and is not a folder"]),
    # wrong kind of file, wrong suffix
    ("score: checkpoint named .onnx", ["score", "{fixtures}", "-m", "{ckpt_as_onnx}", "-o", "{out}/r.csv"], ["a PyTorch checkpoint named .onnx", "rename it to .pt"]),
    ("score: ONNX without contract", ["score", "{fixtures}", "-m", "{onnx}", "-o", "{out}/r.csv", "-q"], ["tiny.onnx", "no edge-emotion contract"]),
    ("score: -o wrong suffix", ["score", "{fixtures}", "-m", "{ckpt}", "-o", "{out}/r.txt"], ["r.txt", ".csv or .jsonl"]),
    ("score: -m text file", ["score", "{fixtures}", "-m", "{text_mp4}", "-o", "{out}/r.csv"], ["--model", "a video, not a model"]),
    ("export: -o wrong suffix", ["export", "{ckpt}", "-o", "{out}/m.txt"], ["--output", "must end in .onnx"]),
    ("export: engine -o .onnx", ["export", "{ckpt}", "--format", "engine", "-o", "{out}/m.onnx"], ["--output", "must end in .engine"]),
    ("bench: --plot not png", ["bench", "-m", "{ckpt}", "--plot", "{out}/p.jpg"], ["--plot", "must end in .png"]),
    ("bench: --json not json", ["bench", "-m", "{ckpt}", "--json", "{out}/r.csv"], ["--json", "must end in .json"]),
    ("bench: --videos without videos", ["bench", "-m", "{ckpt}", "--videos", "{empty}"], ["--videos", "no videos"]),
    ("preview: -o not png", ["preview", "{video}", "-o", "{out}/s.jpg"], ["--output", "must end in .png"]),
    # bad option values: shard, profile, numbers, names
    ("score: --shard 3/2", ["score", "{fixtures}", "-m", "{ckpt}", "-o", "{out}/r.csv", "--shard", "3/2"], ["shard", "3/2"]),
    ("score: --shard abc", ["score", "{fixtures}", "-m", "{ckpt}", "-o", "{out}/r.csv", "--shard", "abc"], ["shard must look like i/n", "abc"]),
    ("score: --batch-size -1", ["score", "{fixtures}", "-m", "{ckpt}", "--batch-size", "-1"], ["--batch-size"]),
    ("score: --timeout -5", ["score", "{fixtures}", "-m", "{ckpt}", "--timeout", "-5"], ["--timeout"]),
    ("score: --workers -2", ["score", "{fixtures}", "-m", "{ckpt}", "--workers", "-2"], ["--workers"]),
    ("score: --extensions empty", ["score", "{fixtures}", "-m", "{ckpt}", "-o", "{out}/r.csv", "--extensions", ","], ["no video extensions"]),
    ("score: --backend bogus", ["score", "{fixtures}", "-m", "{ckpt}", "-o", "{out}/r.csv", "-q", "--backend", "bogus"], ["unknown backend 'bogus'"]),
    ("score: --device bogus", ["score", "{fixtures}", "-m", "{ckpt}", "-o", "{out}/r.csv", "--device", "gpu0"], ["--device", "'gpu0'", "not a device"]),
    ("predict: --device cuda:7", ["predict", "{video}", "-m", "{ckpt}", "--device", "cuda:7"], ["cuda:7", "CUDA device(s) here"]),
    ("bench: --batch-sizes negative", ["bench", "-m", "{ckpt}", "--batch-sizes", "1,-4"], ["batch sizes must be >= 1"]),
    ("bench: --batch-sizes words", ["bench", "-m", "{ckpt}", "--batch-sizes", "a,b"], ["batch sizes must be integers"]),
    ("bench: --iterations 0", ["bench", "-m", "{ckpt}", "--iterations", "0"], ["--iterations"]),
    ("bench: --backends bogus", ["bench", "-m", "{ckpt}", "--backends", "bogus"], ["unknown backend(s)", "bogus"]),
    ("export: --profile two numbers", ["export", "{ckpt}", "--profile", "1,2", "-o", "{out}/m.onnx"], ["--profile", "three integers"]),
    ("export: --profile out of order", ["export", "{ckpt}", "--profile", "8,4,2", "-o", "{out}/m.onnx"], ["--profile", "min <= opt <= max"]),
    ("export: --fp16 and --int8", ["export", "{ckpt}", "--fp16", "--int8"], ["choose one of --fp16 and --int8"]),
    ("export: --int8 without --calib", ["export", "{ckpt}", "--int8"], ["--int8 needs --calib"]),
    ("export: --opset 5", ["export", "{ckpt}", "--opset", "5"], ["--opset"]),
    ("export: --calib-segments 0", ["export", "{ckpt}", "--int8", "--calib", "{fixtures}", "--calib-segments", "0"], ["--calib-segments"]),
    ("export: --calib-method bogus", ["export", "{ckpt}", "--int8", "--calib", "{fixtures}", "--calib-method", "bogus"], ["--calib-method"]),
    ("train: --recipe bogus", ["train", "{fixtures}", "-c", "{cache}", "-o", "{out}/run", "--recipe", "bogus"], ["--recipe", "bogus", "is not one of paper, modern"]),
    ("train: --fold -1", ["train", "{fixtures}", "-c", "{cache}", "-o", "{out}/run", "--fold", "-1"], ["--fold"]),
    ("train: --device cuda without one", ["train", "{fixtures}", "-c", "{cache}", "-o", "{out}/run", "--device", "cuda:7"], ["--device", "CUDA device(s) here"]),
    ("cv: --sweep-n words", ["cv", "{fixtures}", "-c", "{cache}", "-o", "{out}/cv", "--sweep-n", "1,x"], ["--sweep-n", "comma-separated integers"]),
    ("cv: --folds negative", ["cv", "{fixtures}", "-c", "{cache}", "-o", "{out}/cv", "--folds", "-1"], ["--folds", "non-negative"]),
    ("cv: --n-folds 1", ["cv", "{fixtures}", "-c", "{cache}", "-o", "{out}/cv", "--n-folds", "1"], ["--n-folds"]),
    ("score: --executor spark", ["score", "{fixtures}", "-m", "{ckpt}", "-o", "{out}/r.csv", "--executor", "spark"], ["--executor", "choose local or ray", "spark"]),
    ("score: --engine spark (old name)", ["score", "{fixtures}", "-m", "{ckpt}", "-o", "{out}/r.csv", "--engine", "spark"], ["choose local or ray", "spark"]),
    ("prepare: --address, local", ["prepare", "{fixtures}", "-o", "{out}/c", "--address", "10.0.0.1:6379"], ["--address", "needs --executor ray"]),
    ("synth: --size words", ["synth", "-o", "{out}/s", "--size", "big"], ["WIDTHxHEIGHT", "big"]),
    ("synth: --size too small", ["synth", "-o", "{out}/s", "--size", "100x100"], ["at least 120x120", "100x100"]),
    ("synth: --actors 0", ["synth", "-o", "{out}/s", "--actors", "0"], ["--actors"]),
    ("demo: --actors 1", ["demo", "-o", "{out}/d", "--actors", "1"], ["--actors"]),
    ("preview: -n 0", ["preview", "{video}", "-n", "0"], ["--segments"]),
    # window and hop: one resolution (timeline/window_options.py), the same refusal from both drivers
    ("score: --hop longer than --window", ["score", "{fixtures}", "-m", "{ckpt}", "-o", "{out}/r.csv", "--window", "1", "--hop", "2", "-q"], ["--hop", "at most the window (1 s), got 2"]),
    ("stream: --hop longer than --window", ["stream", "{video}", "-m", "{ckpt}", "--window", "1", "--hop", "2", "-q"], ["--hop", "at most the window (1 s), got 2"]),
    ("score: --hop off the default grid", ["score", "{fixtures}", "-m", "{ckpt}", "-o", "{out}/r.csv", "--hop", "0.5", "-q"], ["--hop", "not a multiple of the segment length 0.32 s (window 1.28 s / N = 4)"]),
    ("stream: --hop off the default grid", ["stream", "{video}", "-m", "{ckpt}", "--hop", "0.5", "-q"], ["--hop", "not a multiple of the segment length 0.32 s (window 1.28 s / N = 4)"]),
    # the command line itself
    ("unknown command", ["scroe", "{fixtures}"], ["No such command 'scroe'"]),
    ("unknown option", ["score", "{fixtures}", "-m", "{ckpt}", "--bogus"], ["No such option", "--bogus"]),
    ("missing option", ["score", "{fixtures}"], ["Missing option", "--model"]),
    ("missing argument", ["export"], ["Missing argument", "'checkpoint'"]),
]

# README: exit 2 for a bad option or argument (every case above but these), 1 for an error in the input
INPUT_ERRORS = {
    "cv: fewer actors than folds",  # the data holds too few actors for any fold split
    "predict: text named .mp4",  # the file's contents, not its path, are wrong
    "export: text named .pt",
    "score: ONNX without contract",
}


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, fresh_checkpoint) -> dict[str, str]:
    """The files and folders the mistakes are made with: real clips, a real checkpoint, a real prepare cache."""
    import onnx
    from onnx import TensorProto, helper

    from edge_emotion.toolchain.train.prepare import prepare_corpus

    root = tmp_path_factory.mktemp("mistakes")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph, producer_name="test"), str(root / "tiny.onnx"))  # a real ONNX model, not ours
    shutil.copy(fresh_checkpoint, root / "ckpt_as.onnx")
    (root / "notes.pt").write_text("not a checkpoint\n")
    (root / "notes.mp4").write_text("not a video\n")
    (root / "empty").mkdir()
    (root / "dir.csv").mkdir()
    (root / "one_clip").mkdir()
    shutil.copy(FIXTURES / "1001_DFA_HAP_XX.flv", root / "one_clip")
    prepare_corpus(FIXTURES, root / "cache", workers=0)  # 2 real clips of one actor (1001)
    return {
        "fixtures": str(FIXTURES), "video": str(FIXTURES / "1001_DFA_HAP_XX.flv"), "ckpt": str(fresh_checkpoint),
        "onnx": str(root / "tiny.onnx"), "ckpt_as_onnx": str(root / "ckpt_as.onnx"), "text_pt": str(root / "notes.pt"),
        "text_mp4": str(root / "notes.mp4"), "empty": str(root / "empty"), "dir_csv": str(root / "dir.csv"),
        "one_clip": str(root / "one_clip"), "cache": str(root / "cache"), "missing": str(root / "missing"),
    }


def run_in_process(args: list[str], capsys) -> tuple[int, str, str]:
    code = run(typer.main.get_command(app), args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case, template, expected", CASES, ids=[c[0] for c in CASES])
def test_mistake_ends_in_one_line(case, template, expected, workspace, tmp_path, capsys):
    args = [part.format(**workspace, out=tmp_path) for part in template]
    code, out, err = run_in_process(args, capsys)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code not in (0, EXIT_INTERNAL), (case, code, out, err)
    assert "Traceback" not in out + err, err
    assert len(errors) == 1 and err.rstrip().splitlines()[-1] == errors[0], err  # one error line, and it is the last
    for text in expected:
        assert text in errors[0], (text, errors[0])
    want = EXIT_ERROR if case in INPUT_ERRORS else EXIT_USAGE
    assert code == want, (case, code, err)


def test_table_covers_the_commands():
    walked = {template[0] for _, template, _ in CASES}
    assert {"score", "predict", "stream", "bench", "export", "check", "prepare", "train", "cv", "synth", "preview", "demo"} <= walked
    assert len(CASES) >= 13
    assert INPUT_ERRORS <= {case for case, _, _ in CASES}  # no stale names


def test_the_console_script_prints_one_line(workspace, tmp_path):
    """The real executable: a usage error (exit 2) and a library error (exit 1), each one line, no traceback."""
    usage = subprocess.run([CLI, "score", workspace["fixtures"], "-m", workspace["video"]], capture_output=True, text=True)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    assert usage.stderr.strip().count("\n") == 0 and "a video, not a model" in usage.stderr, usage.stderr
    library = subprocess.run(
        [CLI, "score", workspace["fixtures"], "-m", workspace["onnx"], "-o", str(tmp_path / "r.csv"), "-q"],
        capture_output=True, text=True,
    )
    assert library.returncode == 1 and "Traceback" not in library.stderr
    assert library.stderr.strip().startswith("error: ") and "no edge-emotion contract" in library.stderr


def test_debug_shows_the_traceback_too(workspace):
    done = subprocess.run([CLI, "--debug", "export", workspace["text_pt"]], capture_output=True, text=True)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ArtifactError" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("error: ") and "not a PyTorch checkpoint" in done.stderr


def test_version_and_help_still_exit_zero(capsys):
    from edge_emotion import __version__

    assert run_in_process(["--version"], capsys)[:2] == (0, f"{__version__}\n")
    code, out, _ = run_in_process(["score", "--help"], capsys)
    assert code == 0 and "--shard" in out


def test_engine_is_the_old_name_of_executor(workspace, tmp_path, capsys):
    """`--engine local|ray` still works, hidden from --help, with one line on stderr saying it is now --executor."""
    from edge_emotion.cli.executor import ray_options
    from edge_emotion.ray.cluster import RayOptions

    assert ray_options("local", None, 3, engine="ray") == RayOptions(preprocess_actors=3)
    assert capsys.readouterr().err == "note: --engine is now --executor: use --executor ray\n"
    assert ray_options("ray", "10.0.0.1:6379", None) == RayOptions(address="10.0.0.1:6379")
    assert ray_options("local", None, None) is None and capsys.readouterr().err == ""
    code, out, _ = run_in_process(["score", "--help"], capsys)
    assert code == 0 and "--executor" in out and "--engine" not in out
    out_file = tmp_path / "r.csv"
    code, out, err = run_in_process(
        ["score", workspace["one_clip"], "-m", workspace["ckpt"], "-o", str(out_file), "-q", "--engine", "local"], capsys
    )
    assert code == 0, err
    assert [line for line in err.splitlines() if "--engine" in line] == ["note: --engine is now --executor: use --executor local"]
    assert len(out_file.read_text().splitlines()) == 2  # the header and the clip's row: scored as with --executor local


def test_a_bug_is_one_line_saying_so(capsys):
    """An exception that is not the user's side (here a TypeError) still ends in one line, exit 70, with the hint."""

    def broken() -> None:
        raise TypeError("an internal bug")

    bug_app = typer.Typer()
    bug_app.command()(broken)
    bug_app.command("other")(broken)
    code = run(typer.main.get_command(bug_app), ["broken"])
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL and "Traceback" not in err
    assert err.strip() == "error: internal error (TypeError: an internal bug); rerun with --debug for the traceback"


def test_warnings_print_as_one_line(capsys):
    import warnings

    warn_app = typer.Typer()

    @warn_app.command()
    def warn() -> None:
        warnings.warn("three clips only\nsecond line", stacklevel=1)

    @warn_app.command()
    def other() -> None:
        """A second command, so that typer keeps the command names."""

    assert run(typer.main.get_command(warn_app), ["warn"]) == 0
    assert capsys.readouterr().err == "warning: three clips only second line\n"
