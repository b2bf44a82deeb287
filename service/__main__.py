"""``python -m focal_eval.service ...``: the ``focal`` command (:mod:`focal_eval.service.cli`)."""

from __future__ import annotations

import sys

from focal_eval.service.cli import main

sys.exit(main())
