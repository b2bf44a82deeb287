"""``python -m service ...``: the ``focal`` command (see :mod:`service.cli`)."""

from __future__ import annotations

import sys

from service.cli import main

sys.exit(main())
