"""A real headless browser for tests of pages: Debian's chromium, with no network but loopback.

Every host name other than 127.0.0.1 fails to resolve, so a page that needs a CDN, a web font
or any other outside request renders without it, exactly as on a machine with no internet.
"""

from __future__ import annotations

import subprocess
import tempfile

from tests.system import require

RENDER_TIMEOUT_S = 120
SCRIPT_TIME_MS = 15_000  # virtual time the page's scripts get before the DOM is read


def rendered_dom(url: str) -> str:
    """The page's DOM after its scripts ran, as chromium serialises it (``--dump-dom``)."""
    chromium = require("chromium", "chromium", "apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--virtual-time-budget={SCRIPT_TIME_MS}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_S,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
