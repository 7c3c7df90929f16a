"""``python -m benchmarks``: run every benchmark and write the results."""

from .run import main

raise SystemExit(main())
