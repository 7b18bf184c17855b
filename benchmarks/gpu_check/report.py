"""gpu_check.json (every record) and gpu_check.md (the overview table, then each step's own section)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.harness import Renderer, short

FORMAT = "edge-emotion-gpu-check/2"  # 2: latencies are edge_emotion's LatencyStats (p95 added, `calls` -> `iterations`)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A markdown table, floats to 3 significant digits."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]


def markdown(report: dict[str, Any], renderers: Mapping[str, Renderer]) -> str:
    """One row per step (status, seconds, summary or reason), then a section per step that has a result."""
    lines = [f"# GPU check: --device {report['device']}", "",
             f"Started {report['started_utc']}, budget {report['budget_s']:.0f} s; `{' '.join(report['command'])}`.", "",
             "| step | status | s | summary or reason |", "|---|---|---|---|"]  # fmt: skip
    for step in report["steps"]:
        text = step["reason"] or step["result"].get("summary", "")
        lines.append(f"| {step['name']} | {step['status']} | {step['seconds']:.1f} | {' '.join(text.split()).replace('|', '/')[:300]} |")
    for step in report["steps"]:
        if step["result"] and step["name"] in renderers:
            try:
                body = renderers[step["name"]](step["result"])
            except (KeyError, TypeError, ValueError) as exc:  # a partial result (a step cut short) still gets its JSON
                body = [f"(table not drawn: {short(exc)}; see gpu_check.json)"]
            lines += ["", f"## {step['name']} ({step['status']})", "", *body]
    return "\n".join(lines) + "\n"


def write_reports(out: Path, report: dict[str, Any], renderers: Mapping[str, Renderer]) -> None:
    """Both files, atomically: written after every step, so a run cut short still leaves what it measured."""
    from edge_emotion.io.atomic import atomic_write_text

    atomic_write_text(out / "gpu_check.json", json.dumps(report, indent=1, default=str) + "\n")
    atomic_write_text(out / "gpu_check.md", markdown(report, renderers))
