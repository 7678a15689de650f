"""Headless Chromium for rendering pages: a screenshot and the DOM after the page's scripts ran."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["BrowserUnavailable", "dump_dom", "find_chromium", "screenshot"]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


class BrowserUnavailable(RuntimeError):
    """No usable Chromium on this machine."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary (``$CHROMIUM`` first), or None."""
    env = os.environ.get("CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(html_path: Path, extra: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    exe = find_chromium()
    if exe is None:
        raise BrowserUnavailable(
            f"no Chromium found (tried $CHROMIUM, {', '.join(CANDIDATES)}); on Debian: apt-get install chromium"
        )
    with tempfile.TemporaryDirectory(prefix="lgrpo-chromium-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", *extra, Path(html_path).resolve().as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise BrowserUnavailable(f"{exe} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{exe} exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def screenshot(
    html_path: Path, png_path: Path, width: int = 1400, height: int = 1100, timeout: float = 60
) -> Path:
    """Render ``html_path`` at ``width``×``height`` into ``png_path``."""
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    _run(Path(html_path), [f"--screenshot={png_path}", f"--window-size={width},{height}"], timeout)
    if not png_path.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot to {png_path}")
    return png_path


def dump_dom(html_path: Path, timeout: float = 60) -> str:
    """The page's DOM as HTML after its scripts ran (``--dump-dom``)."""
    return _run(Path(html_path), ["--dump-dom", "--virtual-time-budget=2000"], timeout).stdout
