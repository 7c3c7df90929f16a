"""Benchmarks for refreshing_session: the common path's cost, and refresh storms against peers.

Run everything with ``python -m benchmarks`` (about 6 minutes on 2 cores), or a 10-second smoke
run with ``python -m benchmarks --quick``. The peers come with the ``bench`` extra. Results go to
``benchmarks/results/``: ``results.md``, ``results.json``, SVG charts and the hot-path profile.
"""
