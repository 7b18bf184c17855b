"""Lint and types, run by CI through the test suite: ruff clean under ruff.toml; mypy under mypy.ini, nothing new.

mypy's findings are compared with mypy-baseline.txt (one `path: [code] message` per line, line numbers left out
so edits above a finding do not move it): a finding that is not in the baseline fails, naming it. Findings the
baseline has but this install does not produce pass (some depend on what is installed, e.g. ray's types).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "mypy-baseline.txt"
FINDING = re.compile(r"^(?P<path>[^:]+):\d+(?::\d+)?: error: (?P<message>.*?)\s+\[(?P<code>[a-z-]+)\]$")


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert "No module named" not in done.stderr, f"{args[0]} is not installed: pip install '.[dev]'\n{done.stderr}"
    return done


def findings(output: str) -> Counter[str]:
    """mypy's error lines -> Counter of `path: [code] message` (notes and the summary line dropped)."""
    found: Counter[str] = Counter()
    for line in output.splitlines():
        match = FINDING.match(line.strip())
        if match:
            found[f"{match['path']}: [{match['code']}] {match['message']}"] += 1
    return found


def baseline() -> Counter[str]:
    lines = BASELINE.read_text().splitlines()
    return Counter(line for line in lines if line.strip() and not line.startswith("#"))


def test_ruff_is_clean():
    done = _run("ruff", "check", "--no-cache", "edge_emotion", "tests", "benchmarks", "tools", "--output-format", "concise")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing_beyond_its_baseline():
    done = _run("mypy", "--config-file", "mypy.ini")
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: findings; 2: mypy itself failed
    new = findings(done.stdout) - baseline()
    assert not new, "mypy findings not in mypy-baseline.txt (fix them):\n" + "\n".join(sorted(new))


def test_finding_lines_parse():
    out = 'edge_emotion/plan.py:52: error: Item "None" of "X | None" has no attribute "uniform"  [union-attr]\n'
    out += "edge_emotion/plan.py:52: note: a note\nFound 1 error in 1 file (checked 1 source file)\n"
    assert findings(out) == Counter({'edge_emotion/plan.py: [union-attr] Item "None" of "X | None" has no attribute "uniform"': 1})
