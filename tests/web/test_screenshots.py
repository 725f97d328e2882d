"""The README's dashboard screenshots exist, are PNGs and were taken 1280 pixels wide."""

from __future__ import annotations

import re
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_readme_shows_the_queue_and_detail_screenshots() -> None:
    readme = (ROOT / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\((docs/images/[^)]+\.png)\)", readme)
    assert "docs/images/dashboard-queue.png" in images
    assert "docs/images/dashboard-detail.png" in images
    for name in images:
        data = (ROOT / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height = struct.unpack(">II", data[16:24])
        assert width == 1280, (name, width)
        assert height > 200, (name, height)
