"""`edge-emotion preview`: the contact sheet of what the model sees, and a clean error for a broken file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLI = str(Path(sys.executable).with_name("edge-emotion"))


def test_preview_writes_a_contact_sheet(hap_clip_path, tmp_path):
    sheet = tmp_path / "sheet.png"
    done = subprocess.run([CLI, "preview", str(hap_clip_path), "-o", str(sheet), "-n", "4"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "56 frames at 29.97 fps (1.87 s), 4 segments, 0 without a face, 0 silent" in done.stdout
    image = np.asarray(Image.open(sheet).convert("RGB"))
    assert image.shape[0] > 200 and image.shape[1] > 400
    assert image.std() > 20  # faces and spectrograms, not a blank canvas
    assert not list(tmp_path.glob(".sheet.png.*"))  # written atomically, no temporary left


def test_preview_of_a_broken_file_is_one_clear_line(tmp_path):
    broken = tmp_path / "broken.flv"
    broken.write_bytes(b"FLV not really")
    done = subprocess.run([CLI, "preview", str(broken), "-o", str(tmp_path / "x.png")], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().startswith(f"error: {broken}: ")
    assert "Traceback" not in done.stderr and not (tmp_path / "x.png").exists()


def test_help_does_not_import_torch():
    code = "import sys, edge_emotion.cli; assert 'torch' not in sys.modules and 'av' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
