"""``python -m benchmarks.dropin``: run httpx's and requests' own tests stock and swapped."""

from .run import main

raise SystemExit(main())
