"""Long recordings as timelines, as a device runs them: `score --window --hop` on 1280x720 H.264 recordings.

    python benchmarks/timeline_speed.py --model n10.onnx --venv /work/rtvenv --minutes 1,10 [--workers 2]
        [--window 2.5 --hop 0.5] [--json out.json]

For each length: a recording made from the fixture clips (one 60 s 1280x720 H.264 + AAC piece, encoded once
with PyAV, then repeated by copying its packets with shifted timestamps, so an hour costs seconds to make),
then, in fresh processes of the runtime-only venv:
- decoding alone: every video frame decoded (no conversion) and the audio, on one thread: the floor;
- `edge-emotion score REC --window W --hop H --workers K`, cold: wall, times real time, the ratio to decoding
  alone, and the peak RSS of the parent and of each worker, sampled from /proc every 0.25 s (with the samples at
  a tenth, half and the end of the run, to show whether memory grows with length);
- with --before VENV, the same `score` of the same recording by an older install right after (before/after in one
  run, on one decoding-alone yardstick).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "1001_DFA_HAP_XX.flv"
PIECE_S = 60


def make_piece(path: Path, seconds: int = PIECE_S, size: tuple[int, int] = (1280, 720), fps: int = 30) -> None:
    """A `seconds`-long 1280x720 H.264 (libx264 veryfast) + AAC recording: the fixture actor's frames scaled into the
    middle of the canvas (a face ~190 px wide) and its voice, looped."""
    import av
    import numpy as np

    with av.open(str(FIXTURE)) as src:
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    with av.open(str(FIXTURE)) as src:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        audio = np.concatenate([r.to_ndarray().reshape(-1) for f in src.decode(audio=0) for r in resampler.resample(f)])
    width, height = size
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "g": str(2 * fps)})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=16000, layout="mono")
        canvas = np.full((height, width, 3), 40, np.uint8)
        h, w = frames[0].shape[:2]
        top, left = (height - 2 * h) // 2, (width - 2 * w) // 2
        for i in range(seconds * fps):
            canvas[top : top + 2 * h, left : left + 2 * w] = frames[i % len(frames)].repeat(2, 0).repeat(2, 1)
            for packet in video.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        samples = np.resize(audio, seconds * 16000).astype(np.int16)
        for start in range(0, len(samples), 1024):
            chunk = samples[start : start + 1024].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, start, Fraction(1, 16000)
            for packet in sound.encode(frame):
                out.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode():
                out.mux(packet)


def repeat_piece(piece: Path, path: Path, times: int) -> None:
    """`times` copies of the piece back to back, by packet copy with shifted timestamps (no re-encoding)."""
    import av

    with av.open(str(piece)) as src:  # the period: from the earliest dts to the latest packet end, any stream
        spans = [(float(p.dts * p.time_base), float((p.pts + (p.duration or 0)) * p.time_base))
                 for p in src.demux() if p.dts is not None]
    period = max(end for _, end in spans) - min(start for start, _ in spans)
    with av.open(str(piece)) as src, av.open(str(path), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
        for k in range(times):
            src.seek(0)
            for packet in src.demux():
                if packet.dts is None:
                    continue
                offset = round(k * period / packet.time_base)
                packet.pts, packet.dts = packet.pts + offset, packet.dts + offset
                packet.stream = streams[packet.stream.index]
                out.mux(packet)


def decode_alone(venv: Path, path: Path) -> float:
    """Wall seconds to decode every frame and the audio, one thread, in a fresh process of the venv."""
    code = ("import sys, time, av\nt = time.perf_counter()\nwith av.open(sys.argv[1]) as c:\n"
            "    c.streams.video[0].thread_type = 'SLICE'\n    for f in c.decode(video=0, audio=0): pass\n"
            "print(time.perf_counter() - t)")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code, str(path)], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.strip())


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def score_with_rss(command: list[str]) -> dict:
    """Run `command`; wall seconds and RSS samples (parent, largest child) every 0.25 s."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = []
    while process.poll() is None:
        children = [_rss_mb(c) for c in _children(process.pid)]
        samples.append((time.perf_counter() - start, _rss_mb(process.pid), max(children, default=0.0)))
        time.sleep(0.25)
    wall = time.perf_counter() - start
    if process.returncode:
        raise RuntimeError(f"{command[0]} exited {process.returncode}: {process.stderr.read().decode()[-500:]}")
    at = {f"{q:.1f}": [round(v) for v in samples[min(len(samples) - 1, int(q * len(samples)))][1:]]
          for q in (0.1, 0.5, 0.99)} if samples else {}
    return {"wall_s": round(wall, 2), "peak_parent_mb": round(max((s[1] for s in samples), default=0)),
            "peak_worker_mb": round(max((s[2] for s in samples), default=0)), "rss_at_fraction": at}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--venv", type=Path, required=True, help="a runtime-only venv (pip install .)")
    parser.add_argument("--minutes", default="1", help="recording lengths, comma-separated")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--window", type=float, default=2.5)
    parser.add_argument("--hop", type=float, default=0.5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--before", type=Path, metavar="VENV", help="an older runtime venv to score the same files")
    args = parser.parse_args()
    report = {"load_before": os.getloadavg()[0], "workers": args.workers, "window": args.window, "hop": args.hop,
              "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        piece = Path(tmp) / "piece.mp4"
        make_piece(piece)
        for minutes in (int(m) for m in args.minutes.split(",")):
            folder = Path(tmp) / f"rec{minutes}"
            folder.mkdir()
            recording = folder / f"rec{minutes}min.mp4"
            repeat_piece(piece, recording, minutes)
            decode_s = decode_alone(args.venv, recording)
            for install, venv in [("now", args.venv)] + ([("before", args.before)] if args.before else []):
                out = Path(tmp) / f"rows{minutes}{install}.csv"
                command = [str(venv / "bin" / "edge-emotion"), "score", str(folder), "-m", str(args.model), "-o",
                           str(out), "-q", "--window", str(args.window), "--hop", str(args.hop), "--workers",
                           str(args.workers)]
                run = score_with_rss(command)
                media = minutes * 60.0
                run.update(install=install, minutes=minutes, decode_alone_s=round(decode_s, 2),
                           times_real_time=round(media / run["wall_s"], 2),
                           decode_alone_times_real_time=round(media / decode_s, 1),
                           wall_over_decode_alone=round(run["wall_s"] / decode_s, 2),
                           rows=sum(1 for _ in out.open()) - 1)
                report["runs"].append(run)
                print(json.dumps(run), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
