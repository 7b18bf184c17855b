"""`--executor ray` on a real (two-node, local) Ray cluster: the same rows as local `score`, broken files as error
rows, a hang and a crash as error rows, a SIGKILLed driver that leaves no process behind and resumes exactly, and
`prepare` giving the local cache file for file. One cluster for the session (conftest.ray_cluster)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_video
from typer.testing import CliRunner

pytest.importorskip("ray", reason="ray[data] is not installed: pip install '.[ray]'")
pytest.importorskip("ray.data", reason="ray[data] is not installed: pip install '.[ray]'")

from edge_emotion import LABELS  # noqa: E402
from edge_emotion.cli import app  # noqa: E402
from edge_emotion.errors import EdgeEmotionError  # noqa: E402
from edge_emotion.ray.cluster import RayOptions, Resources  # noqa: E402
from edge_emotion.ray.reaper import _stat, descendants  # noqa: E402
from edge_emotion.ray.scoring import ActorPlan, describe, plan_actors, read_artifact, run_pipeline  # noqa: E402
from edge_emotion.run.codec import CsvFormat, to_record  # noqa: E402
from edge_emotion.run.score import ScoreOptions, score_folder  # noqa: E402
from edge_emotion.timeline.chunks import RecordingTask  # noqa: E402

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),  # Ray Data's own renamed settings
]

N = 4  # fresh_checkpoint's segments
CLI = str(Path(sys.executable).with_name("edge-emotion"))
FIELDS = ("label", "status", "error", "n_segments", "faceless", "silent", "duration_s", "size_bytes", "mtime_ns")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, hap_clip_path, neu_clip_path) -> Path:
    """Six real CREMA-D clips (copies of the two fixtures), a blank silent MP4, random bytes and an empty file."""
    root = tmp_path_factory.mktemp("ray_videos")
    for actor in (1001, 1002, 1003):
        shutil.copy(hap_clip_path, root / f"{actor}_DFA_HAP_XX.flv")
        shutil.copy(neu_clip_path, root / f"{actor}_DFA_NEU_XX.flv")
    write_video(root / "blank_silent.mp4", np.full((8, 48, 64, 3), 90, np.uint8), fps=8, audio=np.zeros(16_000, np.float32))
    (root / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (root / "zero.mp4").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def local_rows(folder, fresh_checkpoint, tmp_path_factory) -> list[dict]:
    """Local `score` (in-process preprocessing), JSONL: the rows the Ray executor must reproduce."""
    out = tmp_path_factory.mktemp("ray_ref") / "local.jsonl"
    summary = score_folder(folder, fresh_checkpoint, out, ScoreOptions(workers=0, batch_size=N))
    assert summary.statuses == {"ok": 6, "degraded": 1, "error": 2}
    return [json.loads(line) for line in out.read_text().splitlines()]


def _words(text: str) -> str:
    """CLI output as single-spaced words: rich wraps lines and boxes errors at the terminal's width."""
    return " ".join(text.replace("│", " ").split())


def _assert_same_rows(got: list[dict], want: list[dict]) -> None:
    assert [r["path"] for r in got] == [r["path"] for r in want]  # one row per file, scan order, no duplicate
    for g, w in zip(got, want):
        for key in FIELDS:
            assert g[key] == w[key], (g["path"], key, g[key], w[key])
        if w["probabilities"] is not None:
            np.testing.assert_allclose([g["probabilities"][k] for k in LABELS], [w["probabilities"][k] for k in LABELS], atol=1e-5)


def test_an_address_where_nothing_listens_is_one_error(folder, fresh_checkpoint, tmp_path):
    """First in this file: once the session's cluster is up, this process is connected and the Ray executor uses that."""
    import ray

    if ray.is_initialized():
        pytest.skip("this process is already connected to the session's cluster (the Ray executor would use it)")
    from edge_emotion.ray.scoring import score_folder_ray

    with pytest.raises(EdgeEmotionError, match="cannot join the Ray cluster at 127.0.0.1:1: nothing answers there"):
        score_folder_ray(folder, fresh_checkpoint, tmp_path / "r.csv", ray_options=RayOptions(address="127.0.0.1:1"))


def test_score_executor_ray_writes_the_local_rows(ray_cluster, folder, local_rows, fresh_checkpoint, tmp_path):
    out = tmp_path / "ray.jsonl"
    result = CliRunner().invoke(
        app, ["score", str(folder), "-m", str(fresh_checkpoint), "-o", str(out), "--executor", "ray",
              "--address", ray_cluster.address, "--batch-size", str(2 * N), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    assert "9 rows (9 scored now, 0 already there)" in _words(result.output)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    _assert_same_rows(rows, local_rows)
    for g, w in zip(rows, local_rows):  # the JSONL timeline too: frames, times, per-segment probabilities
        assert [s["frame"] for s in g["segments"]] == [s["frame"] for s in w["segments"]]
        for gs, ws in zip(g["segments"], w["segments"]):
            np.testing.assert_allclose(list(gs["probabilities"].values()), list(ws["probabilities"].values()), atol=1e-5)
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["status"] == "error"}
    assert errors == {"random.mp4": local_rows[-2]["error"], "zero.mp4": local_rows[-1]["error"]}
    assert json.loads(out.with_name("ray.jsonl.model.json").read_text())["backend"] == "torch"


def test_a_hang_and_a_crash_become_error_rows_and_the_rest_goes_on(ray_cluster, fresh_checkpoint):
    """The per-file timeout and crash isolation of local `score`, inside a preprocessing actor (scripted files)."""
    from score_helpers import ScriptedJob  # tests/ is on the cluster's PYTHONPATH

    options = ScoreOptions(timeout=1.0, batch_size=N)
    model = read_artifact(fresh_checkpoint, options)
    names = ["a.mp4", "hang.mp4", "b.mp4", "crash.mp4", "c.mp4"]
    tasks = [RecordingTask(i, Path(f"/scripted/{name}")) for i, name in enumerate(names)]
    scored = run_pipeline(tasks, model, describe(model), options, ActorPlan(preprocess=1, backend=1, backend_gpus=0), ScriptedJob())
    errors = {s.piece.index: s.piece.error for s in scored}
    assert errors == {
        0: "scripted a.mp4",
        1: "timed out after 1 s (preprocessing did not finish)",
        2: "scripted b.mp4",
        3: "preprocessing worker died (exit code 3)",
        4: "scripted c.mp4",
    }


def _alive(processes: set[tuple[int, int]]) -> set[tuple[int, int]]:
    return {(pid, start) for pid, start in processes if (_stat(pid) or (0, -1))[1] == start}


REAPED_DRIVER = """
import subprocess, sys, time
from edge_emotion.ray.reaper import Reaper

reaper = Reaper.start()
# stands for ray.init: a root process (the raylet) with a child of its own (an agent)
root = subprocess.Popen([sys.executable, "-c", "import subprocess, time; p = subprocess.Popen(['sleep', '60']); "
                         "print(p.pid, flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
agent = int(root.stdout.readline())
assert reaper.sync()
own = subprocess.Popen(["sleep", "60"])  # the program's own child, started after the instance: not Ray's
print(root.pid, agent, own.pid, flush=True)
time.sleep(60)
"""


def test_reaper_kills_the_instance_of_a_killed_driver_and_nothing_else():
    driver = subprocess.Popen([sys.executable, "-c", REAPED_DRIVER], stdout=subprocess.PIPE, text=True)
    root, agent, own = (int(v) for v in driver.stdout.readline().split())
    processes = {pid: _stat(pid) for pid in (root, agent, own)}
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    try:
        deadline = time.monotonic() + 10
        while _alive({(root, processes[root][1]), (agent, processes[agent][1])}) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _stat(root) is None and _stat(agent) is None  # the root and the orphaned agent are gone
        assert _alive({(own, processes[own][1])})  # the program's own child, started after the instance, was left alone
    finally:
        subprocess.run(["kill", "-9", str(own)], check=False)


def _data_rows(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:] if path.exists() else []


def test_killed_driver_of_its_own_instance_leaves_no_process_and_resumes_exactly(
    ray_cluster, folder, local_rows, fresh_checkpoint, tmp_path
):
    out = tmp_path / "killed.csv"
    cmd = [CLI, "score", str(folder), "-m", str(fresh_checkpoint), "-o", str(out), "--executor", "ray",
           "--batch-size", str(N), "--quiet"]  # no --address: the run starts (and owns) a local instance
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 180
    while not _data_rows(out) and proc.poll() is None and time.monotonic() < deadline:
        seen |= descendants({proc.pid})
        time.sleep(0.02)
    seen |= descendants({proc.pid})
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = _data_rows(out)
    assert 1 <= len(written) < len(local_rows), proc.stderr.read().decode()
    assert len(seen) >= 5, "the run did not start a Ray instance of its own"  # GCS, raylet, agents, actors, reaper
    deadline = time.monotonic() + 30
    while _alive(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(seen), f"processes of the killed run's Ray instance outlived it: {sorted(_alive(seen))}"
    with open(out, "ab") as f:  # a torn last write, as a kill inside write() could leave
        f.write(b"/half/a/row.flv,HAP,0.1")
    from edge_emotion.ray.scoring import score_folder_ray

    summary = score_folder_ray(folder, fresh_checkpoint, out, ScoreOptions(batch_size=N), ray_options=RayOptions(address=ray_cluster.address))
    assert summary.skipped == len(written) and summary.scored == len(local_rows) - len(written)
    text = out.read_text()
    assert text.endswith("\n") and "/half/a/row.flv" not in text
    _assert_same_rows([to_record(r) for r in CsvFormat(LABELS).decode(text)], local_rows)


def test_faces_all_on_ray_gives_the_local_rows_per_person(ray_cluster, fresh_checkpoint, hap_clip_path, neu_clip_path, tmp_path):
    from conftest import tone
    from scenes import Placement, compose, planned_frames

    from edge_emotion.ray.scoring import score_folder_ray

    people = [Placement(planned_frames(hap_clip_path), 110, 150, 20), Placement(planned_frames(neu_clip_path), 70, 300, 760)]
    write_video(tmp_path / "videos" / "two.mp4", compose(people, 10, 1280, 720), fps=10, audio=tone(1.0))
    options = ScoreOptions(batch_size=N, faces="all")
    local = score_folder(tmp_path / "videos", fresh_checkpoint, tmp_path / "local.jsonl", ScoreOptions(workers=0, faces="all"))
    on_ray = score_folder_ray(tmp_path / "videos", fresh_checkpoint, tmp_path / "ray.jsonl", options, ray_options=RayOptions(address=ray_cluster.address))
    assert local.rows == on_ray.rows == 2
    want, got = ([json.loads(line) for line in (tmp_path / name).read_text().splitlines()] for name in ("local.jsonl", "ray.jsonl"))
    assert [(r["person"], r["people"]) for r in got] == [(r["person"], r["people"]) for r in want] == [(0, 2), (1, 2)]
    _assert_same_rows(got, want)
    assert [[s["box"] for s in r["segments"]] for r in got] == [[s["box"] for s in r["segments"]] for r in want]


def test_prepare_executor_ray_writes_the_local_cache(ray_cluster, hap_clip_path, neu_clip_path, tmp_path):
    from edge_emotion.toolchain.train.prepare import prepare_corpus

    videos = tmp_path / "corpus" / "VideoFlash"
    videos.mkdir(parents=True)
    shutil.copy(hap_clip_path, videos / "1001_DFA_HAP_XX.flv")
    shutil.copy(neu_clip_path, videos / "1002_DFA_NEU_XX.flv")
    (videos / "1003_DFA_ANG_XX.flv").write_bytes(b"FLV not really")
    local = prepare_corpus(tmp_path / "corpus", tmp_path / "local", n_segments=5)
    result = CliRunner().invoke(
        app, ["prepare", str(tmp_path / "corpus"), "-o", str(tmp_path / "ray"), "--n-segments", "5",
              "--engine", "ray", "--address", ray_cluster.address],  # --executor's old name: still runs on Ray
    )
    assert result.exit_code == 0, result.output
    assert "--engine is now --executor" in _words(result.output)
    assert f"{len(local.done)} clips prepared, 0 already cached, 1 failed" in _words(result.output)
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == names
    for name in names:
        a, b = tmp_path / "local" / name, tmp_path / "ray" / name
        if name.endswith(".npz"):
            with np.load(a) as x, np.load(b) as y:
                assert x.files == y.files and all(np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f") for k in x.files), name
        else:  # cache.json, errors.jsonl
            assert a.read_text() == b.read_text(), name


def test_actor_plan_follows_the_cluster():
    assert plan_actors(Resources(cpus=2, gpus=0, nodes=1, started_here=True), 100, RayOptions()) == ActorPlan(1, 1, 0)
    assert plan_actors(Resources(cpus=32, gpus=4, nodes=4, started_here=False), 100, RayOptions()) == ActorPlan(28, 4, 1)
    assert plan_actors(Resources(cpus=32, gpus=0, nodes=2, started_here=False), 5, RayOptions()) == ActorPlan(5, 1, 0)
    assert plan_actors(Resources(cpus=8, gpus=0, nodes=1, started_here=True), 100, RayOptions(preprocess_actors=3)) == ActorPlan(3, 1, 0)
    with pytest.raises(EdgeEmotionError, match="1 CPU"):
        plan_actors(Resources(cpus=1, gpus=0, nodes=1, started_here=True), 10, RayOptions())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "spark"], "choose local or ray"),
        (["--address", "10.0.0.1:6379"], "needs --executor ray"),
        (["--executor", "ray", "--workers", "0"], "preprocessing actors: 1 or more"),
        (["--engine", "ray", "--workers", "0"], "preprocessing actors: 1 or more"),
        (["--executor", "ray", "--engine", "local"], "old name: give one of them"),
    ],
)
def test_executor_options_are_checked_before_any_work(args, message, folder, fresh_checkpoint, tmp_path):
    result = CliRunner().invoke(app, ["score", str(folder), "-m", str(fresh_checkpoint), "-o", str(tmp_path / "r.csv"), *args])
    assert result.exit_code == 2 and message in _words(result.output)
    assert not (tmp_path / "r.csv").exists()
