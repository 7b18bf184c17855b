"""`edge-emotion stream`: a live source (URL, capture device, paced file) -> one event per window on the segment grid.

Thin: it parses options, opens the backend and calls edge_emotion.stream.run_stream
(imported inside the body, so `edge-emotion --help` loads neither av nor torch).
SIGINT / SIGTERM set a stop flag: the loop ends after the window in hand, the
events file stays whole, the summary is printed and the exit status is 0 (a
second signal stops at once). Events go to -o, else to stdout when it is a pipe;
in a terminal a live view of the current label and probabilities goes to stderr.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from edge_emotion import defaults  # light: no av, no onnxruntime
from edge_emotion.cli.faces import DetectorOption, FacesOption, detector_dir, which_faces


def _key_values(items: list[str] | None, option: str) -> dict[str, str]:
    """["video_size=640x480", ...] -> {"video_size": "640x480"}; BadParameter naming the option otherwise."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        out[key] = value
    return out


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (the run ends cleanly); a second one gets the default behaviour."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        stop.set()
        for sig in previous:
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def live_view(event: dict[str, Any], source: str) -> Group:
    """The terminal view of the newest event (its codec record): its label, a bar per probability, latency and drops."""
    table = Table(show_header=False, box=None, padding=(0, 1))
    for label, p in sorted(event["probabilities"].items(), key=lambda kv: -kv[1]):
        style = "bold" if label == event["label"] else ""
        table.add_row(label, f"{p:.3f}", "█" * round(30 * p), style=style)
    notes = [f"{event['faceless']} faceless" if event["faceless"] else "", f"{event['silent']} silent" if event["silent"] else ""]
    who = "" if event.get("person") is None else f"person {event['person']}  "
    head = Text.assemble(
        (f"{source}  ", "dim"), (f"{event['t_start']:.2f}-{event['t_end']:.2f} s  ", ""), (who, ""), (event["label"], "bold"),
        (f"  latency {event['latency_ms']:.0f} ms  dropped {event['dropped_frames']}", "dim"),
        (("  " + ", ".join(n for n in notes if n)) if any(notes) else "", "yellow"),
    )
    return Group(head, table)


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The end-of-run summary as plain lines."""
    lat = summary["latency_ms"]
    margin = summary["inference_s_per_stream_s"]
    stages = ", ".join(f"{k} {v:.2f}" for k, v in summary["stages_s"].items())

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    lag = summary["end_lag_ms"]
    return [
        (
            f"{summary['source']}: {summary['events']} events over {summary['stream_s']:.1f} s of stream "
            f"in {summary['wall_s']:.1f} s (ended: {summary['ended']}); {summary['segments']} segments computed, "
            f"{summary['backend_rows']} crops through the backend"
        ),
        (
            f"latency ms p50 {ms(lat['p50'])}, p90 {ms(lat['p90'])}, p99 {ms(lat['p99'])} (after the window's end: p50 "
            f"{ms(lag['p50'])}, p90 {ms(lag['p90'])}); dropped frames {summary['dropped_frames']} "
            f"({summary['skipped_windows']} windows skipped); reconnects {summary['reconnects']}"
        ),
        "real-time margin: " + ("-" if margin is None else f"{margin:.3f} s of inference per stream second")
        + (f" (seconds by stage: {stages})" if stages else ""),
    ]


def stream(
    source: Annotated[str, typer.Argument(help="What PyAV opens: udp://, rtsp://, http://, srt:// URL, a device (with --format), or a file.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Artifact: ONNX (.onnx), checkpoint (.pt) or TensorRT engine (.engine).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Events as JSON lines (replaced). Default: stdout when it is a pipe.")] = None,
    window: Annotated[float | None, typer.Option("--window", min=0.01, help=f"Seconds per event (default: {defaults.STREAM_SECONDS_PER_SEGMENT:g} s per model segment, at least the audio window).")] = None,
    hop: Annotated[float | None, typer.Option("--hop", min=0.001, help="Seconds between events, a multiple of window / N (default: the multiple nearest 0.5 s).")] = None,
    realtime: Annotated[bool, typer.Option("--realtime", help="Pace the source at its own timestamps: a file behaves like a live source.")] = False,
    duration: Annotated[float | None, typer.Option("--duration", min=0.001, help="Stop after this many seconds of stream.")] = None,
    input_format: Annotated[str | None, typer.Option("--format", "-f", help="Input format: v4l2, alsa, lavfi, mpegts ... (default: guessed).")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-O", help="KEY=VALUE for the source (video_size=640x480, rtsp_transport=tcp ...); repeat.")] = None,
    audio: Annotated[str | None, typer.Option("--audio", help="A separate source for the sound (a microphone: --audio hw:0 --audio-format alsa).")] = None,
    audio_format: Annotated[str | None, typer.Option("--audio-format", help="Input format of --audio.")] = None,
    audio_option: Annotated[list[str] | None, typer.Option("--audio-option", help="KEY=VALUE for --audio; repeat.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds without data before the source counts as stalled or lost.")] = defaults.STREAM_TIMEOUT_S,
    reconnect: Annotated[bool, typer.Option("--reconnect", help="Reopen a lost or stalled network source (RTSP camera) instead of ending.")] = False,
    backend: Annotated[str | None, typer.Option("--backend", help="torch | onnxruntime | tensorrt (default: by the artifact's kind).")] = None,
    device: Annotated[str, typer.Option("--device", help="Backend device: auto, cpu, cuda, cuda:1 ...")] = "auto",
    summary_json: Annotated[Path | None, typer.Option("--summary", help="Also write the summary as JSON.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live view in the terminal.")] = False,
    faces: FacesOption = "largest",
    detector: DetectorOption = None,
) -> None:
    """Emotion of a live stream: every --hop seconds the last --window seconds -> one JSON event line (one per person with --faces all).

    The segment grid of `score --window --hop`: each segment of window / N seconds is scored once as it arrives, a window is the sum of its last N. Ends at the end of the stream, after --timeout seconds without data, at --duration, or on Ctrl-C / SIGTERM (exit status 0, summary printed).
    """
    from rich.live import Live

    from edge_emotion.backends import open_backend
    from edge_emotion.io.atomic import atomic_write_text
    from edge_emotion.preprocess.faces import FaceDetector
    from edge_emotion.run.codec import to_record
    from edge_emotion.run.result import Result
    from edge_emotion.stream import EventsFile, LineWriter, SourceSpec, StreamOptions, run_stream
    from edge_emotion.stream.events import EventWriter
    from edge_emotion.stream.options import check_options
    from edge_emotion.timeline.window_options import GridError, resolve_windowing

    spec = SourceSpec(source, input_format, _key_values(option, "--option"))
    audio_spec = None if audio is None else SourceSpec(audio, audio_format, _key_values(audio_option, "--audio-option"))
    options = StreamOptions(
        window=window, hop=hop, realtime=realtime, duration=duration, timeout=timeout, reconnect=reconnect, faces=which_faces(faces)
    )
    nets = detector_dir(detector)
    if not model.is_file():
        raise typer.BadParameter(f"{model}: no such file", param_hint="--model")
    err = Console(stderr=True)
    writers: list[EventWriter] = []
    to_stdout = output is None and not sys.stdout.isatty()
    view = Live(console=err, auto_refresh=False, transient=False) if not quiet and err.is_terminal else None

    def on_event(event: Result) -> None:
        if view is not None:
            view.update(live_view(to_record(event), source), refresh=True)

    def log(message: str) -> None:
        typer.secho(message, fg=typer.colors.YELLOW, err=True)

    stop = threading.Event()
    with open_backend(model, backend, device) as runner:
        config = runner.contract.preprocess
        try:  # W and H are checked against the model's N once the model is open, as `score` does
            resolve_windowing(config, window, hop)
            check_options(options, spec.is_file or bool(audio_spec and audio_spec.is_file))
        except GridError as exc:
            raise typer.BadParameter(str(exc), param_hint=exc.option) from exc
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        found = FaceDetector(config.face, nets=nets)
        if output is not None:
            writers.append(EventsFile(output))
        if to_stdout:
            writers.append(LineWriter(sys.stdout))
        try:
            with _stop_on_signals(stop):
                if view is not None:
                    view.start()
                try:
                    summary = run_stream(spec, runner, found, writers, options, audio_spec, stop, on_event, log)
                finally:
                    if view is not None:
                        view.stop()
        finally:
            for writer in writers:
                writer.close()
    report = summary.to_dict()
    if summary.ended != "end of stream" and summary.ended != "interrupted" and not summary.ended.startswith("--duration"):
        log(f"stream ended: {summary.ended}")
    for line in summary_lines(report):
        typer.echo(line, err=to_stdout)
    if summary_json is not None:
        atomic_write_text(summary_json, json.dumps(report, indent=2) + "\n")


def register(app: typer.Typer) -> None:
    """Add the stream command to the app."""
    app.command()(stream)
