"""Latency and real-time margin of `edge-emotion stream` on this machine, on the segment grid.

    python benchmarks/stream_latency.py                      # hops 0.5 and 0.25 (N = 10: L = 0.25 s), 30 s each
    python benchmarks/stream_latency.py --seconds 60 --json stream.json
    python benchmarks/stream_latency.py --source udp         # through the UDP MPEG-TS test sender (a second process)
    python benchmarks/stream_latency.py --source rtsp        # from GStreamer's RTSP server (tests/rtsp_server.py)
    python benchmarks/stream_latency.py --window 1.5 --hops 0.3,0.15   # smaller segments (L = 0.15 s), higher rates
    python benchmarks/stream_latency.py --soak-minutes 60    # memory of one long stream (RSS every 10 s)

Source: the two real CREMA-D fixture clips back to back (FFV1 + PCM), looped without end by lavfi's
movie / amovie filters and paced at their own timestamps (`--realtime`): a talking face that never stops,
as a camera would deliver it. `--source udp` instead streams them as MPEG-TS (mpeg2video + mp2) to
udp://127.0.0.1:PORT from tests/live_sender.py, paced at real time, in its own process. `--source rtsp`
serves them looped as H.264 + AAC in MP4 from GStreamer's rtsp-server (Debian's python3-gst-1.0 and
gir1.2-gst-rtsp-server-1.0, run by /usr/bin/python3) at rtsp://127.0.0.1:PORT/cam, read over TCP.
Model: a freshly initialised N = 10 branch exported to ONNX FP32 (the weights do not change the time),
or -m ARTIFACT. Every run is the real command (`python -m edge_emotion stream ... --summary`), in a
fresh process pinned to --cores CPUs (default 2), so the figures are what a user gets.

Per hop (a multiple of the segment length L = window / N): events, segments computed per event (hop / L
once running), latency p50 / p90 / p99 (ms, from the arrival of a window's last input, its last segment's
frame or the end of that segment's audio window, to its event line being written), the lag after the
window's end on the stream clock (p50: the event waits d/2 - L/2 for its last segment's sound, then the
work), dropped frames, skipped windows, inference seconds per stream second (the real-time margin: below
1 the machine keeps up), and seconds by stage. Then the smallest hop (the highest event rate) that ran
without a dropped frame.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

DEFAULT_HOPS = "0.5,0.25"


def build_model(n_segments: int, folder: Path) -> Path:
    """A fresh N-segment branch of the real architecture, exported to ONNX FP32."""
    import torch

    from edge_emotion import LABELS
    from edge_emotion.config import PreprocessConfig
    from edge_emotion.toolchain.checkpoint import load_checkpoint, save_checkpoint
    from edge_emotion.toolchain.export.pipeline import build_onnx
    from edge_emotion.toolchain.model import WIDTHS, SegmentBranch

    torch.manual_seed(0)
    branch = SegmentBranch()
    checkpoint = folder / f"fresh_n{n_segments}.pt"
    save_checkpoint(checkpoint, {
        "model": branch.state_dict(), "model_config": {"n_classes": 6, "modality": "both", "widths": list(WIDTHS)},
        "labels": list(LABELS), "preprocess": PreprocessConfig(n_segments=n_segments).to_dict(),
        "train_config": {"note": "untrained: for timing only"},
    })
    out = folder / f"fresh_n{n_segments}.onnx"
    build_onnx(load_checkpoint(checkpoint), out, "fp32")
    return out


def looped_source(folder: Path) -> list[str]:
    """stream arguments for the fixture clips as an endless, paced lavfi source."""
    import live_sender

    fixtures = REPO / "tests" / "fixtures"
    clip = live_sender.write_lossless(
        live_sender.load([fixtures / "1001_DFA_HAP_XX.flv", fixtures / "1001_DFA_NEU_XX.flv"]), folder / "two.nut")
    graph = f"movie={clip}:loop=0,setpts=N/FRAME_RATE/TB[out0];amovie={clip}:loop=0,asetpts=N/SR/TB[out1]"
    return [graph, "--format", "lavfi", "--realtime"]


def rtsp_server(folder: Path, seconds: float, cores: int) -> tuple[subprocess.Popen, str]:
    """GStreamer's RTSP server (tests/rtsp_server.py, the system python3) serving the clips looped for `seconds`."""
    import live_sender

    check = subprocess.run(["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), "--check"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise SystemExit(f"--source rtsp: {check.stdout.strip() or check.stderr.strip()}")
    fixtures = REPO / "tests" / "fixtures"
    recording = live_sender.load([fixtures / "1001_DFA_HAP_XX.flv", fixtures / "1001_DFA_NEU_XX.flv"])
    mp4 = folder / "looped.mp4"
    if not mp4.exists():
        live_sender.write_mp4(recording, mp4, loops=int(seconds // recording.duration) + 2)
    port = free_udp_port()
    server = subprocess.Popen(["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), str(mp4), str(port)],
                              stdout=subprocess.PIPE, text=True, preexec_fn=_pin(cores))
    assert server.stdout is not None
    ready = server.stdout.readline().split()
    if ready[:1] != ["ready"]:
        server.kill()
        raise SystemExit("--source rtsp: the RTSP server did not start")
    return server, ready[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pin(cores: int):
    def pin() -> None:
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(available[:cores]))
    return pin


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_once(model: Path, hop: float, seconds: float, source: str, folder: Path, cores: int,
             sample_every: float | None = None, window: float | None = None) -> dict:
    """One `stream` run of `seconds` of stream; its --summary, the wall time, and RSS samples if asked."""
    summary_path, events_path = folder / f"summary_{hop}.json", folder / f"events_{hop}.jsonl"
    sender = None
    if source == "udp":
        port = free_udp_port()
        source_args = [f"udp://127.0.0.1:{port}", "--timeout", "3"]
        sender = subprocess.Popen([sys.executable, str(REPO / "tests" / "live_sender.py"), str(port), str(seconds)],
                                  preexec_fn=_pin(cores))
    elif source == "rtsp":
        sender, url = rtsp_server(folder, seconds, cores)
        source_args = [url, "-O", "rtsp_transport=tcp", "--timeout", "3"]
    else:
        source_args = looped_source(folder)
    command = [sys.executable, "-m", "edge_emotion", "stream", *source_args, "-m", str(model), "--hop", str(hop),
               "--duration", str(seconds), "-q", "-o", str(events_path), "--summary", str(summary_path),
               *(["--window", str(window)] if window else [])]
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_pin(cores))
    samples: list[tuple[float, float]] = []
    if sample_every:
        def sample() -> None:
            while proc.poll() is None:
                if (mb := rss_mb(proc.pid)):  # None or 0 while the process is still being exec'd
                    samples.append((round(time.monotonic() - started, 1), round(mb, 1)))
                time.sleep(sample_every)
        threading.Thread(target=sample, daemon=True).start()
    stdout, stderr = proc.communicate()
    if source == "rtsp" and sender is not None:
        sender.terminate()  # the server would serve on; the run ended at --duration
    if sender is not None:
        sender.wait(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"stream exited {proc.returncode}: {stderr.strip()}")
    result = json.loads(summary_path.read_text())
    result.update(hop=hop, process_wall_s=round(time.monotonic() - started, 1), rss_mb=samples)
    return result


def machine() -> dict:
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg(),
            "commit": commit.stdout.strip() or None}


def table(rows: list[dict]) -> str:
    head = ("| hop s | events/s | events | segments / event | latency p50 ms | p90 | p99 | after the window's end p50 ms | "
            "dropped frames | skipped windows | inference s / stream s | faces ms / segment |")
    lines = [head, "|" + "---:|" * 12]
    for r in rows:
        lat, lag = r["latency_ms"], r["end_lag_ms"]
        per_segment = 1000 * r["stages_s"].get("faces", 0.0) / max(r["segments"], 1)
        lines.append(
            f"| {r['hop']:g} | {1 / r['hop']:.1f} | {r['events']} | {r['segments'] / max(r['events'], 1):.2f} | {lat['p50']} | "
            f"{lat['p90']} | {lat['p99']} | {lag['p50']} | {r['dropped_frames']} | {r['skipped_windows']} | "
            f"{r['inference_s_per_stream_s']} | {per_segment:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, help="artifact to stream with (default: a fresh N = 10 ONNX FP32)")
    parser.add_argument("--hops", default=DEFAULT_HOPS, help="hops to try, largest first: multiples of window / N")
    parser.add_argument("--window", type=float, help="seconds per window (default: the model's, 2.5 s at N = 10)")
    parser.add_argument("--seconds", type=float, default=30.0, help="stream seconds per hop")
    parser.add_argument("--source", choices=("file", "udp", "rtsp"), default="file",
                        help="paced looped file (lavfi), the UDP sender, or GStreamer's RTSP server")
    parser.add_argument("--cores", type=int, default=2, help="CPUs the stream (and sender) may use")
    parser.add_argument("--soak-minutes", type=float, help="instead: one stream this long at hop 0.5, RSS every 10 s")
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args()

    report: dict = {"machine": machine(), "source": args.source, "cores": args.cores, "seconds": args.seconds, "window": args.window,
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model or build_model(10, folder)
        report["model"] = str(model if args.model else "fresh N = 10 branch, ONNX FP32")
        if args.soak_minutes:
            run = run_once(model, 0.5, 60 * args.soak_minutes, args.source, folder, args.cores, sample_every=10.0, window=args.window)
            rss = [mb for _, mb in run["rss_mb"]]
            settled = rss[len(rss) // 10 :] or rss
            run["rss_summary_mb"] = {"first": rss[0], "after_10pct": settled[0], "max": max(rss), "last": rss[-1]}
            report["soak"] = run
            print(table([run]))
            print(f"RSS MB: {run['rss_summary_mb']} over {len(rss)} samples")
        else:
            rows, failing = [], 0
            for hop in (float(h) for h in args.hops.split(",")):
                row = run_once(model, hop, args.seconds, args.source, folder, args.cores, window=args.window)
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
                failing = failing + 1 if row["dropped_frames"] else 0
                if failing >= 2:
                    break  # two hops in a row with drops: smaller ones only drop more
            sustained = [r["hop"] for r in rows if r["dropped_frames"] == 0]
            report["runs"] = rows
            report["smallest_hop_without_drops"] = min(sustained) if sustained else None
            print(table(rows))
            print(f"highest rate without drops: hop {report['smallest_hop_without_drops']} s")
    report["load_average_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
