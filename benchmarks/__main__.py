"""``python -m benchmarks [--quick]``."""

from .run import main

main()
