"""``python -m focal_eval.export``: see :mod:`focal_eval.export.cli`."""

from __future__ import annotations

import sys

from focal_eval.export.cli import main

sys.exit(main())
