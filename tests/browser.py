"""A real headless browser for tests of pages: Debian's chromium, with no network but loopback.

Every host name other than 127.0.0.1 fails to resolve, so a page that needs a CDN, a web font
or any other outside request renders without it, exactly as on a machine with no internet.

:func:`rendered_dom` is the DOM after the page's scripts ran; :func:`load` adds what the
page wrote to the console (chromium logs it on stderr with ``--enable-logging=stderr``: the
text only, not the level); :func:`screenshot` writes a PNG of the page.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.system import require

RENDER_TIMEOUT_S = 120
SCRIPT_TIME_MS = 15_000  # virtual time the page's scripts get before the DOM is read
# [pid:tid:date:INFO:CONSOLE(7)] "text", source: file:///page.html (7)  (or CONSOLE:7])
CONSOLE = re.compile(r"^\[[^\]]*:CONSOLE\b[^\]]*\] \"(.*?)\", source: ", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Loaded:
    """A page after its scripts ran: its DOM, and its console messages in order."""

    dom: str
    console: list[str]


def rendered_dom(url: str) -> str:
    """The page's DOM after its scripts ran, as chromium serialises it (``--dump-dom``)."""
    return _chromium(["--dump-dom"], url).stdout


def load(url: str) -> Loaded:
    """The page's DOM after its scripts ran, and every console message it logged."""
    done = _chromium(["--enable-logging=stderr", "--v=0", "--dump-dom"], url)
    return Loaded(done.stdout, CONSOLE.findall(done.stderr))


def screenshot(url: str, path: Path, width: int = 1200, height: int = 2400) -> None:
    """A PNG of the page's first ``width`` x ``height`` CSS pixels, written to ``path``."""
    _chromium(
        [f"--screenshot={path.resolve()}", f"--window-size={width},{height}", "--hide-scrollbars"],
        url,
    )
    assert path.stat().st_size > 0, path


def _chromium(arguments: list[str], url: str) -> subprocess.CompletedProcess[str]:
    """chromium, headless and offline, on ``url`` with ``arguments``; it must exit 0.

    Debian's ``chromium`` is a shell script that starts the browser and its helpers: all of
    them run in a session of their own, killed together if the page outlasts the timeout.
    """
    chromium = require("chromium", "chromium", "apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--virtual-time-budget={SCRIPT_TIME_MS}",
            *arguments,
            url,
        ]
        with subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as process:
            try:
                stdout, stderr = process.communicate(timeout=RENDER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise
    assert process.returncode == 0, stderr[-2000:]
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
