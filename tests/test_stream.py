"""`stream`: live sources (UDP MPEG-TS from a real-time test sender, a paced file, lavfi devices) -> window events.

The model is the fresh (untrained) checkpoint with its classifier sharpened (conftest's sharp_checkpoint), so
its probabilities move with the input by more than float noise: a window taken from the wrong frames or the
wrong stretch of sound shows. No timing is asserted except against growth and generous bounds.
"""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import live_sender as ls
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from edge_emotion import LABELS
from edge_emotion.backends import open_backend
from edge_emotion.backends.base import Backend
from edge_emotion.cli import app
from edge_emotion.cli.stream_cmds import live_view, summary_lines
from edge_emotion.run.score import predict_clip
from edge_emotion.stream import EventsFile, SourceError, SourceSpec, StreamOptions, read_events, run_stream
from edge_emotion.stream.buffer import LiveBuffer
from edge_emotion.stream.window import Schedule, pick_slots

FPS = float(ls.FPS)
F = round(1.28 * FPS)  # frames per window: the default window of an N = 4 model is the 1.28 s audio window
REPO = Path(__file__).resolve().parents[1]


class Collect:
    """An event writer that keeps the events in a list, and when each was written (time.monotonic())."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.written: list[float] = []

    def write(self, event: dict) -> None:
        self.events.append(event)
        self.written.append(time.monotonic())

    def close(self) -> None:
        pass


class SlowBackend(Backend):
    """A real backend made slower than the stream: every call sleeps first (an overloaded edge device)."""

    name = "slow"

    def __init__(self, inner: Backend, seconds: float) -> None:
        super().__init__(inner.path, inner.contract)
        self.inner, self.seconds = inner, seconds

    def infer_impl(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return self.inner.infer(faces, spectrograms)


def probs(event: dict) -> np.ndarray:
    return np.array([event["probabilities"][k] for k in LABELS])


def expected_windows(frames: int, hop: float) -> int:
    return math.floor((frames - F) / (FPS * hop) + 1e-6) + 1


def stream(spec: SourceSpec, backend: Backend, detector, audio: SourceSpec | None = None, stop=None, sink=None, **options):
    sink = sink or Collect()
    summary = run_stream(spec, backend, detector, [sink], StreamOptions(**options), audio=audio, stop=stop)
    return sink.events, summary


def check_margin(summary) -> float:
    """real_time_margin is the seconds spent on windows (their stages) per stream second; returns it."""
    margin = summary.real_time_margin
    assert margin == pytest.approx(summary.processing_s / summary.stream_s)
    assert sum(summary.stages.values()) <= summary.processing_s + 1e-6  # the stages are parts of it
    assert 0 < summary.processing_s <= summary.wall_s  # one loop evaluates the windows: never more than the run
    return margin


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_emotion", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)


@pytest.fixture(scope="module")
def sharp_onnx(sharp_checkpoint, tmp_path_factory) -> Path:
    from edge_emotion.build.checkpoint import load_checkpoint
    from edge_emotion.build.export.pipeline import build_onnx

    path = tmp_path_factory.mktemp("stream_model") / "sharp.onnx"
    build_onnx(load_checkpoint(sharp_checkpoint), path, "fp32")
    return path


@pytest.fixture(scope="module")
def backend(sharp_onnx):
    with open_backend(sharp_onnx, device="cpu") as runner:
        yield runner


@pytest.fixture(scope="module")
def recording(hap_clip_path, neu_clip_path) -> ls.Recording:
    """The two real clips back to back: 117 frames, 3.9 s."""
    return ls.load([hap_clip_path, neu_clip_path])


@pytest.fixture(scope="module")
def clip_file(recording, tmp_path_factory) -> Path:
    return ls.write_lossless(recording, tmp_path_factory.mktemp("stream_src") / "two.nut")


@pytest.fixture(scope="module")
def file_run(clip_file, backend, face_detector):
    """The file read as fast as it decodes (every window evaluated), hop 0.5 s."""
    return stream(SourceSpec(str(clip_file)), backend, face_detector, hop=0.5)


def predict_window(recording: ls.Recording, first: int, t_start: float, backend, detector, folder: Path) -> dict:
    """`predict` on a file holding just the window's frames and sound."""
    path = ls.write_lossless(recording.cut(first, F, t_start), folder / f"cut_{first}_{t_start:.3f}.nut")
    return predict_clip(path, backend, detector)


# ----------------------------------------------------------------------------- pure parts


def test_each_slot_takes_the_newest_frame_at_or_before_it():
    times = np.array([0.0, 1, 3, 4, 5]) / 30  # frame 2 lost in transit
    slots = np.arange(6) / 30 + 0.002  # jitter within half a frame
    assert pick_slots(times, slots, 0.5 / 30).tolist() == [0, 1, 1, 2, 3, 4]
    assert pick_slots(times, np.array([-1.0]), 0.5 / 30).tolist() == [0]  # before every frame: the first


def test_a_window_is_complete_when_its_frames_and_sound_have_arrived():
    s = Schedule(t0=0.0, fps=30.0, frames=30, hop=0.5)  # 1 s windows every 0.5 s
    assert s.newest_complete(None, None, False) == -1
    assert s.newest_complete(2.0, 2.0, False) == 2  # windows [0, 1), [0.5, 1.5), [1, 2)
    assert s.newest_complete(2.0, 1.0, False) == 0  # the sound lags: wait for it
    assert s.newest_complete(2.0, 1.0, True) == 2  # ... unless it has ended
    assert s.newest_complete(5.0, 1.0, False) == 4  # video 2 s past a window's end: go on without its sound


def test_the_live_buffer_stays_bounded_however_long_the_stream():
    halt = threading.Event()
    live = LiveBuffer(span_s=3.0, fps=30.0, lossless=False)
    for i in range(20_000):  # 11 minutes of 30 fps video and 40 audio frames a second
        live.push_video(i / 30, object(), halt)
        live.push_audio(i / 40, (i + 1) / 40, object(), halt)
    assert len(live.video) <= 3 * 30 + 1 and live.next_seq == 20_000
    assert live.audio[-1].end - live.audio[0].time <= 3.0 + 1 / 40
    frozen = LiveBuffer(span_s=3.0, fps=30.0, lossless=True)  # a clock that stands still, no loop to take frames
    for _ in range(2_000):
        frozen.push_video(0.0, object(), halt)
    assert len(frozen.video) <= 4 * frozen.max_video and frozen.lost > 0


def test_event_lines_are_whole_and_a_torn_last_line_is_left_out(tmp_path):
    path = tmp_path / "events.jsonl"
    events = EventsFile(path)
    for k in range(3):
        events.write({"t_start": k, "label": "HAP"})
    events.close()
    assert [e["t_start"] for e in read_events(path)] == [0, 1, 2]
    with open(path, "a") as f:
        f.write('{"t_start": 3, "lab')  # what a kill in the middle of a write would leave
    assert [e["t_start"] for e in read_events(path)] == [0, 1, 2]
    EventsFile(path).close()  # a new run replaces the file
    assert path.read_text() == ""


def test_live_view_and_summary_show_the_label_and_the_figures():
    event = {"t_start": 1.0, "t_end": 2.28, "label": "NEU", "probabilities": dict(zip(LABELS, [0.1, 0.1, 0.1, 0.1, 0.5, 0.1])),
             "latency_ms": 87.0, "dropped_frames": 3, "faceless": 1, "silent": 0}
    with open(os.devnull, "w") as sink:
        console = Console(width=120, record=True, file=sink)
        console.print(live_view(event, "udp://127.0.0.1:5000"))
    text = console.export_text()
    assert "NEU" in text and "0.500" in text and "latency 87 ms" in text and "dropped 3" in text and "1 faceless" in text
    lines = summary_lines({"source": "x", "events": 4, "stream_s": 3.9, "wall_s": 4.0, "ended": "end of stream",
                           "latency_ms": {"p50": 80.0, "p90": 95.0, "p99": 99.0}, "dropped_frames": 0, "skipped_windows": 0,
                           "reconnects": 0, "inference_s_per_stream_s": 0.25, "stages_s": {"faces": 0.8}})
    assert "p50 80, p90 95, p99 99" in lines[1] and "0.250 s of inference per stream second" in lines[2]


# ----------------------------------------------------------------------------- files


def test_file_windows_equal_predict_on_the_same_frames(file_run, recording, backend, face_detector, tmp_path):
    events, summary = file_run
    assert summary.ended == "end of stream" and summary.dropped_frames == 0 and summary.skipped_windows == 0
    assert len(events) == expected_windows(len(recording.frames), 0.5) == 6
    for k, event in enumerate(events):
        assert event["t_start"] == pytest.approx(0.5 * k, abs=1e-3)
        assert event["t_end"] - event["t_start"] == pytest.approx(F / FPS, abs=2e-3)
        assert set(event) == {"t_start", "t_end", "person", "label", "probabilities", "latency_ms", "dropped_frames", "faceless", "silent"}
        assert event["person"] == 0  # the one actor, the same number in every window
        want = predict_window(recording, round(event["t_start"] * FPS), event["t_start"], backend, face_detector, tmp_path)
        assert event["label"] == want["label"] and (event["faceless"], event["silent"]) == (want["faceless"], want["silent"])
        np.testing.assert_allclose(probs(event), probs(want), atol=5e-3)  # the sound's sub-sample phase differs
    assert summary.events == 6 and summary.stream_s == pytest.approx(len(recording.frames) / FPS, abs=0.05)
    check_margin(summary)


def test_realtime_file_is_paced_and_gives_the_same_windows(clip_file, file_run, backend, face_detector):
    events, summary = stream(SourceSpec(str(clip_file)), backend, face_detector, hop=0.5, realtime=True)
    assert summary.wall_s >= events[-1]["t_end"] - F / FPS  # paced: the last window waited for its frames
    assert len(events) + summary.skipped_windows == 6 and len(events) >= 2
    # a window costs a fraction of the 0.5 s hop here: inference kept up, below 1 s per stream second
    assert check_margin(summary) < 1
    by_start = {e["t_start"]: e for e in file_run[0]}
    for event in events:  # the same frames as the unpaced run: the same numbers
        np.testing.assert_allclose(probs(event), probs(by_start[event["t_start"]]), atol=1e-6)
    assert [e["t_start"] for e in events] == sorted({e["t_start"] for e in events})


def test_duration_stops_the_stream(clip_file, backend, face_detector):
    events, summary = stream(SourceSpec(str(clip_file)), backend, face_detector, hop=0.5, duration=2.0)
    assert summary.ended == "--duration 2 s reached" and len(events) == 2 and events[-1]["t_end"] <= 2.0


# ----------------------------------------------------------------------------- live sources


def test_udp_stream_cli_against_the_test_sender(recording, sharp_onnx, backend, face_detector, tmp_path):
    port = ls.free_udp_port()
    sender = threading.Thread(target=lambda: (ls.wait_for_listener(port), ls.send_mpegts(recording, f"udp://127.0.0.1:{port}?pkt_size=1316")))
    sender.start()
    out, summary_path = tmp_path / "events.jsonl", tmp_path / "summary.json"
    result = cli("stream", f"udp://127.0.0.1:{port}", "-m", str(sharp_onnx), "-o", str(out), "--hop", "0.5", "--timeout", "1.5",
                 "--summary", str(summary_path))
    sender.join()
    assert result.returncode == 0, result.stderr
    assert "no data for 1.5 s" in result.stderr and "events over" in result.stdout
    events, summary = read_events(out), json.loads(summary_path.read_text())
    assert out.read_text().endswith("\n") and summary["events"] == len(events)
    # every window was either evaluated or skipped (a loaded machine); frame 0 may be lost on joining a stream
    assert len(events) + summary["skipped_windows"] in (expected_windows(117, 0.5), expected_windows(116, 0.5))
    starts = [e["t_start"] for e in events]
    assert all(round((b - a) / 0.5, 3).is_integer() and b > a for a, b in itertools.pairwise(starts))
    # labels and probabilities over each window equal `predict` on the same frames, within the codecs' loss;
    # the stream's first frame is the sender's frame 0 or 1 (joining an MPEG-TS stream may lose one): the better fit

    def diff(event: dict, lost: int) -> tuple[float, bool]:
        first = round((event["t_start"] - starts[0]) * FPS) + lost
        want = predict_window(recording, first, first / FPS, backend, face_detector, tmp_path)
        return float(np.abs(probs(event) - probs(want)).max()), event["label"] == want["label"]

    lost = min((0, 1), key=lambda j: diff(events[0], j)[0])
    diffs = [diff(event, lost) for event in (events[0], events[len(events) // 2], events[-1])]
    assert all(same for _, same in diffs) and max(d for d, _ in diffs) < 0.02, diffs


def test_a_source_that_stops_mid_stream_ends_after_the_timeout(recording, backend, face_detector):
    port = ls.free_udp_port()
    sender = threading.Thread(target=lambda: (ls.wait_for_listener(port), ls.send_mpegts(recording, f"udp://127.0.0.1:{port}", stop_after=2.0)))
    sender.start()
    events, summary = stream(SourceSpec(f"udp://127.0.0.1:{port}"), backend, face_detector, hop=0.25, timeout=1.0)
    sender.join()
    assert "no data for 1 s: the source stopped or was lost" in summary.ended
    assert events and events[-1]["t_end"] <= 2.0 + 0.05 and summary.stream_s < 2.1
    assert summary.wall_s < 30  # ended, instead of waiting for ever


def test_reconnect_reopens_a_source_that_comes_back(hap_clip_path, backend, face_detector):
    part = ls.load([hap_clip_path])  # 1.87 s: 3 windows at hop 0.25
    port = ls.free_udp_port()
    stop = threading.Event()

    def send_twice() -> None:
        for pause in (2.0, 0.5):
            ls.wait_for_listener(port)
            ls.send_mpegts(part, f"udp://127.0.0.1:{port}")
            time.sleep(pause)  # the source is gone for longer than the timeout; then the last windows are written
        stop.set()

    sender = threading.Thread(target=send_twice)
    sender.start()
    events, summary = stream(SourceSpec(f"udp://127.0.0.1:{port}"), backend, face_detector, hop=0.25, timeout=1.0,
                             reconnect=True, stop=stop)
    sender.join()
    assert summary.ended == "interrupted" and summary.reconnects >= 1
    assert events[0]["t_start"] < 1.0 and events[-1]["t_start"] > 1.87  # windows before and after the gap
    assert [e["t_start"] for e in events] == sorted(e["t_start"] for e in events)


def test_a_network_stream_that_ends_ends_the_run(recording, backend, face_detector, tmp_path):
    ls.send_mpegts(recording, str(tmp_path / "two.ts"), realtime=False)  # MPEG-TS served over HTTP, then EOF
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/two.ts"
        events, summary = stream(SourceSpec(url), backend, face_detector, hop=0.5, realtime=True)
        server.shutdown()
    assert summary.ended == "end of stream" and len(events) + summary.skipped_windows == expected_windows(117, 0.5)


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory) -> dict[str, str]:
    """An environment where the training side cannot be imported, as on a device with the runtime-only install."""
    root = tmp_path_factory.mktemp("blocked")
    for name in ("torch", "torchvision", "facenet_pytorch", "librosa", "onnx"):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked: the runtime must not need it')\n")
    return {**os.environ, "PYTHONPATH": str(root), "PYTHONNOUSERSITE": "1"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_stream_ends_cleanly(signum, clip_file, sharp_onnx, no_torch, tmp_path):
    out = tmp_path / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edge_emotion", "stream", str(clip_file), "--realtime", "-m", str(sharp_onnx),
                             "-o", str(out), "--hop", "0.25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=no_torch)  # without torch: the stream path is the runtime's
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and not (out.exists() and out.read_text().count("\n") >= 1):
        time.sleep(0.05)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "ended: interrupted" in stdout and "latency ms p50" in stdout
    text = out.read_text()
    assert text.endswith("\n") and len(read_events(out)) == text.count("\n") >= 1  # whole lines only
    assert len(read_events(out)) < 11  # stopped before the end of the 3.9 s stream


def test_overload_drops_frames_and_latency_stays_bounded(clip_file, backend, face_detector):
    slow = SlowBackend(backend, seconds=0.3)  # each window takes > 0.3 s; a window is due every 0.1 s
    sink = Collect()
    events, summary = stream(SourceSpec(str(clip_file)), slow, face_detector, sink=sink, hop=0.1, realtime=True)
    assert summary.ended == "end of stream"
    # each window evaluated was the newest complete one when its evaluation began (right after the previous event),
    # so it had waited less than a hop for it (+ slack for frames delivered late), whatever a window costs on this
    # machine; not the last ones, which no newer window follows. Evaluating every window in turn would leave each
    # waiting 0.2 s longer than the one before (seconds by the end).
    arrived = [w - e["latency_ms"] / 1000 for w, e in zip(sink.written, events)]  # the window's last frame arrived
    waited = [begun - arrival for begun, arrival, e in zip(sink.written, arrived[1:], events[1:])
              if e["t_end"] + 0.1 <= summary.stream_s]
    assert waited and max(waited) < 0.1 + 0.5, waited
    assert len(events) + summary.skipped_windows == expected_windows(117, 0.1) and summary.skipped_windows > 0
    assert summary.dropped_frames > 0 and events[-1]["dropped_frames"] == summary.dropped_frames
    assert [e["dropped_frames"] for e in events] == sorted(e["dropped_frames"] for e in events)  # cumulative
    check_margin(summary)
    assert summary.stages["inference"] >= 0.3 * len(events)  # the backend's sleep counts as inference time


def test_lavfi_stands_in_for_a_camera_and_a_separate_microphone(backend, face_detector):
    camera = SourceSpec("testsrc=size=320x240:rate=15", "lavfi")
    microphone = SourceSpec("sine=frequency=440:sample_rate=44100", "lavfi")
    events, summary = stream(camera, backend, face_detector, audio=microphone, hop=0.5, realtime=True, duration=2.0)
    assert summary.ended == "--duration 2 s reached"
    assert len(events) + summary.skipped_windows == 2 and events
    assert all(e["faceless"] == 4 and e["silent"] == 0 for e in events)  # a test pattern has no face; the tone is sound


# ----------------------------------------------------------------------------- mistakes


def test_bad_sources_and_options_end_in_one_line(sharp_onnx, clip_file):
    result = cli("stream", "/no/such/clip.mp4", "-m", str(sharp_onnx))
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "/no/such/clip.mp4: no such file" in result.stderr and "Traceback" not in result.stderr
    runner = CliRunner()
    silent_port = ls.free_udp_port()
    quiet = runner.invoke(app, ["stream", f"udp://127.0.0.1:{silent_port}", "-m", str(sharp_onnx), "--timeout", "0.5"])
    assert isinstance(quiet.exception, SourceError) and "no data within 0.5 s" in str(quiet.exception)
    for args, message in (
        (["--hop", "5"], "--hop must be positive and at most the window"),
        (["-O", "novalue"], "expected KEY=VALUE"),
        (["--reconnect"], "--reconnect is for network sources"),
    ):
        bad = runner.invoke(app, ["stream", str(clip_file), "-m", str(sharp_onnx), *args])
        assert bad.exit_code == 2 and message in bad.output, bad.output
