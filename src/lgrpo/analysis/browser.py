"""Headless Chromium for rendering pages: a screenshot and the DOM after the page's scripts ran."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

__all__ = ["BrowserUnavailable", "dump_dom", "find_chromium", "page_height", "screenshot"]

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


MAX_HEIGHT = 16384  # px: a taller page is cut there (Chromium's largest surface), with a warning
_MEASURE = (
    "<script>document.documentElement.setAttribute('data-lgrpo-height', String(Math.ceil(Math.max("
    "document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0))));</script>"
)


def page_height(html_path: Path, width: int, timeout: float = 60) -> int:
    """The height in px of the whole page at ``width`` px, after its scripts ran (a copy of the page, beside it, with a
    last script that records ``document.documentElement.scrollHeight``, read back with ``--dump-dom``)."""
    html_path = Path(html_path).resolve()
    text = html_path.read_text(encoding="utf-8")
    at = text.lower().rfind("</body>")
    text = text[:at] + _MEASURE + text[at:] if at >= 0 else text + _MEASURE
    fd, tmp = tempfile.mkstemp(prefix=".lgrpo-measure-", suffix=".html", dir=html_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        dom = _run(
            Path(tmp), ["--dump-dom", "--virtual-time-budget=2000", f"--window-size={width},800"], timeout
        )
    finally:
        os.unlink(tmp)
    m = re.search(r'data-lgrpo-height="(\d+)"', dom.stdout)
    if m is None:
        raise RuntimeError(f"could not measure the height of {html_path} (did its scripts fail?)")
    return int(m[1])


def screenshot(
    html_path: Path, png_path: Path, width: int = 1400, height: int | None = None, timeout: float = 60
) -> Path:
    """Render ``html_path`` at ``width`` px into ``png_path``: the whole page (``height=None``, measured with
    :func:`page_height`, up to :data:`MAX_HEIGHT`), or its top ``height`` px."""
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    if height is None:
        height = page_height(Path(html_path), width, timeout)
        if height > MAX_HEIGHT:
            warnings.warn(
                f"{html_path}: the page is {height} px tall; the screenshot stops at {MAX_HEIGHT} px",
                stacklevel=2,
            )
            height = MAX_HEIGHT
    _run(Path(html_path), [f"--screenshot={png_path}", f"--window-size={width},{height}"], timeout)
    if not png_path.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot to {png_path}")
    return png_path


def dump_dom(html_path: Path, timeout: float = 60) -> str:
    """The page's DOM as HTML after its scripts ran (``--dump-dom``)."""
    return _run(Path(html_path), ["--dump-dom", "--virtual-time-budget=2000"], timeout).stdout
