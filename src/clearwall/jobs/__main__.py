"""``python -m clearwall.jobs``: the jobs process ``clearwall serve`` starts (``process.main``)."""

from __future__ import annotations

import sys

from clearwall.jobs.process import main

sys.exit(main())
