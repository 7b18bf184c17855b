"""edge-emotion: audio-visual emotion recognition by temporal aggregation (Birhala et al., 2020)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path


def _version() -> str:
    """The version lives in pyproject.toml alone: the installed metadata, else pyproject.toml beside a source tree."""
    try:
        return metadata.version("edge-emotion")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
        return found.group(1) if found else "0+unknown"


__version__ = _version()

#: CREMA-D's six emotions, in the order of the model's outputs.
LABELS: tuple[str, ...] = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
