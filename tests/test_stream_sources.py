"""`stream` from live sources and under faults: UDP MPEG-TS from a real-time test sender, RTSP from GStreamer, HTTP,
lavfi devices; timeouts, reconnects, signals, overload, bad sources and options. Shared pieces: stream_helpers.py.
"""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import live_sender as ls
import pytest
import stream_helpers
from stream_helpers import (
    MPEG2_ATOL,
    REPO,
    RTSP_ATOL,
    Collect,
    L,
    N,
    SlowBackend,
    best_fit,
    check_close,
    check_margin,
    cli,
    one_segment_off,
    stream,
    windows_of,
    worst_difference,
)
from typer.testing import CliRunner

from edge_emotion.cli import app
from edge_emotion.stream import SourceError, SourceSpec, read_events

# the shared module-scoped fixtures: pytest finds fixtures among a module's attributes
sharp_onnx, backend, recording, clip_file, file_run, references = (stream_helpers.sharp_onnx, stream_helpers.backend, stream_helpers.recording, stream_helpers.clip_file, stream_helpers.file_run, stream_helpers.references)


def test_udp_stream_cli_against_the_test_sender(recording, sharp_onnx, references, tmp_path):
    port = ls.free_udp_port()
    sender = threading.Thread(target=lambda: (ls.wait_for_listener(port), ls.send_mpegts(recording, f"udp://127.0.0.1:{port}?pkt_size=1316")))
    sender.start()
    out, summary_path = tmp_path / "events.jsonl", tmp_path / "summary.json"
    result = cli("stream", f"udp://127.0.0.1:{port}", "-m", str(sharp_onnx), "-o", str(out), "--timeout", "1.5",
                 "--summary", str(summary_path))  # the default hop: 2 segments
    sender.join()
    assert result.returncode == 0, result.stderr
    assert "no data for 1.5 s" in result.stderr and "events over" in result.stdout
    events, summary = read_events(out), json.loads(summary_path.read_text())
    assert out.read_text().endswith("\n") and summary["events"] == len(events) and summary["epochs"] == 1
    # every window was either reported or skipped (a loaded machine); frame 0 may be lost on joining a stream
    assert len(events) + summary["skipped_windows"] in (windows_of(117, 2 * L), windows_of(116, 2 * L))
    assert all(b["window"] > a["window"] and b["t_start"] > a["t_start"] for a, b in itertools.pairwise(events))
    # probabilities over each window equal the lossless file's, within the codecs' loss (mpeg2video + mp2)
    check_close(events, best_fit(events, recording, "two", references, 2 * L), atol=MPEG2_ATOL)


def test_a_source_that_stops_mid_stream_ends_after_the_timeout(recording, backend, face_detector):
    port = ls.free_udp_port()
    sender = threading.Thread(target=lambda: (ls.wait_for_listener(port), ls.send_mpegts(recording, f"udp://127.0.0.1:{port}", stop_after=2.0)))
    sender.start()
    events, summary = stream(SourceSpec(f"udp://127.0.0.1:{port}"), backend, face_detector, hop=L, timeout=1.0)
    sender.join()
    assert "no data for 1 s: the source stopped or was lost" in summary.ended
    assert events and events[-1]["t_end"] <= 2.0 + 0.05 and summary.stream_s < 2.1
    assert summary.wall_s < 30  # ended, instead of waiting for ever


def test_reconnect_starts_a_new_grid_and_never_mixes_the_two_sides(hap_clip_path, neu_clip_path, backend, face_detector, references):
    hap, neu = ls.load([hap_clip_path]), ls.load([neu_clip_path])  # 1.87 s, then 2.0 s after a break
    port = ls.free_udp_port()
    stop = threading.Event()

    def send_twice() -> None:
        for clip, pause in ((hap, 2.0), (neu, 0.5)):
            ls.wait_for_listener(port)
            ls.send_mpegts(clip, f"udp://127.0.0.1:{port}")
            time.sleep(pause)  # the source is gone for longer than the timeout; then the last windows are written
        stop.set()

    sender = threading.Thread(target=send_twice)
    sender.start()
    sink = Collect()
    events, summary = stream(SourceSpec(f"udp://127.0.0.1:{port}"), backend, face_detector, sink=sink, hop=L, timeout=1.0,
                             reconnect=True, stop=stop)
    sender.join()
    assert summary.ended == "interrupted" and summary.reconnects >= 1 and summary.epochs == 2
    first, second = [e for e in events if e["epoch"] == 0], [e for e in events if e["epoch"] == 1]
    assert first and second and events == first + second
    assert second[0]["t_start"] >= first[-1]["t_end"]  # the new grid starts after the old one's last window
    walls = [datetime.fromisoformat(e["t_wall_end"]).timestamp() for e in events]
    assert walls == sorted(walls)
    # on the wall clock an event is out d/2 - L/2 = 0.48 s after its window's end (it waits for the sound of its last
    # segment), plus the work; t_wall_end set by the first frame would be late by what FFmpeg read while opening
    # (not the windows whose last sound would come after the sender's end: they wait for the 2 s skew rule)
    ends = {0: first[0]["t_start"] + hap.duration, 1: second[0]["t_start"] + neu.duration}
    after = [written - wall for written, wall, e in zip(sink.wall, walls, events) if e["t_end"] + 0.48 <= ends[e["epoch"]]]
    assert len(after) >= 2 and 0.3 < min(after) and max(after) < 3.0, after
    assert {e["person"] for e in events} == {0}  # the same face in the same place keeps its number
    # each side's windows are its clip's, within the codecs' loss. The sides themselves are kept apart by the t_start
    # check above: under this model the two clips' first windows differ by about the codecs' loss (0.006 seen)
    check_close(second, best_fit(second, neu, "neu", references, L), atol=MPEG2_ATOL)
    check_close(first, best_fit(first, hap, "hap", references, L), atol=MPEG2_ATOL)


def test_a_network_stream_that_ends_ends_the_run(recording, backend, face_detector, tmp_path):
    ls.send_mpegts(recording, str(tmp_path / "two.ts"), realtime=False)  # MPEG-TS served over HTTP, then EOF
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/two.ts"
        events, summary = stream(SourceSpec(url), backend, face_detector, realtime=True)
        server.shutdown()
    assert summary.ended == "end of stream" and len(events) + summary.skipped_windows == windows_of(117, 2 * L)


def _rtsp_missing() -> str | None:
    if not Path("/usr/bin/python3").exists():
        return "no /usr/bin/python3 (GStreamer's Python bindings live in the system python)"
    check = subprocess.run(["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), "--check"], capture_output=True, text=True, check=False)
    return None if check.returncode == 0 else (check.stdout.strip() or check.stderr.strip().splitlines()[-1])


@pytest.mark.slow
def test_rtsp_from_a_real_gstreamer_server(recording, backend, face_detector, references, tmp_path):
    missing = _rtsp_missing()
    if missing:
        pytest.skip(f"no RTSP server here: {missing} (apt-get install python3-gst-1.0 gir1.2-gst-rtsp-server-1.0 "
                    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly)")
    mp4 = ls.write_mp4(recording, tmp_path / "two.mp4")
    port = ls.free_udp_port()
    server = subprocess.Popen(["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), str(mp4), str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().startswith("ready"), server.stderr
        source = SourceSpec(f"rtsp://127.0.0.1:{port}/cam", options={"rtsp_transport": "tcp"})
        events, summary = stream(source, backend, face_detector, hop=L, realtime=True, timeout=3.0)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert summary.epochs == 1 and summary.dropped_frames == 0
    assert len(events) + summary.skipped_windows == windows_of(117, L) and {e["person"] for e in events} == {0}
    walls = [e["t_wall_end"] for e in events]
    assert walls == sorted(walls) and len(set(walls)) == len(walls)
    # the same numbers as the lossless file, within the loss of H.264 (crf 12) + AAC and of the sound's last frame, which
    # RTP leaves out (0.021 seen). The camera's first frame may come before its clock is known: it is left out, and the
    # grid starts a frame later.
    check_close(events, best_fit(events, recording, "two", references, L), atol=RTSP_ATOL)


@pytest.mark.parametrize(
    ("clips", "atol"),
    [
        (("hap", "neu"), MPEG2_ATOL),
        (("hap",), MPEG2_ATOL),
        (("neu",), MPEG2_ATOL),
        pytest.param(("hap", "neu"), RTSP_ATOL, marks=pytest.mark.xfail(strict=True, reason=(
            "RTSP's 0.03 is above the largest one-segment-off difference (0.029): it needs measuring on a machine "
            "with GStreamer's RTSP server before it can be tightened"))),
    ],
    ids=["two-udp", "hap-udp", "neu-udp", "two-rtsp"],
)
def test_the_live_tolerance_fails_a_run_one_segment_off(clips, atol, hap_clip_path, neu_clip_path, references):
    """Negative control of the live comparisons: the same check, on the lossless file's windows read one segment late
    (each window with one wrong segment), fails, and by the tolerance alone (labels and people agree). Neighbouring
    segments look alike under this model, so it is a run off by a segment that fails, not every window of it."""
    paths = {"hap": hap_clip_path, "neu": neu_clip_path}
    name = "two" if len(clips) == 2 else clips[0]
    reference = references.windows(ls.load([paths[c] for c in clips]), name, L)
    late = one_segment_off(reference)
    assert all(e["label"] == reference[e["window"]]["label"] and e["person"] == reference[e["window"]]["person"] for e in late)
    assert worst_difference(late, reference) > atol
    with pytest.raises(AssertionError):
        check_close(late, reference, atol)


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
                             "-o", str(out), "--hop", "0.32"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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
    assert len(read_events(out)) < 9  # stopped before the end of the 3.9 s stream


def test_overload_skips_to_the_newest_window_and_latency_stays_bounded(clip_file, backend, face_detector):
    slow = SlowBackend(backend, seconds=0.5)  # 2 s for a window's first N crops; a window is due every 0.32 s
    sink = Collect()
    events, summary = stream(SourceSpec(str(clip_file)), slow, face_detector, sink=sink, hop=L, realtime=True)
    assert summary.ended == "end of stream"
    # each window reported was the newest complete one when the loop chose it (right after the previous event), so
    # it had waited less than a hop for that (+ slack for frames delivered late); not the last ones, which no newer
    # window follows. Reporting every window in turn would leave each waiting 0.18 s longer than the one before.
    arrived = [w - e["latency_ms"] / 1000 for w, e in zip(sink.written, events)]  # the window's last input arrived
    waited = [begun - arrival for begun, arrival, e in zip(sink.written, arrived[1:], events[1:])
              if e["t_end"] + L <= summary.stream_s]
    assert waited and max(waited) < L + 0.5, waited
    assert len(events) + summary.skipped_windows == 9 and summary.skipped_windows > 0
    # the segments only skipped windows needed were never computed; the frames no reported window covers are dropped
    assert summary.segments < 12 and summary.backend_rows == sum(slow.rows[1:]) < 12  # rows[0]: the warm-up
    assert summary.dropped_frames > 0 and events[-1]["dropped_frames"] == summary.dropped_frames
    assert [e["dropped_frames"] for e in events] == sorted(e["dropped_frames"] for e in events)  # cumulative
    check_margin(summary)
    assert summary.stages["inference"] >= 0.5 * summary.backend_rows  # the backend's sleep counts as inference time


def test_lavfi_stands_in_for_a_camera_and_a_separate_microphone(backend, face_detector):
    camera = SourceSpec("testsrc=size=320x240:rate=15", "lavfi")
    microphone = SourceSpec("sine=frequency=440:sample_rate=44100", "lavfi")
    events, summary = stream(camera, backend, face_detector, audio=microphone, realtime=True, duration=2.0)
    assert summary.ended == "--duration 2 s reached"
    assert len(events) + summary.skipped_windows == 2 and events  # windows ending by 2 s at the default hop 0.64 s
    # a test pattern has no face: one event per window on centre crops, person null; the tone is sound
    assert all(e["faceless"] == N and e["silent"] == 0 and e["person"] is None for e in events)


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
        (["--hop", "5"], "--hop must be at most the window (1.28 s), got 5"),
        (["--hop", "0.5"], "hop 0.5 s is not a multiple of the segment length 0.32 s (window 1.28 s / N = 4)"),
        (["--window", "2", "--hop", "0.3"], "hop 0.3 s is not a multiple of the segment length 0.5 s"),
        (["-O", "novalue"], "expected KEY=VALUE"),
        (["--reconnect"], "--reconnect is for network sources"),
    ):
        bad = runner.invoke(app, ["stream", str(clip_file), "-m", str(sharp_onnx), *args])
        assert bad.exit_code == 2 and message in " ".join(bad.output.replace("│", " ").split()), bad.output
