"""Throughput against batch size as a PNG."""

from __future__ import annotations

from pathlib import Path

from edge_emotion.deps import require
from edge_emotion.io.atomic import write_png
from edge_emotion.run.bench.report import BenchReport


def plot_report(report: BenchReport, output: str | Path) -> None:
    """Throughput (segments/s) against batch size, one line per backend x artifact; PNG, written atomically."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    fig, ax = plt.subplots(figsize=(6, 4))
    series: dict[str, list[tuple[int, float]]] = {}
    for row in report.rows:
        if row.status == "ok" and row.artifact is not None and row.batch_size is not None and row.segments_per_s is not None:
            name = f"{row.backend} {row.precision} ({Path(row.artifact).name})"
            series.setdefault(name, []).append((row.batch_size, row.segments_per_s))
    for name, points in series.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (segments)")
    ax.set_ylabel("segments / s")
    ax.set_title("edge-emotion bench")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    write_png(fig, output)
