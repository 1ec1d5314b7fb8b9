"""``python -m clearwall.jobs --once``: one run of the jobs due, started by ``serve``."""

from __future__ import annotations

import sys

from clearwall.jobs.process import main

sys.exit(main())
