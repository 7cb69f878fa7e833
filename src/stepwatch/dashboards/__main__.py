"""``python -m stepwatch.dashboards export DIR``: see :mod:`stepwatch.dashboards`."""

import sys

from ._export import main

sys.exit(main())
