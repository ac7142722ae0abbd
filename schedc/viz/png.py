"""SVG to PNG without a plotting library: a headless browser or rsvg-convert.

Tried in order: `rsvg-convert`, then chromium / google-chrome in headless
mode. When none is installed the caller gets a `UserError` saying what to
install; schedc adds no heavy dependency for PNG output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from schedc.errors import UserError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    return next((b for b in BROWSERS if shutil.which(b)), None)


def svg_size(svg: str) -> tuple[int, int]:
    match = re.search(r'<svg[^>]*\bwidth="([\d.]+)"[^>]*\bheight="([\d.]+)"', svg)
    if not match:
        return 1600, 900
    return int(float(match[1]) + 0.999), int(float(match[2]) + 0.999)


def screenshot(page: Path, out: Path, width: int, height: int) -> None:
    """Render a local file with headless chromium into `out` (PNG)."""
    browser = find_browser()
    if browser is None:
        raise UserError("PNG output needs chromium (apt-get install chromium) or "
                        "rsvg-convert (apt-get install librsvg2-bin); write .svg or .html instead")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--screenshot={out.resolve()}",
               f"--window-size={width},{height}", page.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    if not out.exists():
        raise UserError(f"{browser} could not render {page}: "
                        f"{done.stderr.decode(errors='replace')[-300:]}")


def svg_to_png(svg: str, out: str | Path) -> None:
    out = Path(out)
    if out.exists():
        out.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "figure.svg"
        src.write_text(svg)
        if shutil.which("rsvg-convert"):
            subprocess.run(["rsvg-convert", "-o", str(out), str(src)], check=True)
            return
        screenshot(src, out, *svg_size(svg))
