"""Command-line parsing shared by ``focal serve``, ``focal evaluate`` and ``focal report``."""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineErrors(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``focal evaluate: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line and exit 2."""
        self.exit(2, f"{self.prog}: {message}\n")
